"""Command-line layer: parses options and calls the library. Each command lives in its own module."""

from . import label  # noqa: F401  (each import registers a command)
from . import eval  # noqa: F401
from . import train  # noqa: F401
from . import demo  # noqa: F401
from . import overlay  # noqa: F401
from . import export  # noqa: F401
from .app import app


def main() -> None:
    app()
