"""The ``fitjax`` command: ``demo``, ``sweep``, ``landscape`` and ``compare``.

- ``app``: the parser, the table of commands, :func:`main` and Ctrl-C.
- ``options``: argument types and checks shared by the commands.
- ``problems``: the built-in models and optimizers.
- ``demo``, ``sweep``, ``landscape``, ``compare``: one module per command.
- ``progress``: the progress line and the work thread; ``outputs``: output folders and files.
"""

from fitjax.cli.app import build_parser, main
from fitjax.cli.problems import problem

__all__ = ["build_parser", "main", "problem"]
