"""Optimizer studies over many starts: :func:`compare`, its :class:`Study` result, the
measures (:mod:`fitjax.comparison.measures`), reports and the ``fitjax compare`` command."""

from fitjax.comparison import measures
from fitjax.comparison.study import OPTIMIZERS, Cell, Study, compare, load

__all__ = ["OPTIMIZERS", "Cell", "Study", "compare", "load", "measures"]
