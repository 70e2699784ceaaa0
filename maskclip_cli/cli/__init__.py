"""Command-line layer: parses options and calls the library. Each command lives in its own module,
imported when the command runs (see :mod:`.app`), so `maskclip --help` does not load torch."""

from .app import COMMANDS, app


def main() -> None:
    app()


__all__ = ["COMMANDS", "app", "main"]
