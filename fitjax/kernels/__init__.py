"""Faster evaluation of the same maths: the fused GPU kernel and polynomial functions.

- ``fused``: one Pallas kernel per run block for the built-in models (GPU);
- ``kernel_loss`` and ``kernel_math``: how a loss is rewritten for the kernel, and its maths;
- ``fastmath``: :func:`~fitjax.polynomial_math`, float32 transcendental functions as
  polynomials, for the kernel and for ordinary programs.
"""
