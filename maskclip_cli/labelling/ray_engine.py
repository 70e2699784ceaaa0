"""`maskclip label --engine ray`: the label job on a Ray cluster, with Ray Data's batch-inference pattern.

The driver does what the local engine does before any image is touched, with the same public steps
of :mod:`.label_job`: it lists the images (a local folder or an object-store prefix, :mod:`.image_source`),
checks that every node able to host an actor sees the output folder (a probe file, before anything is
written), takes the output folder's lock, refuses other settings, writes classes.json and drops every
image already in the manifest with intact outputs, so finished work is never scheduled. Then:

1. CPU tasks read each image's bytes through a pyarrow filesystem (any node can read a bucket);
2. CPU tasks decode them (:func:`~maskclip_cli.formats.images.read_rgb`: EXIF, bit depth, reduced-scale
   JPEG decoding) and resize them to the model's uint8 input;
3. an actor pool labels them (``map_batches`` with a callable class): each actor loads the segmenter
   once (CLIP and the text embeddings, shipped once through the object store) on its GPU share, runs the
   label job's own batch code and writer (:func:`~.label_job.label_group`, :class:`~.label_job.OutputWriter`:
   the maps are byte-identical to ``--engine local``), and returns one manifest line per image;
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
import os
import re
import socket
import time
from collections import defaultdict
from contextlib import suppress
from copy import copy
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from ..clip.preprocess import resize_uint8
from ..core._worker_items import load_item
from ..core.errors import MaskCLIPError, ParameterError
from ..core.hooks import SILENT, ProgressHook
from ..core.record import LabelRecord
from ..core.vocabulary import check_class_count
from ..engine.segmenter import Segmenter
from ..formats.image_entry import ImageEntry
from ..formats.image_files import output_stems
from ..formats.label_folder import LabelFolder
from ..review.overlay import write_overlays
from .image_source import ImageSource, list_images, open_source, read_bytes
from .label_job import (
    LabelSummary,
    OutputWriter,
    close_manifest,
    decode_input,
    label_group,
    locked,
    start_run,
    to_label,
    write_probe,
)
from .options import LabelOptions
from .ray_options import RayOptions, check_reachable


def label_with_ray(segmenter: Segmenter, source: str | os.PathLike, out_dir: str | os.PathLike,
                   options: LabelOptions | None = None, ray_options: RayOptions | None = None,
                   hook: ProgressHook = SILENT) -> LabelSummary:
    """Label every image under ``source`` (a folder or an object-store URL) into ``out_dir`` on Ray."""
    options = options or LabelOptions()
    if options.shard is not None:
        raise MaskCLIPError("--engine ray spreads the images over its actors itself: drop --shard (and torchrun).")
    ray_options = ray_options or RayOptions()
    check_class_count(len(segmenter.class_names))
    images = open_source(source)
    if options.overlays and images.local is None:
        raise MaskCLIPError("--overlays needs a local input folder (they are drawn over the photo read from disk).")
    out_dir = Path(out_dir).resolve()  # the actors' working folder is not the driver's
    folder = LabelFolder(out_dir)
    folder.check_contained()
    paths, unsafe = list_images(images, folder)
    if unsafe:
        hook.warn(f"{len(unsafe)} object(s) left out: their names climb out of the output folder (e.g. {unsafe[0]})")
    started = _connect(ray_options)  # before anything is written: an unreachable cluster leaves no trace
    try:
        _check_gpus(ray_options)
        _check_output(out_dir, ray_options)
        with locked(out_dir, None, hook, "maskclip label --engine ray"):
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


def _check_gpus(ray_options: RayOptions) -> None:
    """``--gpus-per-actor`` on a cluster without GPUs: Ray would wait for them for ever."""
    import ray

    if ray_options.gpus_per_actor and not ray.cluster_resources().get("GPU", 0):
        raise ParameterError("{} asks for GPUs but the Ray cluster has none (an autoscaling cluster: start a GPU "
                             "node first); pass 0 for CPU actors.", "gpus_per_actor")


def _check_output(out_dir: Path, ray_options: RayOptions) -> None:
    """The output folder is writable here and visible where the actors will run, checked before anything
    is written in it: a probe file that every node able to host an actor must see (one tiny task per
    node). A folder this check created is removed again when it fails."""
    created = not out_dir.exists()
    try:
        with write_probe(out_dir) as probe:
            _check_shared(probe, out_dir, ray_options)
    except MaskCLIPError:
        if created:
            with suppress(OSError):
                out_dir.rmdir()
        raise


def _check_shared(probe: Path, out_dir: Path, ray_options: RayOptions) -> None:
    """Every live node with the resources of one labelling actor sees ``probe``. A node that joins
    later (autoscaling) is checked by its actors, which look for classes.json when they start."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    need = {"CPU": 1.0, "GPU": ray_options.gpus_per_actor}
    nodes = [n for n in ray.nodes() if n.get("Alive") and all(n["Resources"].get(k, 0) >= v for k, v in need.items() if v)]
    is_file = ray.remote(num_cpus=0, max_retries=0)(os.path.isfile)  # no CPU: runs at once, beside busy workers
    checks = [(n["NodeManagerAddress"], is_file.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
               .remote(str(probe))) for n in nodes]
    for node, seen in zip([node for node, _ in checks], ray.get([ref for _, ref in checks])):
        if not seen:
            raise MaskCLIPError(_not_shared(out_dir, node))


def _not_shared(out_dir: Path | str, node: str) -> str:
    return (f"The output folder {out_dir} is not visible on node {node}: --out must be on a filesystem every node "
            "mounts (NFS, Lustre, a shared volume).")


def _label_locked(segmenter: Segmenter, images: ImageSource, folder: LabelFolder, paths: list[PurePosixPath],
                  options: LabelOptions, ray_options: RayOptions, hook: ProgressHook) -> LabelSummary:
    tag, manifest = start_run(segmenter, folder, options, hook)
    todo = to_label(paths, manifest, folder, tag, options.overwrite)
    summary = LabelSummary(total=len(paths), skipped=len(paths) - len(todo))
    recorded: set[str] = set()
    start = time.perf_counter()
    hook.start(len(todo), "labelling")
    try:
        for entry in _run(segmenter, images, folder, todo, output_stems(paths), tag, options, ray_options) if todo else ():
            manifest.add(entry)
            recorded.add(entry.source)
            if entry.ok:
                summary.done += 1
            else:
                summary.fail(entry.source, entry.error or "")
            hook.advance(1)
    finally:
        hook.finish()
        summary.seconds = time.perf_counter() - start
        close_manifest(manifest, compact=True)
    for lost in (str(p) for p in todo if str(p) not in recorded):  # in blocks skipped under --max-failures
        summary.fail(lost, "its batch failed after Ray's retries (not recorded; a rerun retries it)")
    if options.overlays:  # images labelled by an earlier run without --overlays
        write_overlays(folder.root, images.local, missing_only=True)
    return summary


def _run(segmenter: Segmenter, images: ImageSource, folder: LabelFolder, todo: list[PurePosixPath], stems: dict,
         tag: str, options: LabelOptions, ray_options: RayOptions) -> Iterator[ImageEntry]:
    """Each image's manifest entry as its block reaches the driver, with ``--max-failures`` in force."""
    import ray.data

    context = ray.data.DataContext.get_current()  # a dataset copies it when built: set it first
    saved = context.max_errored_blocks, context.enable_progress_bars
    context.max_errored_blocks = ray_options.max_failures
    context.enable_progress_bars = False  # the driver's hook counts images as their lines arrive
    try:
        yield from _stream(segmenter, images, folder, todo, stems, tag, options, ray_options)
    finally:
        context.max_errored_blocks, context.enable_progress_bars = saved


def _stream(segmenter: Segmenter, images: ImageSource, folder: LabelFolder, todo: list[PurePosixPath], stems: dict,
            tag: str, options: LabelOptions, ray_options: RayOptions) -> Iterator[ImageEntry]:
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
        "segmenter": ray.put(_serialise(segmenter)), "out_dir": str(folder.root), "options": options, "tag": tag,
        "record": folder.record, "input_dir": images.local, "gpu": ray_options.gpus_per_actor > 0,
    }
    low, high = ray_options.actors
    dataset = (
        ray.data.from_arrow(blocks)  # batch_size=None below: each call gets one whole block
        .map_batches(_read, batch_size=None, fn_kwargs={"filesystem": None if images.local else images.filesystem})
        .map_batches(_decode, batch_size=None, fn_kwargs={
            "local": images.local is not None, "resize": resize, "exif": options.exif,
            "min_short_side": segmenter.input_short_side()})
        # Ray Data restarts lost actors; it refuses batch_size=None with GPUs: the blocks' size then
        .map_batches(_Labeller, batch_size=ray_options.batch_size if ray_options.gpus_per_actor else None,
                     fn_constructor_kwargs=labeller_args,
                     compute=ray.data.ActorPoolStrategy(min_size=low, max_size=high),
                     num_gpus=ray_options.gpus_per_actor or None)
    )
    try:
        for block in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for line in block["entry"]:
                yield ImageEntry.from_json(json.loads(line), folder.class_names)
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
        file = Path(path) if local else io.BytesIO(data)
        item = {} if errors[i] else load_item(lambda: decode_input(file, resize or np.asarray, exif, min_short_side), str(source))
        errors[i] = errors[i] or item.get("error", "")
        array = np.asarray(item.get("input", np.zeros((0, 0, 0), np.uint8)))
        inputs.append(array.tobytes())
        shapes.append(array.shape)
        sizes.append(item.get("size", (0, 0)))
    return {"source": batch["source"], "stem": batch["stem"], "batch": batch["batch"], "error": np.array(errors), "input": _objects(inputs),
            "shape": np.array(shapes, dtype=np.int64).reshape(-1, 3), "size": np.array(sizes, dtype=np.int64).reshape(-1, 2),
            "resized": np.array([resize is not None] * len(errors))}


class _Labeller:
    """Actor: loads the segmenter once, then labels blocks with the label job's batch code and writer."""

    def __init__(self, segmenter: object, out_dir: str, options: LabelOptions, tag: str, record: LabelRecord,
                 input_dir: Path | None, gpu: bool):
        import ray

        self.folder, self.options, self.tag, self.input_dir = LabelFolder(Path(out_dir), record=record), options, tag, input_dir
        if not self.folder.classes_file.is_file():  # a node that joined after the driver's check
            raise MaskCLIPError(_not_shared(out_dir, socket.gethostname()))
        blob = ray.get(segmenter) if isinstance(segmenter, ray.ObjectRef) else segmenter
        device = torch.device("cuda" if gpu else "cpu")
        self.segmenter = torch.load(io.BytesIO(blob), map_location=device, weights_only=False)  # our own bytes
        self.segmenter.device = device

    def __call__(self, batch: dict) -> dict:
        entries: list[ImageEntry] = []  # list.append is atomic: the writer threads may call it together
        writer = OutputWriter(self.folder, self.options, self.tag, self.input_dir, entries.append)
        groups: dict[tuple, list[tuple[int, torch.Tensor]]] = defaultdict(list)
        for i, error in enumerate(batch["error"]):
            if error:
                writer.fail(PurePosixPath(batch["source"][i]), str(error))
            else:
                image = self._input(batch, i)
                groups[(int(batch["batch"][i]), *image.shape)].append((i, image))
        try:
            with torch.no_grad():
                for group in groups.values():
                    rows = [i for i, _ in group]
                    rels = [PurePosixPath(batch["source"][i]) for i in rows]
                    sizes = [(int(batch["size"][i][0]), int(batch["size"][i][1])) for i in rows]
                    stems = {rel: str(batch["stem"][i]) for rel, i in zip(rels, rows)}
                    label_group(self.segmenter, torch.stack([im for _, im in group]), rels, sizes, stems, self.options, writer)
        finally:
            writer.close()  # a write error is raised here: the block fails (counted by --max-failures)
        return {"entry": _objects([json.dumps(entry.to_json()) for entry in entries])}

    def _input(self, batch: dict, i: int) -> torch.Tensor:
        array = np.frombuffer(batch["input"][i], np.uint8).reshape(batch["shape"][i])
        if batch["resized"][i]:
            return torch.from_numpy(array.copy())
        return self.segmenter.resize(Image.fromarray(array))


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
