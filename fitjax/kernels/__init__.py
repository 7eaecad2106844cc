"""Faster evaluation of the same maths: the fused GPU kernel.

- ``fused``: one Pallas kernel per run block for the built-in models (GPU);
- ``kernel_loss`` and ``kernel_math``: how a loss is rewritten for the kernel, and its maths
  (the polynomials it shares with ordinary programs live in :mod:`fitjax.numerics`).
"""
