"""A label folder written by maskclip 0.2.0 resumes without relabelling, and labelling again
gives the same maps, manifest keys and classes.json (data/label-folder-0.2.0/README.md)."""

from __future__ import annotations

import filecmp
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from maskclip_cli.cli.app import app
from maskclip_cli.core.record import LabelRecord, record_hash
from maskclip_cli.formats.label_files import read_label_png
from maskclip_cli.synthetic.assets import CHECKPOINT, MODEL_CONFIG

DATA = Path(__file__).parent / "data" / "label-folder-0.2.0"
ASSETS = Path("/tmp/maskclip-0.2.0-fixture")  # where the weights were when the folder was made
RUNS = {
    "default": [],
    "naclip": ["--method", "naclip", "--pamr", "--min-confidence", "0.3", "--confidence-format", "npy", "--window", "64"],
}


def _place_assets() -> None:
    """The tiny CLIP at the path recorded in the stored classes.json (the record names it)."""
    ASSETS.mkdir(parents=True, exist_ok=True)
    for src in (MODEL_CONFIG, CHECKPOINT):
        target = ASSETS / src.name
        if not (target.is_file() and filecmp.cmp(src, target, shallow=False)):
            tmp = target.with_suffix(target.suffix + ".tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(target)


def _label(images: Path, out: Path, extra: list[str]) -> str:
    args = ["label", str(images), "--out", str(out), "--model", str(ASSETS / MODEL_CONFIG.name),
            "--checkpoint", str(ASSETS / CHECKPOINT.name), "--classes", "red,green,blue", "--device", "cpu",
            "--workers", "0", "--no-progress", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def _lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("run", sorted(RUNS))
def test_0_2_0_record_hash_unchanged(run):
    settings = json.loads((DATA / run / "classes.json").read_text())["settings"]
    assert {e["settings"] for e in _lines(DATA / run)} == {record_hash(LabelRecord.from_dict(settings))}


@pytest.mark.parametrize("run", sorted(RUNS))
def test_0_2_0_folder_resumes_without_relabelling(run, tmp_path):
    _place_assets()
    out = tmp_path / run
    shutil.copytree(DATA / run, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    output = _label(DATA / "images", out, RUNS[run])
    assert "0 labelled, 3 skipped" in output
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and ".maskclip-locks" not in p.parts}
    assert after == before


@pytest.mark.parametrize("run", sorted(RUNS))
def test_0_2_0_outputs_unchanged(run, tmp_path):
    """Labelling afresh writes the 0.2.0 label maps pixel for pixel, the same manifest lines and classes.json.

    Confidence: 8-bit PNGs are identical; float16 .npy maps may differ by one float16 step where key
    smoothing's regrouped product k^T (k p^T) rounds differently in float32 from 0.2.0's (k^T k) p
    (measured: 1 pixel of 7500 in the naclip run)."""
    _place_assets()
    out = tmp_path / run
    _label(DATA / "images", out, RUNS[run])
    stored, fresh = DATA / run, out
    assert json.loads((fresh / "classes.json").read_text()) == json.loads((stored / "classes.json").read_text())
    old = {e["source"]: e for e in _lines(stored)}
    new = {e["source"]: e for e in _lines(fresh)}
    assert old.keys() == new.keys()
    for source, entry in old.items():
        assert new[source].keys() == entry.keys()
        assert {k: v for k, v in new[source].items() if not k.endswith("_bytes")} == \
            {k: v for k, v in entry.items() if not k.endswith("_bytes")}
        assert np.array_equal(read_label_png(fresh / entry["label"]), read_label_png(stored / entry["label"]))
        if entry["confidence"].endswith(".npy"):
            a, b = np.load(fresh / entry["confidence"]), np.load(stored / entry["confidence"])
            step = np.spacing(np.maximum(np.abs(a), np.abs(b)))  # one float16 step at each value
            assert a.dtype == b.dtype == np.float16 and np.all(np.abs(a.astype(np.float32) - b) <= step)
            assert np.mean(a != b) < 0.01
        else:
            assert np.array_equal(read_label_png(fresh / entry["confidence"]), read_label_png(stored / entry["confidence"]))
