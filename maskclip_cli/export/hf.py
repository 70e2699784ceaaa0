"""Hugging Face ``datasets`` export: Parquet shards under ``data/`` and a dataset card ``README.md``.

``load_dataset("parquet", data_dir=OUT/data)``, ``load_dataset(OUT)`` (the card's ``configs``) and
``Dataset.from_parquet`` read it. Columns: ``image`` (the photo's own bytes) and ``label`` (the
indexed label PNG: pixel = class id, 255 = ignore; excluded classes become 255) as ``Image``
features, ``confidence`` (8-bit greyscale PNG, 0-255 = 0-1, null without a map), ``source`` (the
photo's path relative to the labelled folder) and ``classes`` (ids present, a sequence of
``ClassLabel`` so the class names travel in the features). The features live in each file's
``huggingface`` schema metadata, where ``datasets`` reads them.

Images are split train/validation by the same per-image hash as yolo-seg (``split.in_val_split``). Rows are written as they
arrive, in row groups of at most ``ROW_GROUP_ROWS`` rows / ``ROW_GROUP_BYTES`` bytes, into shards of
at most ``SHARD_BYTES``: memory is one row group, whatever the number of images. Shards are written
under ``.hf-part/`` and moved to their final names (``train-00000-of-00003.parquet``) and the card
written only when every image is in, so an interrupted export never looks complete.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Mapping

import numpy as np

from ..core.constants import IGNORE_INDEX
from ..core._io import atomic_write
from ..formats.label_files import PNG_COMPRESSION, confidence_png, label_image, png_settings
from ..formats.label_folder import LabelFolder
from ..formats.image_entry import CONFIDENCE, LABEL, ImageEntry
from .provenance import model_version, settings_lines
from .split import in_val_split
from .writer import ExportOptions, kept_classes

DATA = "data"
CARD = "README.md"
PARTS = ".hf-part"
SPLITS = ("train", "validation")
ROW_GROUP_ROWS = 100  # the Hub's advice for image rows: small groups keep random access and the viewer cheap
ROW_GROUP_BYTES = 64 << 20
SHARD_BYTES = 500 << 20


def features(class_names: list[str]) -> dict:
    """The ``datasets`` features (``Features.to_dict`` form) of the rows :func:`row` makes."""
    return {
        "image": {"_type": "Image"},
        "label": {"_type": "Image"},
        "confidence": {"_type": "Image"},
        "source": {"dtype": "string", "_type": "Value"},
        "classes": {"feature": {"names": list(class_names), "_type": "ClassLabel"}, "_type": "Sequence"},
    }


def arrow_schema(class_names: list[str]):
    """The Arrow schema, with the features in its ``huggingface`` metadata."""
    import pyarrow as pa

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("image", image), ("label", image), ("confidence", image), ("source", pa.string()),
                        ("classes", pa.list_(pa.int64()))])
    info = {"info": {"features": features(class_names)}}
    return schema.with_metadata({"huggingface": json.dumps(info)})


def label_png(labels: np.ndarray, colours: list[list[int]]) -> bytes:
    """The label map as an indexed (palette) PNG, the classes.json colours as its palette."""
    buffer = io.BytesIO()
    label_image(labels, colours).save(buffer, format="PNG", **png_settings(PNG_COMPRESSION))
    return buffer.getvalue()


def row(source: str, photo: bytes, labels: np.ndarray, confidence: np.ndarray | None,
        kept: list[int], colours: list[list[int]]) -> dict:
    """One image's row: labels of classes not in ``kept`` become the ignore index."""
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    lut[kept] = kept
    labels = lut[labels]
    present = [int(c) for c in np.unique(labels) if c != IGNORE_INDEX]
    if confidence is not None:  # non-finite values (a damaged .npy map) as 0
        confidence = np.clip(np.nan_to_num(confidence, nan=0.0), 0, 1)
    return {
        "image": {"bytes": photo, "path": source},
        "label": {"bytes": label_png(labels, colours), "path": None},
        "confidence": None if confidence is None else {"bytes": confidence_png(confidence), "path": None},
        "source": source,
        "classes": present,
    }


class ShardWriter:
    """Rows of one split into numbered Parquet shards under ``parts``, flushed by row group."""

    def __init__(self, parts: Path, split: str, schema):
        self.parts, self.split, self.schema = parts, split, schema
        self.shards: list[Path] = []
        self.rows = 0
        self._buffer: list[dict] = []
        self._buffer_bytes = 0
        self._writer = None

    def add(self, item: dict) -> None:
        self._buffer.append(item)
        self._buffer_bytes += sum(len(item[k]["bytes"]) for k in ("image", "label", "confidence") if item[k])
        self.rows += 1
        if len(self._buffer) >= ROW_GROUP_ROWS or self._buffer_bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._buffer:
            return
        if self._writer is None:
            self.shards.append(self.parts / f"{self.split}-{len(self.shards):05d}.parquet")
            self._writer = pq.ParquetWriter(self.shards[-1], self.schema)
        self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self.schema), row_group_size=len(self._buffer))
        self._buffer, self._buffer_bytes = [], 0
        if self.shards[-1].stat().st_size >= SHARD_BYTES:
            self._writer.close()
            self._writer = None

    def close(self) -> list[Path]:
        """Flush and close; the shard files written."""
        self._flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self.shards

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def dataset_card(class_names: list[str], colours: list[list[int]], kept: list[int], counts: dict[str, int],
                 folder: LabelFolder, options: ExportOptions) -> str:
    """README.md: the Hub's YAML header (configs, features), the classes, how the labels were made."""
    splits = [s for s in SPLITS if counts[s]]
    yaml = ["---", "configs:", "- config_name: default", "  data_files:"]
    yaml += [f"  - split: {s}\n    path: {DATA}/{s}-*" for s in splits]
    yaml += ["task_categories:", "- image-segmentation", "tags:", "- pseudo-labels", "- maskclip", "---", ""]
    classes = [f"| {i} | {json.dumps(n)[1:-1].replace('|', chr(92) + '|')} | {'#%02x%02x%02x' % tuple(colours[i])} |" for i, n in enumerate(class_names) if i in kept]
    settings = settings_lines(folder.record)
    body = [
        "# Pseudo-labelled segmentation dataset", "",
        f"Semantic segmentation labels made without annotation by {model_version(folder.record)} "
        "(MaskCLIP, ECCV 2022): a first draft to review, not ground truth.", "",
        "Splits: " + ", ".join(f"{s} {counts[s]} images" for s in splits)
        + f" (per-image hash: validation fraction {options.val_fraction}, seed {options.seed}).", "",
        "Columns: `image` (the photo), `label` (indexed PNG: pixel = class id, 255 = ignore), `confidence` "
        "(greyscale PNG, 0-255 = confidence 0-1), `source` (path in the labelled folder), `classes` (ids present).", "",
        "```python", "from datasets import load_dataset", 'ds = load_dataset("parquet", data_dir="data")  # or load_dataset("<this folder>")',
        'import numpy as np; labels = np.array(ds["train"][0]["label"])  # class ids', "```", "",
        "## Classes", "", "| id | name | colour |", "|---|---|---|", *classes, "",
        "## How the labels were made", "", *[f"- {line}" for line in settings], "",
    ]
    return "\n".join(yaml + body)


class HfWriter:
    outputs = (DATA, CARD, PARTS)
    options = ("images", "val_fraction", "seed")
    needs_images = True

    def __init__(self, folder: LabelFolder, out: Path, options: ExportOptions):
        self.folder, self.out, self.options = folder, out, options
        self.kept = kept_classes(folder, options.exclude)
        self.colours = folder.colours
        (out / PARTS).mkdir(parents=True, exist_ok=True)
        schema = arrow_schema(folder.class_names)
        self.splits = {s: ShardWriter(out / PARTS, s, schema) for s in SPLITS}

    def add(self, entry: ImageEntry, maps: Mapping[str, np.ndarray | None], photo: Path | None) -> None:
        split = "validation" if in_val_split(entry.source, self.options.seed, self.options.val_fraction) else "train"
        self.splits[split].add(row(entry.source, photo.read_bytes(), maps[LABEL.name], maps[CONFIDENCE.name],
                                   self.kept, self.colours))

    def abort(self) -> None:
        for split in self.splits.values():
            split.abort()
        shutil.rmtree(self.out / PARTS, ignore_errors=True)

    def close(self) -> None:
        counts = {s: w.rows for s, w in self.splits.items()}
        (self.out / DATA).mkdir(exist_ok=True)
        for split, writer in self.splits.items():
            shards = writer.close()
            for k, shard in enumerate(shards):
                shard.replace(self.out / DATA / f"{split}-{k:05d}-of-{len(shards):05d}.parquet")
        (self.out / PARTS).rmdir()
        text = dataset_card(self.folder.class_names, self.colours, self.kept, counts, self.folder, self.options)
        atomic_write(self.out / CARD, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
