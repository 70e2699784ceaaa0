"""Command-line layer: parses options and calls the library. Each command lives in its own module."""

from . import demo, eval, export, label, overlay, report, train  # noqa: F401  (each import registers a command)
from .app import app


def main() -> None:
    app()
