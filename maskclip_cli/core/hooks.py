"""The library's only channel to the user: a progress/logging hook the caller supplies.

The library never prints. Long jobs call ``hook.start/advance/finish``; notices go through
``hook.warn`` / ``hook.info``. The CLI plugs in a rich implementation; the default is silent
and forwards notices to :mod:`logging`; :class:`TqdmHook` gives Python API users tqdm bars
(widgets in Jupyter, text in a terminal).
"""

from __future__ import annotations

import logging

from tqdm.auto import tqdm

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


class TqdmHook(ProgressHook):
    """Progress through ``tqdm.auto``: a widget in Jupyter notebooks, a text bar elsewhere.

    ``label_folder(seg, "photos", "labels", hook=TqdmHook())``; extra keyword arguments go to tqdm.
    """

    def __init__(self, unit: str = "img", **tqdm_kwargs: object):
        self.unit, self.tqdm_kwargs = unit, tqdm_kwargs
        self.bar: tqdm | None = None

    def start(self, total: int | None, description: str = "") -> None:
        self.finish()
        self.bar = tqdm(total=total, desc=description, unit=self.unit, **self.tqdm_kwargs)

    def advance(self, n: int = 1, **fields: object) -> None:
        if self.bar is not None:
            if fields:
                self.bar.set_postfix(fields, refresh=False)
            self.bar.update(n)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def info(self, message: str) -> None:
        tqdm.write(message, file=self.tqdm_kwargs.get("file"))

    def warn(self, message: str) -> None:
        tqdm.write(f"warning: {message}", file=self.tqdm_kwargs.get("file"))
