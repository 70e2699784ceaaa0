"""`maskclip label`: a folder of images -> a pseudo-labelled segmentation dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.constants import DEFAULT_MODEL, DEFAULT_PRETRAINED
from ..engine.config import MaskCLIPConfig
from ..core.errors import MaskCLIPError, ParameterError
from ..core.vocabulary import ClassVocabulary
from ..labelling.image_source import is_url
from ..labelling.label_job import label_folder
from ..labelling.merge import merge_folder
from ..labelling.options import LabelOptions
from ..labelling.ray_options import RayOptions, parse_actors
from ..labelling.ranks import rank_device, torchrun_shard
from ..labelling.sharding import parse_shard
from .app import app
from .job_output import print_failures_and_exit, print_job
from .common import (
    Background,
    Checkpoint,
    Classes,
    ClassesFile,
    DenoiseThreshold,
    Device,
    KeySmoothing,
    Method,
    Model,
    Pamr,
    PamrDilations,
    PamrIterations,
    Pretrained,
    PromptDenoising,
    QuickGelu,
    RichHook,
    ShortSide,
    Stride,
    Templates,
    Window,
    comma_list,
    console,
    extra_class_names,
    load_trained,
    parse_dilations,
    read_classes,
    resolve_device,
    user_errors,
    with_proxy_options,
)

_M, _L, _R = MaskCLIPConfig, LabelOptions, RayOptions  # option defaults are the library's


@app.command("label", context_settings={"allow_extra_args": True})
@with_proxy_options
def label(
    ctx: typer.Context,
    input_dir: Annotated[Optional[str], typer.Argument(help="Folder of images, searched recursively (jpg, jpeg, png, webp, bmp, tif); with --engine ray also an object-store URL (s3://bucket/prefix, gs://...).", show_default=False)] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: labels/, confidence/, classes.json, manifest.jsonl.")] = Path("maskclip-labels"),
    classes: Classes = None,
    classes_file: ClassesFile = None,
    background: Background = None,
    model: Model = DEFAULT_MODEL,
    pretrained: Pretrained = DEFAULT_PRETRAINED,
    checkpoint: Checkpoint = None,
    quick_gelu: QuickGelu = None,
    method: Method = _M.method,
    proxy: Optional[dict] = None,  # the --proxy-*/--sam-* options, filled in by with_proxy_options
    templates: Templates = _M.templates,
    key_smoothing: KeySmoothing = _M.key_smoothing,
    prompt_denoising: PromptDenoising = _M.prompt_denoising,
    denoise_threshold: DenoiseThreshold = _M.denoise_threshold,
    short_side: ShortSide = _M.short_side,
    window: Window = _M.window,
    stride: Stride = _M.stride,
    pamr: Pamr = _M.pamr,
    pamr_iterations: PamrIterations = _M.pamr_iterations,
    pamr_dilations: PamrDilations = ",".join(map(str, _M.pamr_dilations)),
    logit_scale: Annotated[float, typer.Option(help="Probabilities are softmax(logit-scale x cosine); CLIP's 100 (the paper). Changes confidences, denoising and smoothing, not the arg-max.")] = _M.logit_scale,
    min_confidence: Annotated[Optional[float], typer.Option(min=0, max=1, help="Mark pixels below this confidence (0-1) as 255 = ignore. Off when not given.")] = _L.min_confidence,
    confidence_format: Annotated[str, typer.Option(help="Confidence maps as png (8-bit, 0-255) or npy (float16).")] = _L.confidence_format,
    segmenter_path: Annotated[Optional[Path], typer.Option("--segmenter", help="Label with a network trained by `maskclip train` (RUN/checkpoint.pt) instead of MaskCLIP; classes come from the checkpoint.")] = None,
    device: Device = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass (same-sized inputs are batched together).")] = _L.batch_size,
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes for reading and resizing images.")] = _L.workers,
    writers: Annotated[int, typer.Option(min=1, help="Threads writing PNG outputs.")] = _L.writers,
    overwrite: Annotated[bool, typer.Option(help="Relabel every image, even those already done with the same settings.")] = _L.overwrite,
    ignore_exif: Annotated[bool, typer.Option("--ignore-exif", help="Label the stored pixel arrays as they are, ignoring the EXIF orientation (by default photos are turned as viewers show them; label maps follow). Recorded in classes.json; train decodes the same way.")] = not _L.exif,
    png_compression: Annotated[int, typer.Option(min=0, max=9, help="zlib level of the PNG outputs. 1 (default): fast, Z_RLE strategy (label maps as small as level 6, confidence maps ~10-40 % larger); 6: PIL's default, smallest confidence maps, several times slower to write; 0: uncompressed.")] = _L.png_compression,
    shard: Annotated[Optional[str], typer.Option(help="K/N: label only shard K (from 0) of N, for independent jobs (SLURM arrays, Kubernetes indexed jobs) sharing --out. Shards are balanced by file size; the last to finish merges the manifest parts (or run `maskclip label --merge OUT`). Under torchrun each rank takes its shard by itself.", show_default=False)] = None,
    merge: Annotated[Optional[Path], typer.Option(help="Only merge the shards' manifest parts of this label folder into its manifest.jsonl, then exit. INPUT_DIR is optional: when given, the images without an entry of the folder's settings are counted.", show_default=False)] = None,
    overlays: Annotated[bool, typer.Option(help="Also write overlays/<path>.jpg: the photo blended with the class colours, with a legend.")] = _L.overlays,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    engine: Annotated[str, typer.Option(help="local: this machine (torchrun/--shard for more); ray: a Ray cluster with Ray Data (pip install 'maskclip-cli[ray]'), retries, object-store input.")] = "local",
    ray_address: Annotated[Optional[str], typer.Option(help="With --engine ray: Cluster to join: host:port, ray://host:port or auto. Default: RAY_ADDRESS, else a new local cluster.", show_default=False)] = None,
    gpus_per_actor: Annotated[float, typer.Option(min=0, help="With --engine ray: GPUs per labelling actor (0.5: two actors share a GPU; 0: CPU actors).")] = _R.gpus_per_actor,
    actors: Annotated[str, typer.Option(help="With --engine ray: Labelling actors: N, or MIN-MAX to autoscale.")] = "1",
    ray_batch_size: Annotated[int, typer.Option(min=1, help="With --engine ray: Images per Ray block (an actor call, a manifest update), in whole --batch-size batches.")] = _R.batch_size,
    max_failures: Annotated[int, typer.Option(min=-1, help="With --engine ray: Batches that may still fail after Ray's retries before the job stops (-1: any); their images are left for the next run.")] = _R.max_failures,
) -> None:
    """Label every image with MaskCLIP (dense CLIP features + text embeddings, key smoothing, prompt denoising), or a successor method (--method), optionally with PAMR.

    Re-running the same command resumes: finished images are skipped. Exit code 1 when some images
    failed (listed in manifest.jsonl), 2 on bad input. Many GPUs or machines:
    `torchrun --nproc-per-node 8 -m maskclip_cli label ...` (each rank labels its shard).
    """
    hook = RichHook(enabled=progress)
    with user_errors():
        if merge is not None:
            if shard is not None:
                raise MaskCLIPError("--merge takes no --shard: it folds the parts of every shard.")
            _merge(merge, Path(input_dir) if input_dir is not None else None)
            return
        if input_dir is None:
            raise MaskCLIPError("Missing argument INPUT_DIR (or pass --merge OUT to merge a sharded label folder).")
        ranks = torchrun_shard()
        if ranks is not None and shard is not None:
            raise MaskCLIPError("--shard cannot be combined with torchrun: each rank takes its own shard.")
        my_shard = parse_shard(shard) if shard is not None else ranks
        config = MaskCLIPConfig(
            method=method, templates=templates, background=comma_list(background, as_typed=True),
            key_smoothing=key_smoothing, prompt_denoising=prompt_denoising, denoise_threshold=denoise_threshold,
            short_side=short_side, window=window, stride=stride, logit_scale=logit_scale,
            pamr=pamr, pamr_iterations=pamr_iterations, pamr_dilations=parse_dilations(pamr_dilations),
            **proxy,
        )
        if engine not in ("local", "ray"):
            raise MaskCLIPError(f"--engine must be local or ray (got {engine!r}).")
        ray_given = [n for n, v, default in (("ray_address", ray_address, None), ("gpus_per_actor", gpus_per_actor, _R.gpus_per_actor),
                                             ("actors", actors, "1"), ("ray_batch_size", ray_batch_size, _R.batch_size),
                                             ("max_failures", max_failures, _R.max_failures)) if v != default]
        if engine == "local" and ray_given:  # else silently ignored
            raise ParameterError(" / ".join("{}" for _ in ray_given) + (" needs" if len(ray_given) == 1 else " need") + " --engine ray.", *ray_given)
        ray_options = RayOptions(ray_address, gpus_per_actor, parse_actors(actors), ray_batch_size, max_failures) if engine == "ray" else None
        if not Path(input_dir).is_dir() and not (ray_options and is_url(input_dir)):  # checked before the (slow) model load
            hint = " (object-store URLs need --engine ray)" if is_url(input_dir) else ""
            raise MaskCLIPError(f"Input folder not found: {input_dir}{hint}")
        options = LabelOptions(min_confidence=min_confidence, confidence_format=confidence_format,
                               batch_size=batch_size, workers=workers, writers=writers, overwrite=overwrite,
                               overlays=overlays, png_compression=png_compression, shard=my_shard,
                               exif=not ignore_exif)
        names = read_classes(classes, classes_file) + extra_class_names(ctx, classes)
        if segmenter_path is not None:
            segmenter = load_trained(segmenter_path, names, rank_device(device))
        else:  # the vocabulary refuses bad classes before any model or text embedding is loaded
            vocab = ClassVocabulary.build(names, config.background)
            from ..engine.build import build_segmenter  # here: `maskclip --help` does not load torch

            segmenter = build_segmenter(vocab, config, model=model, pretrained=pretrained, checkpoint=checkpoint,
                                        quick_gelu=quick_gelu, device=resolve_device(rank_device(device)), hook=hook)
        try:
            if ray_options is not None:
                from ..labelling.ray_engine import label_with_ray  # imports torch: not at `maskclip --help`

                summary = label_with_ray(segmenter, input_dir, out, options, ray_options, hook)
            else:
                summary = label_folder(segmenter, Path(input_dir), out, options, hook)
        except KeyboardInterrupt:
            console.print(f"interrupted: finished images are saved in {out}; run the same command again to resume.")
            raise typer.Exit(130)
    print_job(summary, "labelled", out, "skipped (already done)", f"shard {my_shard[0]}/{my_shard[1]}: " if my_shard else "")
    if summary.merged:
        console.print(f"all shards done: manifest parts merged into {out / 'manifest.jsonl'}")
    elif summary.unfinished:
        console.print(f"not merged yet: {summary.unfinished} image(s) have no entry labelled with these settings "
                      "(shards not run yet, or run with other classes or options); the last shard to finish merges")
    print_failures_and_exit(summary)



def _merge(out: Path, input_dir: Path | None) -> None:
    result = merge_folder(out, input_dir)
    if result.busy:
        raise MaskCLIPError(f"{out} is in use by running shards ({'; '.join(result.busy)}); merge when they finish.")
    if result.merged:
        console.print(f"{result.parts} manifest part(s) merged into {out / 'manifest.jsonl'}")
    else:
        console.print(f"nothing to merge: {out} has no shard parts (its manifest.jsonl is as it was)")
    for line in result.dropped:
        console.print(f"warning: invalid manifest line, not merged as an entry: {line}", highlight=False)
    if result.dropped_count > len(result.dropped):
        console.print(f"warning: {result.dropped_count - len(result.dropped)} more invalid manifest line(s) not merged as entries")
    for missing in result.missing_shards:
        console.print(f"warning: no part from shard(s) {missing} (not run yet, or merged earlier)")
    if result.unfinished:
        console.print(f"warning: {result.unfinished} image(s) of {input_dir} have no entry labelled with the folder's "
                      "settings: run the missing shards (with the folder's settings)")
    elif input_dir is None and result.merged:
        console.print("pass INPUT_DIR too to check that every image has an entry")
