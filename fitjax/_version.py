"""The version of fitjax, in one place (read by pyproject.toml and by fitjax.__version__)."""

__version__ = "0.2.0.dev0"
