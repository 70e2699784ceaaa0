"""A bad file met in a DataLoader worker becomes an item, not an exception.

Raised in a worker, the error would reach the user wrapped in the worker's traceback; as an
``{"error": one line}`` item the main process records it (label) or raises it as one clear line
(train, eval).
"""

from __future__ import annotations

from typing import Callable

from .errors import MaskCLIPError


def load_item(load: Callable[[], dict], what: str) -> dict:
    """``load()``, or ``{"error": message}`` when reading ``what`` fails."""
    try:
        return load()
    except MaskCLIPError as exc:
        return {"error": str(exc)}
    except Exception as exc:  # PIL and numpy raise many types for bad files
        return {"error": f"Cannot read {what}: {type(exc).__name__}: {exc}"}


def raise_error(item: dict) -> dict:
    """The item itself, or its error raised as a :class:`MaskCLIPError` (in the main process)."""
    if "error" in item:
        raise MaskCLIPError(item["error"])
    return item
