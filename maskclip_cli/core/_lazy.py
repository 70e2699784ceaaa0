"""Lazy public names for package ``__init__`` files (PEP 562).

A subpackage lists its public names and the module that defines each; the module is imported on
first use. Importing a package (for a dataclass's defaults, or ``maskclip --help``) then costs
nothing, and torch is loaded only when a name that needs it is used.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``; ``exports`` maps name -> relative module."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name], package), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__, sorted(exports)
