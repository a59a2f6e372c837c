"""The package version: the one place it is written (pyproject and setup.py read it)."""

__version__ = "0.1.0"
