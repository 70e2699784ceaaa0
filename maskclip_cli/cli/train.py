"""`maskclip train`: MaskCLIP+ on a folder labelled by `maskclip label`, or online on an image folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core.constants import DEFAULT_MODEL, DEFAULT_PRETRAINED
from ..clip.methods import METHODS
from ..engine.config import MaskCLIPConfig as _M  # option defaults are the library's
from ..core.errors import MaskCLIPError
from ..core.hooks import ProgressHook
from ..training.config import MIN_CROP
from ..training.config import TrainConfig as _T
from .app import app
from .common import (
    Background,
    Checkpoint,
    Classes,
    ClassesFile,
    DenoiseThreshold,
    Device,
    KeySmoothing,
    PROXY_FLAGS,
    PromptDenoising,
    QuickGelu,
    RichHook,
    Templates,
    comma_list,
    console,
    read_classes,
    resolve_device,
    user_errors,
    with_proxy_options,
)

OptPath = Optional[Path]


_CONFIG_NAMES = {"model": "clip_model", "pretrained": "clip_pretrained", "checkpoint": "clip_checkpoint",
                 "quick_gelu": "clip_quick_gelu"}  # flags whose TrainConfig field has another name


def _typed(ctx: typer.Context) -> set[str]:
    """TrainConfig fields of the options the user set (command line or environment), as opposed to
    defaults: a resume warns only about these."""
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}  # typer may bundle its own click: compare names
    return {_CONFIG_NAMES.get(name, name) for name, source in sources.items()
            if source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")}


_LABELLING_OPTIONS = {
    "classes": "--classes", "classes_file": "--classes-file", "background": "--background", "templates": "--templates",
    "key_smoothing": "--key-smoothing", "prompt_denoising": "--prompt-denoising", "denoise_threshold": "--denoise-threshold",
    **PROXY_FLAGS,
}


def _labelling_record(names: list[str], background: str | None, templates: str, key_smoothing: bool,
                      prompt_denoising: bool, denoise_threshold: float, method: str | None, proxy: dict) -> dict:
    """The labelling record of an online run without a label folder, from the label command's options
    (``proxy``: the --proxy-*/--sam-* options as config fields)."""
    from ..engine.config import MaskCLIPConfig
    from ..training.online_labeller import labelling_record

    config = MaskCLIPConfig(templates=templates, background=comma_list(background, as_typed=True),
                            key_smoothing=key_smoothing, prompt_denoising=prompt_denoising,
                            denoise_threshold=denoise_threshold, **({"method": method} if method else {}), **proxy)
    return labelling_record(names, config).to_dict()


@app.command("train")
@with_proxy_options
def train(
    ctx: typer.Context,
    images: Annotated[Path, typer.Option(help="Folder of training images (the one given to `maskclip label`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: checkpoint.pt, metrics.jsonl, config.json.")],
    labels: Annotated[OptPath, typer.Option(help="Output folder of `maskclip label` (labels/, confidence/, classes.json). Online, only its classes.json (classes, CLIP, method and settings) is used; without it, give --online --classes.")] = None,
    online: Annotated[bool, typer.Option("--online/--offline", help="Online MaskCLIP+ (as the paper trains): a frozen CLIP labeller scores every augmented crop in the training step (fp16 on GPU). Offline (default): the label maps in --labels, resized to the crop.")] = _T.online,
    classes: Classes = None,
    classes_file: ClassesFile = None,
    background: Background = None,
    templates: Templates = _M.templates,
    key_smoothing: KeySmoothing = _M.key_smoothing,
    prompt_denoising: PromptDenoising = _M.prompt_denoising,
    denoise_threshold: DenoiseThreshold = _M.denoise_threshold,
    backbone: Annotated[str, typer.Option(help="DeepLabv2 backbone: resnet101 (paper), resnet50, or resnet18 (tests, quick runs).")] = _T.backbone,
    backbone_weights: Annotated[str, typer.Option(help="imagenet (torchvision weights, from torch's cache or downloaded), none (random init), or PATH to a torchvision ResNet state dict.")] = _T.backbone_weights,
    iters: Annotated[int, typer.Option(min=1, help="Training iterations (paper: 8k COCO-Stuff / 4k Context annotation-free; 20k-80k zero-shot). With --resume: a new total for the run; the poly LR schedule is recomputed for it.")] = _T.iters,
    self_train: Annotated[bool, typer.Option("--self-train/--no-self-train", help="After MaskCLIP-guided learning, train on the predictions of the model's mean teacher (zero-shot: for the unlabelled pixels, as the paper; without --gt-labels anchored by MaskCLIP): see --self-train-ema, --self-train-portion, --self-train-anchor.")] = _T.self_train,
    guided_iters: Annotated[Optional[int], typer.Option(min=0, help="Iterations of MaskCLIP-guided learning before self-training, at most --iters. Default: all iterations, or iters/10 with --self-train (paper).")] = None,
    self_train_threshold: Annotated[float, typer.Option(min=0, max=1, help="During self-training, ignore pixels whose predicted confidence (0-1) is below this.")] = _T.self_train_threshold,
    self_train_anchor: Annotated[float, typer.Option(min=0, max=1, help="During self-training, a pixel whose predicted confidence (0-1) is below this, or outside --self-train-portion, keeps MaskCLIP's label (zero-shot: over the unseen classes). 0: none, the paper's plain self-training (unselected pixels ignored).")] = _T.self_train_anchor,
    self_train_ema: Annotated[float, typer.Option(min=0, max=1, help="Self-training labels come from a mean teacher, an exponential moving average of the network with this decay (0-1), started at the switch (0: from the training pass itself, as the authors' code).")] = _T.self_train_ema,
    self_train_portion: Annotated[float, typer.Option(min=0, max=1, help="Class-balanced self-training (CBST): per class, only this most confident portion (0-1] of the pixels labelled with it become targets; the rest keep MaskCLIP's label (with --self-train-anchor > 0) or are ignored. 1: all (authors' code).")] = _T.self_train_portion,
    min_confidence: Annotated[float, typer.Option(min=0, max=1, help="Ignore pseudo-label pixels whose confidence (0-1) is below this: the stored confidence map offline, the labeller's probability online.")] = _T.min_confidence,
    gt_labels: Annotated[OptPath, typer.Option(help="Transductive zero-shot: folder of ground-truth label PNGs (<rel>.png, ids of classes.json, 255 unlabelled) for the seen classes.")] = None,
    unseen: Annotated[Optional[str], typer.Option(help="Transductive zero-shot: comma-separated unseen class names; their ground truth is never used.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per iteration, in total over all GPUs (paper: 16).")] = _T.batch_size,
    crop_size: Annotated[int, typer.Option(min=MIN_CROP, help="Square training crop; also the short side images are resized to at inference.")] = _T.crop_size,
    scale_min: Annotated[float, typer.Option(min=0, help="Smallest random resize ratio (of a short side of crop-size); > 0 and at most --scale-max.")] = _T.scale_min,
    scale_max: Annotated[float, typer.Option(min=0, help="Largest random resize ratio.")] = _T.scale_max,
    flip: Annotated[bool, typer.Option("--flip/--no-flip", help="Random horizontal flip.")] = _T.flip,
    photometric: Annotated[bool, typer.Option("--photometric/--no-photometric", help="Random brightness, contrast, saturation and hue.")] = _T.photometric,
    lr: Annotated[float, typer.Option(min=0, help="SGD learning rate (poly decay to 0); > 0.")] = _T.lr,
    head_lr_mult: Annotated[float, typer.Option(min=0, help="LR multiplier of the ASPP head (DeepLab's original recipe uses 10).")] = _T.head_lr_mult,
    momentum: Annotated[float, typer.Option(min=0, max=1, help="SGD momentum.")] = _T.momentum,
    weight_decay: Annotated[float, typer.Option(min=0, help="SGD weight decay.")] = _T.weight_decay,
    poly_power: Annotated[float, typer.Option(min=0, help="Power of the poly LR schedule.")] = _T.poly_power,
    amp: Annotated[bool, typer.Option("--amp/--no-amp", help="Mixed precision on CUDA (no effect on CPU).")] = _T.amp,
    seed: Annotated[int, typer.Option(min=0, help="Seed of initialisation, data order and augmentation.")] = _T.seed,
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes per GPU.")] = _T.workers,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Save checkpoint.pt every N iterations (and at the end, and on Ctrl-C).")] = _T.checkpoint_every,
    log_every: Annotated[int, typer.Option(min=1, help="Append averaged loss, LR and it/s to metrics.jsonl every N iterations.")] = _T.log_every,
    val_images: Annotated[OptPath, typer.Option(help="Validation images, scored every --val-every iterations.")] = None,
    val_labels: Annotated[OptPath, typer.Option(help="Validation ground truth (<rel>.png with the ids of classes.json, 255 ignored).")] = None,
    val_every: Annotated[int, typer.Option(min=1, help="Validation interval in iterations.")] = _T.val_every,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its checkpoint.pt, with its saved options and classifier.")] = False,
    model: Annotated[Optional[str], typer.Option(help="CLIP for the text classifier and the online labeller (use the one that made the labels); default: the one recorded in classes.json, or ViT-B-16 online without --labels.")] = None,
    pretrained: Annotated[Optional[str], typer.Option(help="Its open_clip pretrained tag; default: from classes.json (openai online without --labels).")] = None,
    checkpoint: Checkpoint = None,
    quick_gelu: QuickGelu = None,
    method: Annotated[Optional[str], typer.Option(help=f"Dense-feature method the pseudo labels were made with ({', '.join(METHODS)}); checked against classes.json and kept in the checkpoint. Default: the one recorded. Online without --labels: the labeller's method (default maskclip).")] = None,
    proxy: Optional[dict] = None,  # the --proxy-*/--sam-* options, filled in by with_proxy_options
    device: Device = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train MaskCLIP+ (DeepLabv2 with CLIP's text classifier) on MaskCLIP pseudo labels, optionally
    followed by self-training. The labels come from a `maskclip label` folder, or with --online from a
    frozen CLIP labeller run on every augmented crop (then --classes etc. describe it when there is no
    label folder). Multi-GPU: launch with `torchrun --nproc-per-node N -m maskclip_cli train ...`."""
    from ..training.config import TrainConfig
    from ..training.loop import train as run_training

    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 talks
    hook = RichHook(unit="it", enabled=progress) if main_rank else ProgressHook()
    typed = _typed(ctx)
    with user_errors():
        record = None
        labelling = sorted(typed & set(_LABELLING_OPTIONS))
        if labels is None and not resume:
            if not online:
                raise MaskCLIPError("Pass --labels (a folder made by `maskclip label`), or --online with --classes to label as it trains.")
            record = _labelling_record(read_classes(classes, classes_file), background, templates, key_smoothing,
                                       prompt_denoising, denoise_threshold, method, proxy)
            model = model or DEFAULT_MODEL
            pretrained = pretrained or (None if checkpoint else DEFAULT_PRETRAINED)
        elif labelling:
            raise MaskCLIPError(f"{', '.join(_LABELLING_OPTIONS[k] for k in labelling)}: only for --online without --labels "
                                "(a label folder's classes.json, or a resumed run, already says how to label).")
        cfg = TrainConfig(
            images=images, labels=labels, out=out, backbone=backbone, backbone_weights=backbone_weights, iters=iters,
            self_train=self_train, guided_iters=guided_iters, self_train_threshold=self_train_threshold,
            self_train_anchor=self_train_anchor, self_train_ema=self_train_ema, self_train_portion=self_train_portion,
            min_confidence=min_confidence, gt_labels=gt_labels, unseen=comma_list(unseen),
            batch_size=batch_size, crop_size=crop_size, scale_min=scale_min, scale_max=scale_max, flip=flip,
            photometric=photometric, lr=lr, head_lr_mult=head_lr_mult, momentum=momentum, weight_decay=weight_decay,
            poly_power=poly_power, amp=amp, seed=seed, workers=workers, checkpoint_every=checkpoint_every,
            log_every=log_every, val_images=val_images, val_labels=val_labels, val_every=val_every,
            clip_model=model, clip_pretrained=pretrained, clip_checkpoint=checkpoint, clip_quick_gelu=quick_gelu, method=method,
            online=online, record=record,
        )
        try:
            summary = run_training(cfg, None, resolve_device(device), resume=resume, hook=hook, given=typed,
                                   iters=iters if resume and "iters" in typed else None)
        except KeyboardInterrupt:
            raise typer.Exit(130)
    if not main_rank:
        return
    if summary.iterations == summary.start:
        console.print(f"Nothing to do: the run is already at iteration {summary.start}. Checkpoint: {summary.checkpoint}")
        return
    miou = f", validation mIoU {summary.val_miou * 100:.2f}" if summary.val_miou is not None else ""
    console.print(f"Trained iterations {summary.start}->{summary.iterations} in {summary.seconds:.0f}s, "
                  f"last loss {summary.last_loss:.4f}{miou}. Checkpoint: {summary.checkpoint}")
