"""The library's only channel to the user: a progress/logging hook the caller supplies.

The library never prints. Long jobs call ``hook.start/advance/finish``; notices go through
``hook.warn`` / ``hook.info``. The CLI plugs in a rich implementation; the default is silent
and forwards notices to :mod:`logging`.
"""

from __future__ import annotations

import logging

log = logging.getLogger("maskclip")


class ProgressHook:
    """Silent default hook. Subclass and override what you need."""

    def start(self, total: int | None, description: str = "") -> None:
        """A task of ``total`` units starts (``None`` when unknown)."""

    def advance(self, n: int = 1, **fields: object) -> None:
        """``n`` more units are done; ``fields`` are live figures such as ``loss=0.3``."""

    def finish(self) -> None:
        """The current task ended."""

    def info(self, message: str) -> None:
        log.info(message)

    def warn(self, message: str) -> None:
        log.warning(message)


SILENT = ProgressHook()
