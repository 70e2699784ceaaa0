"""Shards and merges used wrongly (issue 22): other settings under --shard --overwrite, merges of
folders that are not label folders or miss a shard, --merge with INPUT or --shard, write errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TINY_CONFIGS, make_tiny_clip
from helpers import SIZES, hold_lock, make_images, manifest_lines
from typer.testing import CliRunner
from write_errors import read_only, small_disk

from maskclip_cli.cli import app
from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.core.hooks import ProgressHook
from maskclip_cli.core.record import record_hash
from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig
from maskclip_cli.formats.label_folder import LabelFolder
from maskclip_cli.labelling.label_job import LabelOptions, label_folder
from maskclip_cli.labelling.merge import missing_shards

runner = CliRunner()


@pytest.fixture
def images(tmp_path):
    return make_images(tmp_path / "images")


def segmenter(classes: list[str]) -> MaskCLIP:
    return MaskCLIP(make_tiny_clip("vit"), classes, MaskCLIPConfig(templates="simple", short_side=32))


class Warnings(ProgressHook):
    def __init__(self):
        self.messages: list[str] = []

    def warn(self, message: str) -> None:
        self.messages.append(message)


def merge(out: Path, *extra: str):
    result = runner.invoke(app, ["label", "--merge", str(out), "--no-progress", *extra])
    return result, " ".join(result.output.split())


def test_shard_overwrite_with_other_classes_does_not_report_all_shards_done(images, tmp_path):
    """Issue 22: `--shard K/N --overwrite` with other classes left a folder whose maps mix two class
    lists and reported "all shards done". Now the shard does not merge while images keep labels of
    other settings, says how many, and the readers name the mix; the other shard run with the new
    settings relabels its images and merges."""
    out = tmp_path / "out"
    old, new = segmenter(["cat", "dog", "tree"]), segmenter(["cat", "dog"])
    first = [label_folder(old, images, out, LabelOptions(workers=0, shard=(k, 2))) for k in range(2)]
    assert first[1].merged
    changed = label_folder(new, images, out, LabelOptions(workers=0, shard=(1, 2), overwrite=True))
    assert not changed.merged and changed.unfinished == first[0].total
    assert (out / "manifest.shard-1-of-2.jsonl").is_file()
    hook = Warnings()
    entries = LabelFolder.open(out).reader(hook)
    assert len(entries) == len(SIZES)
    mixed = [m for m in hook.messages if "labelled with other settings than classes.json" in m]
    assert mixed and mixed[0].split(": ", 1)[1].startswith(f"{first[0].total} of {len(SIZES)} images")
    assert any("1 shard part(s) of the manifest are not merged" in m for m in hook.messages)
    rest = label_folder(new, images, out, LabelOptions(workers=0, shard=(0, 2)))
    assert rest.labelled == first[0].total and rest.merged and rest.unfinished == 0
    tag = record_hash(LabelFolder.open(out).record)
    assert {e["settings"] for e in manifest_lines(out)} == {tag}


def test_shard_overwrite_with_other_settings_refused_while_sibling_shards_run(images, tmp_path):
    """Shards of one split running at once with different classes would each rewrite classes.json:
    --overwrite may not change the settings under a running sibling."""
    out = tmp_path / "out"
    label_folder(segmenter(["cat", "dog", "tree"]), images, out, LabelOptions(workers=0, shard=(0, 2)))
    holder = hold_lock(out, "0/2")
    try:
        with pytest.raises(MaskCLIPError, match="every shard of a split must use the same settings"):
            label_folder(segmenter(["car"]), images, out, LabelOptions(workers=0, shard=(1, 2), overwrite=True))
    finally:
        holder.kill()
        holder.wait()
    assert [c["name"] for c in json.loads((out / "classes.json").read_text())["classes"]] == ["cat", "dog", "tree"]


@pytest.mark.parametrize("kind", ["empty", "not a label folder", "missing"])
def test_merge_on_an_empty_or_non_label_folder_is_refused_and_writes_nothing(tmp_path, kind):
    """Issue 22: `label --merge` on an empty or non-label folder said "merged" and created files there."""
    target = tmp_path / "target"
    if kind != "missing":
        target.mkdir()
    if kind == "not a label folder":
        (target / "notes.txt").write_text("mine")
    result, text = merge(target)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "is not a label folder" in text and "merged" not in text
    if kind == "missing":
        assert not target.exists()
    else:
        assert sorted(p.name for p in target.iterdir()) == ([] if kind == "empty" else ["notes.txt"])


def test_merge_with_a_shard_missing_names_it_and_counts_unlabelled_images(images, tmp_path):
    """Issue 22: a merge with a shard missing gave no hint, and `--merge` ignored INPUT silently.
    The missing shard is named by the parts; with INPUT the images without an entry are counted."""
    out = tmp_path / "out"
    seg = segmenter(["cat", "dog"])
    done = [label_folder(seg, images, out, LabelOptions(workers=0, shard=(k, 3))) for k in (0, 2)]
    result, text = merge(out)
    assert result.exit_code == 0, text
    assert "2 manifest part(s) merged" in text and "no part from shard(s) 1 of 3" in text
    assert len(manifest_lines(out)) == done[0].total + done[1].total
    again, text = merge(out)
    assert again.exit_code == 0 and "nothing to merge" in text
    result = runner.invoke(app, ["label", str(images), "--merge", str(out), "--no-progress"])
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and f"{len(SIZES) - done[0].total - done[1].total} image(s) of {images} have no entry" in text


def test_merge_with_shard_is_refused(images, tmp_path):
    """Issue 22: `--merge` ignored `--shard` silently."""
    out = tmp_path / "out"
    label_folder(segmenter(["cat"]), images, out, LabelOptions(workers=0, shard=(0, 2)))
    result, text = merge(out, "--shard", "1/2")
    assert result.exit_code == 2 and "--merge takes no --shard" in text
    assert (out / "manifest.shard-0-of-2.jsonl").is_file()


def test_missing_shards_names_a_few_of_a_huge_split():
    parts = [Path(f"manifest.shard-{k}-of-{n}.jsonl") for k, n in [(0, 4), (2, 4), (5, 1000000000)]]
    assert missing_shards(parts) == ["1, 3 of 4", "0, 1, 2, 3, 4 and 999999994 more of 1000000000"]


def test_merge_on_a_read_only_folder_is_one_line(images, tmp_path):
    """Issue 22: `label --merge` on a read-only folder gave a traceback."""
    out = tmp_path / "out"
    label_folder(segmenter(["cat"]), images, out, LabelOptions(workers=0, shard=(0, 2)))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with read_only(out):
        result, text = merge(out)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert f"Cannot merge the manifest parts of {out}" in text
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_label_onto_a_full_disk_is_one_line(images, tmp_path):
    """Disk full while labelling: one line, exit 2, what was written stays recorded."""
    config = tmp_path / "tiny-vit.json"
    config.write_text(json.dumps(TINY_CONFIGS["vit"]))
    with small_disk(tmp_path / "disk", 16) as disk:
        result = runner.invoke(app, ["label", str(images), "--out", str(disk / "out"), "--model", str(config),
                                     "--pretrained", "none", "--no-progress", "--workers", "0", "--short-side", "32",
                                     "--templates", "simple", "--classes", "cat,dog", "--batch-size", "1"])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert "No space left on device" in " ".join(result.output.split())
        assert not list((disk / "out").rglob("*.tmp"))


def test_merge_names_the_invalid_lines_it_does_not_carry_over(images, tmp_path):
    """A damaged part (a shard killed mid-line, a disk error) lost its bad lines in silence."""
    out = tmp_path / "out"
    done = label_folder(segmenter(["cat"]), images, out, LabelOptions(workers=0, shard=(0, 2)))
    with open(out / "manifest.shard-0-of-2.jsonl", "ab") as part:
        part.write(b'{"source": "x.png", "status": "ok"}\n\xff\xfe garbage\n')
    result, text = merge(out)
    assert result.exit_code == 0, text
    assert "invalid manifest line, not merged as an entry: manifest.shard-0-of-2.jsonl line" in text
    assert text.count("invalid manifest line,") == 2
    entries = {e["source"]: e for e in manifest_lines(out)}
    assert len(entries) == done.total + 1 and entries["x.png"]["status"] == "error"


def test_label_out_that_is_a_file_says_so(images, tmp_path):
    (tmp_path / "out").write_text("mine")
    with pytest.raises(MaskCLIPError, match="is a file, not a folder"):
        label_folder(segmenter(["cat"]), images, tmp_path / "out", LabelOptions(workers=0))
    assert (tmp_path / "out").read_text() == "mine"
