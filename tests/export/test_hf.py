"""Hugging Face export, loaded by `datasets` the three ways users load it: pixels equal the label
maps, class names come with the features, the split follows the shared per-image rule, and the
rows are streamed in row groups."""

from __future__ import annotations

import numpy as np
import pytest
from label_folders import CLASS_NAMES, shapes_map, write_label_folder
from PIL import Image
from test_export import conf_of, export, folder  # noqa: F401 (fixture)

from maskclip_cli.export.split import in_val_split

datasets = pytest.importorskip("datasets", reason="datasets is in the dev extra: pip install -e '.[dev]'")
pq = pytest.importorskip("pyarrow.parquet")


def check_rows(ds, maps, tmp_path, excluded=()):
    for row in ds:
        labels = maps[row["source"]].copy()
        for c in excluded:
            labels[labels == c] = 255
        assert row["label"].mode == "P"
        assert np.array_equal(np.asarray(row["label"]), labels), row["source"]
        assert np.array_equal(np.asarray(row["image"]), np.asarray(Image.open(tmp_path / "images" / row["source"])))
        assert np.array_equal(np.asarray(row["confidence"]), np.round(conf_of(tmp_path, row["source"]) * 255).astype(np.uint8))
        assert row["classes"] == [int(c) for c in np.unique(labels) if c != 255]


def test_loaded_by_datasets(folder):
    tmp_path, maps = folder
    result = export(tmp_path, "hf", "--images", str(tmp_path / "images"), "--val-fraction", "0.5", "--seed", "1")
    assert result.exit_code == 1, result.output  # bad.jpg skipped
    out = tmp_path / "out"
    val = {s for s in maps if in_val_split(s, 1, 0.5)}
    assert val and len(val) < len(maps)  # both splits in use with this seed
    cache = str(tmp_path / "cache")
    for ds in (datasets.load_dataset("parquet", data_dir=str(out / "data"), cache_dir=cache),
               datasets.load_dataset(str(out), cache_dir=cache)):  # the card's configs
        assert set(ds) == {"train", "validation"}
        assert sorted(ds["validation"]["source"]) == sorted(val)
        assert sorted(ds["train"]["source"]) == sorted(set(maps) - val)
        assert ds["train"].features["classes"].feature.names == CLASS_NAMES
        for split in ds.values():
            check_rows(split, maps, tmp_path)
    (shard,) = (out / "data").glob("train-*.parquet")
    assert shard.name == "train-00000-of-00001.parquet"
    single = datasets.Dataset.from_parquet(str(shard), cache_dir=cache)
    assert single.features["label"] == datasets.Image()
    card = (out / "README.md").read_text()
    assert "| 2 | dog | #008000 |" in card and "templates: simple" in card and "validation fraction 0.5, seed 1" in card
    assert not (out / ".hf-part").exists()


def test_streams_row_groups_and_excludes(tmp_path, monkeypatch):
    """Rows go out in row groups as they come (memory is one group), excluded classes become 255."""
    from maskclip_cli.export import hf

    monkeypatch.setattr(hf, "ROW_GROUP_ROWS", 2)
    maps = {f"im{i}.png": shapes_map(40 + i, 50) for i in range(5)}
    write_label_folder(tmp_path / "labels", tmp_path / "images", maps)
    result = export(tmp_path, "hf", "--images", str(tmp_path / "images"), "--val-fraction", "0", "-x", "cat")
    assert result.exit_code == 0, result.output
    (shard,) = (tmp_path / "out/data").glob("*.parquet")
    assert pq.ParquetFile(shard).metadata.num_row_groups == 3
    ds = datasets.Dataset.from_parquet(str(shard), cache_dir=str(tmp_path / "cache"))
    check_rows(ds, maps, tmp_path, excluded=(1,))
    assert "| 1 | cat |" not in (tmp_path / "out/README.md").read_text()


def test_interrupted_export_looks_unfinished(folder, monkeypatch):
    from maskclip_cli.export.hf import HfWriter
    from maskclip_cli.export.run import export_folder
    from maskclip_cli.export.writer import ExportOptions

    tmp_path, _ = folder
    add = HfWriter.add

    def interrupt(self, entry, *args):
        if entry.source == "c.jpg":
            raise KeyboardInterrupt
        add(self, entry, *args)

    monkeypatch.setattr(HfWriter, "add", interrupt)
    with pytest.raises(KeyboardInterrupt):
        export_folder(tmp_path / "labels", tmp_path / "out", ExportOptions(format="hf", images=tmp_path / "images"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".maskclip-export", "failed.jsonl"]


def test_shards_roll_over_and_load_together(tmp_path, monkeypatch):
    from maskclip_cli.export import hf

    monkeypatch.setattr(hf, "ROW_GROUP_ROWS", 2)
    monkeypatch.setattr(hf, "SHARD_BYTES", 1)  # every row group closes its shard
    maps = {f"im{i}.png": shapes_map(40, 50 + i) for i in range(5)}
    write_label_folder(tmp_path / "labels", tmp_path / "images", maps)
    assert export(tmp_path, "hf", "--images", str(tmp_path / "images"), "--val-fraction", "0").exit_code == 0
    names = sorted(p.name for p in (tmp_path / "out/data").iterdir())
    assert names == [f"train-{k:05d}-of-00003.parquet" for k in range(3)]
    ds = datasets.load_dataset("parquet", data_dir=str(tmp_path / "out/data"), cache_dir=str(tmp_path / "cache"))
    assert sorted(ds["train"]["source"]) == sorted(maps)
    check_rows(ds["train"], maps, tmp_path)
