"""The lecture as a library: its experiments and its claims, each a function returning numbers.

- ``claims``: each qualitative claim of the lecture measured over many starts, with a verdict
  (``fitjax compare --lecture``).
"""
