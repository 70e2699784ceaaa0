"""The label job on a damaged folder: write errors, damaged outputs and manifests, two runs at once."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import TINY_CONFIGS
from helpers import SIZES, hold_lock, make_images, manifest_lines, tiny_segmenter
from maskclip_cli.cli import app
from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.labelling.label_job import LabelOptions, label_folder

runner = CliRunner()


@pytest.fixture
def images(tmp_path):
    return make_images(tmp_path / "images")


def run_label(images: Path, out: Path, tmp_path: Path, *extra: str):
    config = tmp_path / "tiny-vit.json"
    config.write_text(json.dumps(TINY_CONFIGS["vit"]))
    args = ["label", str(images), "--out", str(out), "--model", str(config), "--pretrained", "none", "--no-progress",
            "--workers", "0", "--short-side", "32", "--templates", "simple", "--classes", "cat,dog", "--batch-size", "1",
            *extra]
    return runner.invoke(app, args)


def test_write_error_mid_run_is_one_line_and_keeps_what_was_written(images, tmp_path):
    """Issue 9 defect 6: an output folder that cannot be written (here a file where labels/nested/
    must go) stops the run with one line and exit 2; the images written before it stay recorded,
    and a rerun after the fix labels only the rest."""
    out = tmp_path / "out"
    (out / "labels").mkdir(parents=True)
    (out / "labels" / "nested").write_text("in the way")
    result = run_label(images, out, tmp_path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "Cannot write the outputs of nested/" in " ".join(result.output.split())
    done = {e["source"] for e in manifest_lines(out) if e["status"] == "ok"}
    assert done == {"a.jpg", "d.webp", "e.png", "f.jpg", "g.png"}.intersection(done) and {"a.jpg", "d.webp"} <= done
    assert not list(out.rglob("*.tmp"))
    (out / "labels" / "nested").unlink()
    again = run_label(images, out, tmp_path)
    assert again.exit_code == 0, again.output
    assert f"{len(SIZES) - len(done)} labelled, {len(done)} skipped" in again.output


def test_resume_relabels_a_truncated_output(images, tmp_path):
    """Issue 9 defect 10: a label PNG cut to 0 bytes (or a confidence map cut short) is not "done"."""
    out = tmp_path / "out"
    assert run_label(images, out, tmp_path).exit_code == 0
    (out / "labels/a.png").write_bytes(b"")
    conf = out / "confidence/d.png"
    conf.write_bytes(conf.read_bytes()[:-20])
    again = run_label(images, out, tmp_path)
    assert again.exit_code == 0 and f"2 labelled, {len(SIZES) - 2} skipped" in again.output, again.output
    assert (out / "labels/a.png").stat().st_size > 0


def test_resume_checks_entries_without_recorded_sizes_by_decoding(images, tmp_path):
    """Manifests of 0.1.0 record no sizes: their outputs must decode to count as done."""
    out = tmp_path / "out"
    assert run_label(images, out, tmp_path).exit_code == 0
    entries = manifest_lines(out)
    for e in entries:
        del e["label_bytes"], e["confidence_bytes"]
    (out / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    (out / "labels/e.png").write_bytes(b"\x89PNG not really")
    again = run_label(images, out, tmp_path)
    assert f"1 labelled, {len(SIZES) - 1} skipped" in again.output, again.output


@pytest.mark.parametrize("bad", ['{"source": 5}', '{"source": "a.jpg", "status": "ok"}', "[1, 2]", '{"status": "ok"'])
def test_malformed_manifest_line_is_reported_and_ignored(images, tmp_path, bad):
    """Issue 9 defect 10: a malformed line is reported and ignored (no TypeError in Manifest.close),
    the image it names is labelled again, and the compacted manifest no longer holds it."""
    out = tmp_path / "out"
    assert run_label(images, out, tmp_path).exit_code == 0
    lines = (out / "manifest.jsonl").read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["source"] != "a.jpg"]
    (out / "manifest.jsonl").write_text("\n".join([bad, *kept]) + "\n")
    again = run_label(images, out, tmp_path)
    assert again.exit_code == 0, again.output
    assert "1 malformed line(s)" in again.output and "Traceback" not in again.output
    assert f"1 labelled, {len(SIZES) - 1} skipped" in again.output
    assert sorted(e["source"] for e in manifest_lines(out)) == sorted(SIZES)


def test_second_run_on_a_folder_is_refused_naming_the_other_and_a_killed_run_is_recovered(images, tmp_path):
    """Issue 9 defect 11: while another process labels into OUT, a second run is refused with one
    line naming that process (pid, host) and nothing written; after the first is killed with -9,
    its stale lock is recovered and the run goes ahead."""
    out = tmp_path / "out"
    holder = hold_lock(out)
    try:
        result = run_label(images, out, tmp_path)
        assert result.exit_code == 2, result.output
        message = " ".join(result.output.split())
        assert f"pid {holder.pid} on host {os.uname().nodename}" in message and "in use by another label run" in message
        assert not (out / "labels").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    result = run_label(images, out, tmp_path)
    assert result.exit_code == 0, result.output
    assert "stale lock" in result.output and f"{len(SIZES)} labelled" in result.output
    assert not list((out / ".maskclip-locks").glob("*.lock"))


def test_shards_of_one_split_share_a_folder_but_other_runs_do_not(images, tmp_path):
    out = tmp_path / "out"
    holder = hold_lock(out, "0/2")
    try:
        seg = tiny_segmenter()
        summary = label_folder(seg, images, out, LabelOptions(workers=0, shard=(1, 2)))
        assert summary.labelled > 0 and not summary.merged  # shard 0 is still running
        for shard in (None, (0, 2), (0, 3)):
            with pytest.raises(MaskCLIPError, match=f"pid {holder.pid}"):
                label_folder(seg, images, out, LabelOptions(workers=0, shard=shard))
    finally:
        holder.kill()
        holder.wait()
