"""`maskclip label --engine ray`: the label job on a Ray cluster, with Ray Data's batch-inference pattern.

The driver does what the local engine does before any image is touched, with the same pieces of
:mod:`.label_job`: it lists the images (a local folder or an object-store prefix, :mod:`.image_source`),
takes the output folder's lock, refuses other settings, writes classes.json and drops every image
already in the manifest with intact outputs, so finished work is never scheduled. Then:

1. CPU tasks read each image's bytes through a pyarrow filesystem (any node can read a bucket);
2. CPU tasks decode them (:func:`~maskclip_cli.formats.images.read_rgb`: EXIF, bit depth, reduced-scale
   JPEG decoding) and resize them to the model's uint8 input;
3. an actor pool labels them (``map_batches`` with a callable class): each actor loads the segmenter
   once (CLIP and the text embeddings, shipped once through the object store) on its GPU share, runs the
   label job's own batch code and writer (so the maps are byte-identical to ``--engine local``), and
   returns one manifest line per image;
4. the driver appends those lines to the manifest as blocks finish: it is the manifest's only writer.

Faults: an image that cannot be read, decoded or labelled gets an ``error`` line, as in the local
engine. A lost actor is restarted by Ray and its batch retried (outputs are written atomically and
the manifest line comes from the batch's one delivered result, so nothing is duplicated); a batch that
still fails is skipped when ``--max-failures`` allows (Ray Data's ``max_errored_blocks``), its images
get no line and the next run labels them. A killed driver loses nothing that has a manifest line.

With CPU actors, Ray Data fuses steps 1-2 into the actors (same resources, one copy less); GPU actors
keep them on CPU tasks. A Ray block holds whole batches of the local engine (``--batch-size`` images
in order) and an actor batches same-shaped images within one of them only, as the local engine does:
batched and unbatched matrix products differ in the last bit, so the same batches are what makes the
maps byte-identical. That also needs the same kernels: the same device type and, on a CPU, the same
torch thread count (Ray gives a one-CPU actor one thread).
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import time
from collections import defaultdict
from copy import copy
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from ..clip.preprocess import resize_uint8
from ..core._worker_items import load_item
from ..core.errors import MaskCLIPError
from ..core.hooks import SILENT, ProgressHook
from ..core.record import record_hash
from ..engine.segmenter import Segmenter
from ..formats.image_files import output_stems
from ..formats.images import read_rgb
from ..formats.label_files import check_class_count
from ..formats.label_folder import CLASSES_FILE, LabelFolder
from ..formats.manifest import Manifest
from ..review.overlay import write_overlays
from .folder_lock import FolderLock
from .image_source import ImageSource, list_images, open_source, read_bytes
from .label_job import (  # the label job's pieces this engine shares (keep in step when they change)
    LabelSummary,
    _check_same_settings,
    _check_writable,
    _is_done,
    _maps_each,
    _own_outputs,
    _Writer,
    error_entry,
    label_record,
)
from .options import LabelOptions
from .ray_options import RayOptions, check_reachable

def label_with_ray(segmenter: Segmenter, source: str | Path, out_dir: Path, options: LabelOptions | None = None,
                   ray_options: RayOptions | None = None, hook: ProgressHook = SILENT) -> LabelSummary:
    """Label every image under ``source`` (a folder or an object-store URL) into ``out_dir`` on Ray."""
    options = options or LabelOptions()
    if options.shard is not None:
        raise MaskCLIPError("--engine ray spreads the images over its actors itself: drop --shard (and torchrun).")
    ray_options = ray_options or RayOptions()
    check_class_count(len(segmenter.class_names))
    images = open_source(source)
    if options.overlays and images.local is None:
        raise MaskCLIPError("--overlays needs a local input folder (they are drawn over the photo read from disk).")
    folder = LabelFolder(out_dir)
    paths, unsafe = list_images(images, _own_outputs(images.local, folder) if images.local else [])
    if unsafe:
        hook.warn(f"{len(unsafe)} object(s) left out: their names climb out of the output folder (e.g. {unsafe[0]})")
    started = _connect(ray_options)  # before anything is written: an unreachable cluster leaves no trace
    try:
        _check_writable(out_dir)
        with FolderLock(out_dir, None, "maskclip label --engine ray") as lock:
            for holder in lock.stale:
                hook.info(f"removed the stale lock of a run that ended without releasing it ({holder})")
            return _label_locked(segmenter, images, folder, paths, options, ray_options, hook)
    finally:
        if started:
            import ray

            ray.shutdown()


def _connect(ray_options: RayOptions) -> bool:
    """Join the cluster (or start a local one); True when this call started Ray here."""
    import ray

    target = ray_options.target
    if target is not None:
        check_reachable(target)
    if ray.is_initialized():  # a caller (a notebook, a test, a `ray job submit` script) already joined one
        return False
    kwargs = {} if target is not None else {"include_dashboard": False}
    try:
        ray.init(address=target, logging_level=logging.WARNING, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise MaskCLIPError(f"Cannot join the Ray cluster at {target or 'a new local cluster'}: {_first_line(exc)}") from None
    return True


def _label_locked(segmenter: Segmenter, images: ImageSource, folder: LabelFolder, paths: list[PurePosixPath],
                  options: LabelOptions, ray_options: RayOptions, hook: ProgressHook) -> LabelSummary:
    out_dir = folder.root
    record = label_record(segmenter, options)
    if not options.overwrite:
        _check_same_settings(out_dir, record)
    folder.write_classes(record)
    tag = record_hash(record)
    manifest = Manifest(folder, None, fresh=options.overwrite)
    if manifest.malformed:
        hook.warn(f"{manifest.malformed} malformed line(s) in {out_dir}'s manifest ignored; those images are labelled again.")
    stems = output_stems(paths)
    todo = [p for p in paths if options.overwrite or not _is_done(manifest.entries.get(str(p)), out_dir, tag)]
    summary = LabelSummary(total=len(paths), skipped=len(paths) - len(todo))
    recorded: set[str] = set()
    start = time.perf_counter()
    hook.start(len(todo), "labelling")
    try:
        for entry in _run(segmenter, images, out_dir, todo, stems, tag, options, ray_options) if todo else ():
            manifest.add(entry)
            recorded.add(entry["source"])
            if entry["status"] == "ok":
                summary.labelled += 1
            else:
                summary.failed += 1
                summary.failures.append((entry["source"], entry["error"]))
            hook.advance(1)
    finally:
        hook.finish()
        summary.seconds = time.perf_counter() - start
        manifest.close(compact=True)
    lost = [str(p) for p in todo if str(p) not in recorded]  # in blocks skipped under --max-failures
    summary.failed += len(lost)
    summary.failures += [(p, "its batch failed after Ray's retries (not recorded; a rerun retries it)") for p in lost]
    if options.overlays:  # images labelled by an earlier run without --overlays
        write_overlays(out_dir, images.local, missing_only=True)
    return summary


def _run(segmenter: Segmenter, images: ImageSource, out_dir: Path, todo: list[PurePosixPath], stems: dict,
         tag: str, options: LabelOptions, ray_options: RayOptions) -> Iterator[dict]:
    """Each image's manifest line as its block reaches the driver, with ``--max-failures`` in force."""
    import ray.data

    context = ray.data.DataContext.get_current()  # a dataset copies it when built: set it first
    saved = context.max_errored_blocks, context.enable_progress_bars
    context.max_errored_blocks = ray_options.max_failures
    context.enable_progress_bars = False  # the driver's hook counts images as their lines arrive
    try:
        yield from _stream(segmenter, images, out_dir, todo, stems, tag, options, ray_options)
    finally:
        context.max_errored_blocks, context.enable_progress_bars = saved


def _stream(segmenter: Segmenter, images: ImageSource, out_dir: Path, todo: list[PurePosixPath], stems: dict,
            tag: str, options: LabelOptions, ray_options: RayOptions) -> Iterator[dict]:
    """The Ray Data pipeline."""
    import pyarrow as pa
    import ray
    import ray.data

    # one block holds whole batches of the local engine (--batch-size images in todo order, numbered), and
    # the actors batch same-shaped images of one such batch only: the model sees the batches it sees
    # locally, so the floats, and the maps, are the same
    size = options.batch_size
    rows = [{"source": str(p), "path": images.path_of(p), "stem": stems[p], "batch": i // size} for i, p in enumerate(todo)]
    per_block = max(1, ray_options.batch_size // size) * size
    blocks = [pa.Table.from_pylist(rows[i : i + per_block]) for i in range(0, len(rows), per_block)]
    resize = _input_resize(segmenter)
    labeller_args = {
        "segmenter": ray.put(_serialise(segmenter)), "out_dir": str(out_dir), "options": options, "tag": tag,
        "class_names": list(segmenter.class_names), "input_dir": str(images.local or ""),
        "gpu": ray_options.gpus_per_actor > 0,
    }
    low, high = ray_options.actors
    dataset = (
        ray.data.from_arrow(blocks)  # batch_size=None below: each call gets one whole block
        .map_batches(_read, batch_size=None, fn_kwargs={"filesystem": None if images.local else images.filesystem})
        .map_batches(_decode, batch_size=None, fn_kwargs={
            "local": images.local is not None, "resize": resize, "exif": options.exif,
            "min_short_side": segmenter.input_short_side()})
        .map_batches(_Labeller, batch_size=None, fn_constructor_kwargs=labeller_args,  # Ray Data restarts lost actors
                     compute=ray.data.ActorPoolStrategy(min_size=low, max_size=high),
                     num_gpus=ray_options.gpus_per_actor or None)
    )
    try:
        for block in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for line in block["entry"]:
                yield json.loads(line)
    except ray.exceptions.RayError as exc:  # a stage failed past its retries and --max-failures
        raise MaskCLIPError(f"The Ray job stopped: {_cause(exc)}") from None


# -- the stages (run in Ray workers) ---------------------------------------------------------


def _read(batch: dict, filesystem: object | None) -> dict:
    """CPU task: each image's bytes, or the error that stopped the read. A local file (``filesystem``
    None) is left to the decoder to open by path, so its errors read as the local engine's."""
    data, errors = [], []
    for source, path in zip(batch["source"], batch["path"]):
        item = load_item(lambda: {"data": read_bytes(filesystem, str(path))}, str(source)) if filesystem else {}
        data.append(item.get("data", b""))
        errors.append(item.get("error", ""))
    return {"source": batch["source"], "stem": batch["stem"], "batch": batch["batch"], "path": batch["path"], "data": _objects(data),
            "error": np.array(errors)}


def _decode(batch: dict, local: bool, resize: Callable | None, exif: bool, min_short_side: int | None) -> dict:
    """CPU task: decoded and resized to the model's uint8 input (raw RGB when the actors resize)."""
    inputs, shapes, sizes, errors = [], [], [], list(batch["error"])
    for i, (source, path, data) in enumerate(zip(batch["source"], batch["path"], batch["data"])):
        file = str(path) if local else io.BytesIO(data)
        item = {} if errors[i] else load_item(lambda: _decoded(file, resize, exif, min_short_side), str(source))
        errors[i] = errors[i] or item.get("error", "")
        array = item.get("input", np.zeros((0, 0, 0), np.uint8))
        inputs.append(array.tobytes())
        shapes.append(array.shape)
        sizes.append(item.get("size", (0, 0)))
    return {"source": batch["source"], "stem": batch["stem"], "batch": batch["batch"], "error": np.array(errors), "input": _objects(inputs),
            "shape": np.array(shapes, dtype=np.int64).reshape(-1, 3), "size": np.array(sizes, dtype=np.int64).reshape(-1, 2),
            "resized": np.array([resize is not None] * len(errors))}


def _decoded(file: str | io.BytesIO, resize: Callable | None, exif: bool, min_short_side: int | None) -> dict:
    decoded = read_rgb(file, exif, min_short_side)  # type: ignore[arg-type]  # PIL opens file objects too
    array = resize(decoded.image).numpy() if resize is not None else np.asarray(decoded.image)
    return {"input": array, "size": decoded.size}


class _Labeller:
    """Actor: loads the segmenter once, then labels batches and writes their outputs with the label job's writer."""

    def __init__(self, segmenter: object, out_dir: str, options: LabelOptions, tag: str, class_names: list[str],
                 input_dir: str, gpu: bool):
        import ray

        self.folder, self.options, self.tag, self.class_names = LabelFolder(Path(out_dir)), options, tag, class_names
        self.input_dir = Path(input_dir)
        if not (self.folder.root / CLASSES_FILE).is_file():
            raise MaskCLIPError(f"The output folder {out_dir} is not visible on node {socket.gethostname()}: "
                                "--out must be on a filesystem every node mounts (NFS, Lustre, a shared volume).")
        blob = ray.get(segmenter) if isinstance(segmenter, ray.ObjectRef) else segmenter
        device = torch.device("cuda" if gpu else "cpu")
        self.segmenter = torch.load(io.BytesIO(blob), map_location=device, weights_only=False)  # our own bytes
        self.segmenter.device = device

    def __call__(self, batch: dict) -> dict:
        lines = _Lines()
        writer = _Writer(self.folder, self.options, self.class_names, lines, self.tag, self.input_dir)  # type: ignore[arg-type]
        groups: dict[tuple, list[tuple[int, torch.Tensor]]] = defaultdict(list)
        for i, error in enumerate(batch["error"]):
            if error:
                lines.add(error_entry(PurePosixPath(batch["source"][i]), str(error), self.tag))
            else:
                image = self._input(batch, i)
                groups[(int(batch["batch"][i]), *image.shape)].append((i, image))
        try:
            with torch.no_grad():
                for group in groups.values():
                    rows = [i for i, _ in group]
                    sizes = [(int(batch["size"][i][0]), int(batch["size"][i][1])) for i in rows]
                    results = _maps_each(self.segmenter, torch.stack([im for _, im in group]), sizes, self.options)
                    for i, size, result in zip(rows, sizes, results):
                        rel = PurePosixPath(batch["source"][i])
                        if isinstance(result, str):
                            lines.add(error_entry(rel, result, self.tag))
                        else:
                            writer.submit(rel, str(batch["stem"][i]), size, *result)
        finally:
            writer.close()  # a write error is raised here: the block fails (counted by --max-failures)
        return {"entry": _objects([json.dumps(entry) for entry in lines.entries])}

    def _input(self, batch: dict, i: int) -> torch.Tensor:
        array = np.frombuffer(batch["input"][i], np.uint8).reshape(batch["shape"][i])
        if batch["resized"][i]:
            return torch.from_numpy(array.copy())
        return self.segmenter.resize(Image.fromarray(array))


class _Lines:
    """Stands in for the manifest in an actor: the writer's lines go back to the driver."""

    def __init__(self) -> None:
        self.entries: list[dict] = []

    def add(self, entry: dict) -> None:
        self.entries.append(entry)  # list.append is atomic: the writer threads may call it together


# -- helpers ------------------------------------------------------------------------------------


def _objects(values: list) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _serialise(segmenter: Segmenter) -> bytes:
    """The segmenter as bytes the actors load once (its progress hook stays on the driver)."""
    shipped = copy(segmenter)
    if hasattr(shipped, "hook"):
        shipped.hook = SILENT
    buffer = io.BytesIO()
    torch.save(shipped, buffer)
    return buffer.getvalue()


def _input_resize(segmenter: Segmenter) -> Callable | None:
    """``segmenter.resize`` as a function that carries no model (it goes to every decode task), when it
    is :func:`resize_uint8` at the segmenter's short side and patch stride. Checked on two probe images,
    since a wrong guess would change the maps; None lets the actors resize with the segmenter itself."""
    short_side, stride = segmenter.input_short_side(), getattr(segmenter, "patch", None)
    if short_side is None or not isinstance(stride, int):
        return None
    resize = partial(resize_uint8, short_side=short_side, stride=stride)
    rng = np.random.default_rng(0)
    for w, h in ((97, 61), (45, 130)):
        probe = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        if not torch.equal(resize(probe), segmenter.resize(probe)):
            return None
    return resize


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _cause(exc: BaseException) -> str:
    """The message of the error a stage raised: ours when it was a MaskCLIPError (Ray passes it on as
    text in the remote traceback), else the innermost wrapped error's first line."""
    ours = re.findall(r"MaskCLIPError: (.+)", str(exc))
    if ours:
        return ours[-1].strip()
    seen = exc
    while (inner := getattr(seen, "cause", None) or seen.__cause__) is not None and inner is not seen:
        seen = inner
    return f"{type(seen).__name__}: {_first_line(seen)}. Images recorded so far are kept; rerun to resume."
