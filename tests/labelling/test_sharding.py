"""Sharded labelling: --shard K/N, the merge, torchrun ranks, resume after a rank is killed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import torch

from conftest import TINY_CONFIGS, make_tiny_clip
from helpers import SIZES, hold_lock, make_images, manifest_lines, tiny_segmenter
from maskclip_cli.cli import app
from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.formats.image_files import find_images
from maskclip_cli.labelling.label_job import LabelOptions, label_folder
from maskclip_cli.labelling.sharding import parse_shard, shard_of

runner = CliRunner()
ROOT = Path(__file__).parents[2]


@pytest.fixture
def images(tmp_path):
    return make_images(tmp_path / "images")


def _labelled(output: str) -> list[int]:
    """The "N labelled" counts of a run's summary lines (one per shard or rank)."""
    return [int(n) for n in re.findall(r"(\d+) labelled, ", output)]


def _entries(out: Path) -> dict[str, dict]:
    return {e["source"]: e for e in manifest_lines(out)}


def _same_outputs(a: Path, b: Path) -> None:
    """Same manifest entries (the run-independent fields) and pixel-identical maps."""
    ea, eb = _entries(a), _entries(b)
    assert sorted(ea) == sorted(eb) == sorted(SIZES)
    for source, entry in ea.items():
        assert entry == eb[source]
        for key in ("label", "confidence"):
            assert np.array_equal(np.asarray(Image.open(a / entry[key])), np.asarray(Image.open(b / entry[key])))


def test_shards_partition_the_folder_balanced_by_size(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "files"
    root.mkdir()
    paths = []
    for i in range(40):
        (root / f"{i}.jpg").write_bytes(bytes(int(rng.integers(100, 10_000))))
        paths.append(PurePosixPath(f"{i}.jpg"))
    for n in (1, 2, 3, 7):
        shards = [shard_of(paths, root, (k, n)) for k in range(n)]
        flat = [p for s in shards for p in s]
        assert sorted(flat) == sorted(paths) and len(flat) == len(set(flat))  # each image exactly once
        loads = [sum((root / p).stat().st_size for p in s) for s in shards]
        assert max(loads) - min(loads) <= 10_000  # greedy by size: within one file of each other
        assert shards == [shard_of(list(reversed(paths)), root, (k, n)) for k in range(n)]  # order-independent


@pytest.mark.parametrize("text", ["2/2", "-1/2", "1", "a/b", "0/0"])
def test_bad_shard_is_refused(text):
    with pytest.raises(MaskCLIPError, match="--shard"):
        parse_shard(text)


def test_every_image_once_over_shards_and_merge_equals_one_process(images, tmp_path):
    """Three shards labelled one after another: each image labelled exactly once, the last shard
    merges the parts, and the merged manifest and maps equal a single-process run's. The label maps
    also equal the segmenter's own `predict` (the CPU reference path) pixel for pixel."""
    seg = tiny_segmenter()
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    label_folder(seg, images, single, LabelOptions(workers=0, batch_size=2))
    counts = []
    for k in range(3):
        summary = label_folder(seg, images, sharded, LabelOptions(workers=0, batch_size=2, shard=(k, 3)))
        counts.append(summary.labelled)
        assert summary.merged == (k == 2)
        if k < 2:
            assert (sharded / f"manifest.shard-{k}-of-3.jsonl").is_file()
    assert sum(counts) == len(SIZES) and min(counts) >= 1
    assert not list(sharded.glob("manifest.shard-*")) and not list(sharded.rglob("*.tmp"))
    _same_outputs(single, sharded)
    for source, entry in _entries(single).items():
        with Image.open(images / source) as im:
            expected = seg.label_image(im.convert("RGB")).labels
        assert np.array_equal(np.asarray(Image.open(single / entry["label"])), expected)


def test_merge_command_and_resume_after_a_change_of_shard_count(images, tmp_path):
    """Shard 0 of 2 ran, then the split changed to 3: the new shards skip what is done, nothing is
    labelled twice; `label --merge OUT` folds the parts."""
    config = tmp_path / "tiny-vit.json"
    config.write_text(json.dumps(TINY_CONFIGS["vit"]))
    out = tmp_path / "out"

    def run(*extra):
        return runner.invoke(app, ["label", str(images), "--out", str(out), "--model", str(config), "--pretrained", "none",
                                   "--no-progress", "--workers", "0", "--short-side", "32", "--templates", "simple",
                                   "--classes", "cat,dog,tree", *extra])

    first = run("--shard", "0/2")
    assert first.exit_code == 0 and "shard 0/2:" in first.output, first.output
    done = len(manifest_lines(out, "manifest.shard-0-of-2.jsonl"))
    labelled = [_labelled(run("--shard", f"{k}/3").output)[0] for k in (0, 1)]
    assert "manifest.jsonl" not in os.listdir(out)
    merged = runner.invoke(app, ["label", "--merge", str(out), "--no-progress"])
    assert merged.exit_code == 0 and "merged" in merged.output, merged.output
    assert not list(out.glob("manifest.shard-*"))
    last = run("--shard", "2/3")
    assert last.exit_code == 0 and "merged" in last.output
    assert done + sum(labelled) + _labelled(last.output)[0] == len(SIZES)
    assert sorted(_entries(out)) == sorted(SIZES)
    assert "0 labelled" in run().output  # an unsharded rerun finds everything done


def _label_args(images: Path, out: Path, model: tuple[Path, Path]) -> list[str]:
    return ["label", str(images), "--out", str(out), "--model", str(model[0]), "--checkpoint", str(model[1]),
            "--no-progress", "--workers", "0", "--batch-size", "1", "--short-side", "32", "--templates", "simple",
            "--classes", "cat,dog,tree", "--device", "cpu"]


def test_merge_is_refused_while_a_shard_runs_and_shard_with_torchrun_is_refused(images, tmp_path, monkeypatch):
    out = tmp_path / "out"
    label_folder(tiny_segmenter(), images, out, LabelOptions(workers=0, shard=(1, 2)))
    holder = hold_lock(out, "0/2")
    try:
        busy = runner.invoke(app, ["label", "--merge", str(out), "--no-progress"])
        assert busy.exit_code == 2 and f"pid {holder.pid}" in " ".join(busy.output.split()), busy.output
        assert (out / "manifest.shard-1-of-2.jsonl").is_file() and not (out / "manifest.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    monkeypatch.setenv("WORLD_SIZE", "2")
    both = runner.invoke(app, ["label", str(images), "--out", str(out), "--shard", "0/2", "--classes", "cat", "--no-progress"])
    assert both.exit_code == 2 and "--shard cannot be combined with torchrun" in both.output


def _torchrun(images: Path, out: Path, model: tuple[Path, Path], nproc: int = 2) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port", "0",
           "-m", "maskclip_cli", *_label_args(images, out, model)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_and_resume_after_kill_9(images, tmp_path):
    """torchrun with 2 CPU ranks: every image labelled exactly once, the parts merged, maps and
    manifest equal to a single-process run. Then a run whose rank 1 is killed with -9 mid-way is
    rerun: it completes with nothing duplicated or lost."""
    config, ckpt = tmp_path / "tiny-vit.json", tmp_path / "tiny.pt"
    config.write_text(json.dumps(TINY_CONFIGS["vit"]))
    torch.save(make_tiny_clip("vit", seed=3).model.state_dict(), ckpt)
    model = (config, ckpt)
    single, out = tmp_path / "single", tmp_path / "ranks"
    assert runner.invoke(app, _label_args(images, single, model)).exit_code == 0

    proc = _torchrun(images, out, model)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    per_rank = _labelled(output)
    assert sorted(per_rank) != [0, len(SIZES)] and sum(per_rank) == len(SIZES), output
    assert not list(out.glob("manifest.shard-*"))
    _same_outputs(single, out)

    # kill -9 one rank after it has written at least one image
    killed = tmp_path / "killed"
    for i in range(60):  # more and larger images, so the kill lands mid-run even on a fast machine
        Image.fromarray(np.full((360, 480, 3), i * 4, np.uint8)).save(images / f"more{i:02d}.png")
    proc = _torchrun(images, killed, model)
    part = killed / "manifest.shard-1-of-2.jsonl"
    deadline = time.time() + 240
    while not (part.is_file() and part.read_text().count("\n") >= 1) and time.time() < deadline:
        time.sleep(0.05)
    rank1 = [int(p) for p in subprocess.run(["pgrep", "-f", "-P", str(proc.pid), "."], capture_output=True, text=True).stdout.split()]
    victim = next(p for p in rank1 if "RANK=1\x00" in Path(f"/proc/{p}/environ").read_text(errors="replace"))
    os.kill(victim, signal.SIGKILL)
    proc.communicate(timeout=300)
    first = {e["source"] for f in killed.glob("manifest*.jsonl") for e in manifest_lines(killed, f.name)}
    total = len(find_images(images))
    assert 0 < len(first) < total

    proc = _torchrun(images, killed, model)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    entries = manifest_lines(killed)
    assert len(entries) == len({e["source"] for e in entries}) == total
    relabelled = sum(_labelled(output))
    assert relabelled == total - len(first)
    assert all(e["status"] == "ok" for e in entries)


def test_huge_shard_count_needs_no_memory_in_proportion_to_n(tmp_path):
    """--shard 0/1000000000: the split of a small folder is the same as with N = images, computed
    without a per-shard table (issue 22: 1.85 GB at N = 10^7 for 12 images)."""
    import tracemalloc

    root = tmp_path / "imgs"
    root.mkdir()
    sizes = [5, 0, 9, 9, 3, 0, 7]
    for i, s in enumerate(sizes):
        (root / f"{i}.png").write_bytes(b"x" * s)
    paths = [PurePosixPath(f"{i}.png") for i in range(len(sizes))]
    tracemalloc.start()
    huge = [shard_of(paths, root, (k, 10**9)) for k in (0, 3, 6, 7, 10**9 - 1)]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000
    # with more shards than images each image goes to its own shard, largest first; zero-byte
    # files follow their predecessor, exactly as the full greedy split deals them
    full = [shard_of(paths, root, (k, len(paths) + 5)) for k in (0, 3, 6, 7, len(paths) + 4)]
    assert huge[:3] == full[:3] and huge[3] == huge[4] == [] == full[3] == full[4]
    assert sorted(p for s in (shard_of(paths, root, (k, 10**9)) for k in range(len(paths))) for p in s) == sorted(paths)
