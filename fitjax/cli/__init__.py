"""The ``fitjax`` command: ``demo``, ``sweep``, ``landscape`` and ``compare``."""

from fitjax.cli.app import build_parser, main, problem

__all__ = ["build_parser", "main", "problem"]
