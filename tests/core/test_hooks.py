"""The tqdm hook drives a real tqdm bar through a library job."""

from __future__ import annotations

import io

from label_folders import shapes_map, write_label_folder

from maskclip_cli.core.hooks import TqdmHook
from maskclip_cli.review.overlay import write_overlays


def test_tqdm_hook_reports_a_job(tmp_path):
    write_label_folder(tmp_path / "labels", tmp_path / "images", {f"{i}.jpg": shapes_map(20, 30) for i in range(3)})
    stream = io.StringIO()
    hook = TqdmHook(file=stream, mininterval=0)
    write_overlays(tmp_path / "labels", tmp_path / "images", hook=hook)
    assert hook.bar is None  # closed by finish()
    text = stream.getvalue()
    assert "overlays" in text and "3/3" in text and "img" in text
    hook.start(2, "train")
    hook.advance(1, loss=0.25)
    hook.warn("careful")
    hook.finish()
    assert "loss=0.25" in stream.getvalue() and "warning: careful" in stream.getvalue()
