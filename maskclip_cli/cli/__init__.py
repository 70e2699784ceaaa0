"""Command-line layer: parses options and calls the library. Each command lives in its own module."""

from .app import app


def main() -> None:
    app()
