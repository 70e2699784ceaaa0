"""The dense-feature methods (last-block recipes) by name, without loading torch.

The recipes themselves are in :mod:`maskclip_cli.clip.last_block`; configs and the CLI only need
the names.
"""

from __future__ import annotations

from ..core.errors import MaskCLIPError

METHODS = ("maskclip", "sclip", "clearclip", "naclip")
DEFAULT_METHOD = "maskclip"


def check_method(method: str) -> str:
    """``method`` if it is known; otherwise one clear error naming the choices."""
    if method not in METHODS:
        raise MaskCLIPError(f"Unknown method '{method}'; choose one of {', '.join(METHODS)}.")
    return method
