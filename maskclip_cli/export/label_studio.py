"""Label Studio pre-annotations: ``tasks.json`` (one task per image, its pseudo labels as a
prediction) and ``label_config.xml`` (the matching Brush labelling interface).

Each task's prediction holds one ``brushlabels`` result per kept class present, its mask encoded
by label-studio-sdk's own brush converter (``label_studio_sdk.converter.brush.mask2rle``; Label
Studio decodes it with the same RLE), the ``model_version`` of the label record and a ``score``:
the image's mean confidence over its labelled pixels (left out when not finite). Photos are not
copied: a task names its photo as ``--image-root-url`` joined with the photo's path by the SDK's
``join_input_url`` (local-files serving ``/data/local-files/?d=<dir>``, or an http(s)/s3/gs URL).

label-studio-sdk is the optional extra ``maskclip-cli[label-studio]`` (it pins OpenCV and pulls in
~30 packages); without it the format is refused before anything is written. Tasks are streamed to a
part file and renamed to ``tasks.json`` when every image is in and the config is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping
from xml.sax.saxutils import quoteattr

import numpy as np

from ..core._io import atomic_write
from ..core.constants import IGNORE_INDEX
from ..core.errors import MaskCLIPError, ParameterError
from ..formats.label_folder import LabelFolder
from ..formats.image_entry import CONFIDENCE, LABEL, ImageEntry
from .provenance import model_version
from .writer import ExportOptions, kept_classes, mean_score

TASKS = "tasks.json"
CONFIG = "label_config.xml"
FROM_NAME, TO_NAME = "label", "image"  # the control and object tag names of the config
URL_SCHEMES = ("http://", "https://", "s3://", "gs://", "azure-blob://", "/")
INSTALL = "--format label-studio needs label-studio-sdk: pip install 'maskclip-cli[label-studio]'"


def _brush():
    """label-studio-sdk's brush converter module (a MaskCLIPError naming the extra when missing)."""
    try:
        from label_studio_sdk.converter import brush
    except ImportError as exc:
        raise MaskCLIPError(INSTALL) from exc
    return brush


def image_url(root_url: str, source: str) -> str:
    """The task's photo URL: ``source`` joined onto ``root_url`` the way the SDK's importers do it."""
    try:
        from label_studio_sdk.converter.utils import join_input_url
    except ImportError as exc:
        raise MaskCLIPError(INSTALL) from exc
    return join_input_url(root_url, source)


def label_config(class_names: list[str], colours: list[list[int]], kept: list[int]) -> str:
    """The BrushLabels labelling interface, one Label per kept class in its classes.json colour."""
    labels = "".join(
        f"    <Label value={quoteattr(class_names[i])} background={quoteattr('#%02x%02x%02x' % tuple(colours[i]))}/>\n"
        for i in kept
    )
    return (f'<View>\n  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
            f'  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">\n{labels}  </BrushLabels>\n</View>\n')


def brush_results(labels: np.ndarray, class_names: list[str], kept: list[int]) -> list[dict]:
    """One ``brushlabels`` result per kept class present in ``labels`` (RLE by the SDK)."""
    brush = _brush()
    h, w = labels.shape
    results = []
    for c in np.unique(labels):
        if int(c) not in kept:
            continue  # ignore index, or an excluded class
        rle = brush.mask2rle(np.where(labels == c, 255, 0).astype(np.uint8))
        results.append({
            "id": f"c{int(c)}", "type": "brushlabels", "from_name": FROM_NAME, "to_name": TO_NAME,
            "original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"format": "rle", "rle": rle, "brushlabels": [class_names[int(c)]]},
        })
    return results


def task(url: str, labels: np.ndarray, confidence: np.ndarray | None, class_names: list[str],
         kept: list[int], version: str) -> dict:
    """One Label Studio task with the pseudo labels as its prediction."""
    prediction: dict = {"model_version": version, "result": brush_results(labels, class_names, kept)}
    score = mean_score(confidence, labels != IGNORE_INDEX)  # over the labelled pixels
    if score is not None:
        prediction["score"] = score
    return {"data": {TO_NAME: url}, "predictions": [prediction]}


class LabelStudioWriter:
    outputs = (TASKS, CONFIG)
    options = ("image_root_url",)
    needs_images = False

    def __init__(self, folder: LabelFolder, out: Path, options: ExportOptions):
        self.folder, self.out, self.options = folder, out, options
        self.kept = kept_classes(folder, options.exclude)
        self.version = model_version(folder.record)
        self._tasks = open(out / f".{TASKS}.part", "w", encoding="utf-8")
        self._tasks.write("[")
        self._count = 0

    @staticmethod
    def check_input(folder: LabelFolder, options: ExportOptions) -> None:
        """The image root is a URL Label Studio can serve and the SDK is installed."""
        root = options.image_root_url
        if not root:
            raise ParameterError("--format label-studio needs {}: where Label Studio finds the photos, e.g. "
                                 "'/data/local-files/?d=photos' (local files) or 'https://host/photos'.", "image_root_url")
        if not root.startswith(URL_SCHEMES):
            raise ParameterError(f"{{}} must start with {', '.join(URL_SCHEMES)} (got '{root}').", "image_root_url")
        _brush()

    def add(self, entry: ImageEntry, maps: Mapping[str, np.ndarray | None], photo: Path | None) -> None:
        item = task(image_url(self.options.image_root_url, entry.source), maps[LABEL.name], maps[CONFIDENCE.name],
                    self.folder.class_names, self.kept, self.version)
        self._tasks.write(("," if self._count else "") + "\n" + json.dumps(item, separators=(",", ":")))
        self._count += 1

    def abort(self) -> None:
        self._tasks.close()
        Path(self._tasks.name).unlink(missing_ok=True)

    def close(self) -> None:  # tasks.json last: an export stopped before it never looks complete
        self._tasks.write("\n]\n")
        self._tasks.close()
        text = label_config(self.folder.class_names, self.folder.colours, self.kept)
        atomic_write(self.out / CONFIG, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        Path(self._tasks.name).replace(self.out / TASKS)
