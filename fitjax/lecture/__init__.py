"""The lecture as a library: its experiments and its claims, each a function returning numbers.

- ``experiments``: the experiments ``fitjax demo`` runs, each returning its numbers, figure
  specs and report section, with their settings defined once; a package with one module per
  lecture section and ``common`` for what they share.
- ``problems``: the lecture's line fit, Gabor fit and Adam toy loss, with their plot boxes.
- ``claims``: each qualitative claim of the lecture measured over many starts, with a verdict
  (``fitjax compare --lecture``).
- ``recorded``: the claims table of a full run, shipped with the package and quoted by the demo.
"""
