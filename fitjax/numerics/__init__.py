"""Float32 arithmetic below everything else: the functions fitjax's programs evaluate.

- ``polynomials``: float32 ``sin``, ``cos`` and ``exp`` from plain arithmetic;
- ``fastmath``: :func:`~fitjax.polynomial_math` (a loss with those functions),
  :func:`~fitjax.platform_math` (a loss marked to keep the platform's), and the choice the
  engine makes between them (polynomials on a CPU).
"""
