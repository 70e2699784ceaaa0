"""MaskCLIP+ training (paper §3.4, §4): DeepLabv2 with CLIP's text classifier, learnt from
MaskCLIP's pseudo labels, then optionally from its own predictions (self-training). The pseudo
labels are read from a label folder (offline), or made on each augmented crop by a frozen CLIP
labeller in the same step (``online``, as the paper trains; see :mod:`.online_labeller`).

The run folder holds ``checkpoint.pt`` (latest, rewritten every ``checkpoint_every`` iterations,
at the end and on Ctrl-C), ``metrics.jsonl`` and ``config.json``. Batches are a pure function of
(seed, iteration) and every state that changes during training is checkpointed, so ``resume``
continues exactly where the interrupted run stopped.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..core._io import write_json
from ..core._worker_items import raise_error
from ..core.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from ..core.errors import MaskCLIPError
from ..formats.label_folder import LabelFolder
from ..core.hooks import SILENT, ProgressHook
from ..core.record import LabelRecord
from . import distributed
from .augment import AugmentConfig
from .checkpointing import (
    CHECKPOINT_FILE,
    checkpoint_record,
    load_checkpoint,
    restore_rng,
    rng_state,
    save_checkpoint,
)
from .class_text import ClassText, class_text_from_clip, load_labels_clip
from .config import TrainConfig
from .deeplab import NO_WEIGHTS, DeepLabV2
from .online_labeller import OnlineLabeller, labeller_config
from .pseudo_label_dataset import (
    IterationBatches,
    PseudoLabelDataset,
    collate,
    find_samples,
)
from .self_training import MeanTeacher, anchored, balanced, self_labels, thresholded
from .trained_segmenter import TrainedSegmenter
from .validation import find_val_pairs, validate
from .zero_shot import merge_targets

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"


@dataclass
class TrainSummary:
    iterations: int
    start: int
    seconds: float
    last_loss: float
    checkpoint: Path
    losses: list[float] = field(default_factory=list)  # per iteration of this call
    val_miou: float | None = None


class _StopRequest:
    """Ctrl-C sets a flag the loop checks between steps, so the saved state is never half a step."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, lambda *_: setattr(self, "requested", True))
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _ignore_sigint(_worker: int) -> None:
    """Loader workers leave Ctrl-C to the main process, which stops between steps and saves."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _check_resume(saved: dict, cfg: TrainConfig, hook: ProgressHook, given: Collection[str] | None = None,
                  iters: int | None = None, done: int = 0) -> TrainConfig:
    """Resume with the saved configuration; say which of the ``given`` options (default: all) it
    overrides. ``iters`` sets a new total; a self-training run keeps the guided phase it started with."""
    values = cfg.as_json()
    changed = sorted(k for k, v in saved.items() if k in values and values[k] != v and k not in ("out", "workers", "iters")
                     and (given is None or k in given))
    if changed:
        hook.warn(f"--resume continues the saved run; ignoring changed options: {', '.join(changed)}.")
    merged = {**saved, "out": cfg.out, "workers": cfg.workers}
    if iters is not None and iters != saved["iters"]:
        if iters < done:
            raise MaskCLIPError(f"--iters {iters} is below the {done} iterations the run has done.")
        if merged["self_train"] and merged["guided_iters"] is None:  # iters // 10 of the run as started
            merged["guided_iters"] = saved["iters"] // 10
        merged["iters"] = iters
        hook.info(f"Extending the run from {saved['iters']} to {iters} iterations; the poly LR schedule is recomputed for {iters}.")
    for key in ("images", "labels", "gt_labels", "val_images", "val_labels", "clip_checkpoint"):
        merged[key] = Path(merged[key]) if merged.get(key) is not None else None
    return TrainConfig(**merged)


def _unseen_ids(cfg: TrainConfig, names: list[str]) -> torch.Tensor | None:
    if (cfg.gt_labels is None) != (not cfg.unseen):
        raise MaskCLIPError("Zero-shot mode needs both --gt-labels and --unseen.")
    if cfg.gt_labels is None:
        return None
    unknown = [u for u in cfg.unseen if u not in names]
    if unknown:
        raise MaskCLIPError(f"--unseen classes not in classes.json: {', '.join(unknown)}.")
    return torch.tensor([names.index(u) for u in cfg.unseen])


def _optimizer(model: DeepLabV2, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD over backbone and ASPP (head at ``head_lr_mult`` x LR); the text classifier is frozen."""
    groups = [
        {"params": [p for p in model.backbone.parameters() if p.requires_grad], "lr": cfg.lr},
        {"params": list(model.aspp.parameters()), "lr": cfg.lr * cfg.head_lr_mult},
    ]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _fit_schedule(scheduler: torch.optim.lr_scheduler.PolynomialLR, total: int, done: int) -> None:
    """A restored poly schedule stretched to ``total`` iterations (``--resume --iters``): the LR at
    iteration ``done`` becomes ``base * (1 - done / total) ** power``, and it decays from there."""
    if scheduler.total_iters == total:
        return
    scheduler.total_iters = total
    for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
        group["lr"] = base * (1 - min(done, total) / total) ** scheduler.power


def _logged_iteration(line: str) -> int | None:
    try:
        return int(json.loads(line)["iter"])
    except (ValueError, KeyError, TypeError):  # a line cut short by a killed run
        return None


def _trim_metrics(path: Path, upto: int) -> None:
    """Drop metric lines an interrupted run wrote after its last checkpoint, and any it left half-written."""
    if path.is_file():
        keep = [ln for ln in path.read_text().splitlines() if (it := _logged_iteration(ln)) is not None and it <= upto]
        path.write_text("".join(ln + "\n" for ln in keep))


@dataclass
class Run:
    """Everything :func:`setup` builds for a run and :func:`step` and :func:`train` use."""

    cfg: TrainConfig
    dist: distributed.Dist
    model: DeepLabV2
    net: torch.nn.Module  # the model as trained (DDP-wrapped under torchrun)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    use_amp: bool
    loader: DataLoader
    text: ClassText
    unseen: torch.Tensor | None
    val_pairs: list
    meta: dict  # what a checkpoint records about the network besides its weights
    start: int  # first iteration to run
    window: list[float]  # losses since the last metrics line (saved, so a resume logs the same windows)
    labeller: OnlineLabeller | None = None  # online: labels each crop (zero-shot: the unseen classes only)
    teacher: MeanTeacher | None = None  # self-training's EMA teacher, from the switch on (cfg.self_train_ema > 0)

    def save(self, iteration: int) -> None:
        if self.dist.main:
            save_checkpoint(self.cfg.out / CHECKPOINT_FILE, {
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "iteration": iteration,
                "rng": rng_state(), "config": self.cfg.as_json(), "meta": {**self.meta, "iteration": iteration},
                "log_window": list(self.window),
                **({"teacher": self.teacher.model.state_dict()} if self.teacher else {}),
            })

    def log(self, line: dict) -> None:
        if self.dist.main:
            with open(self.cfg.out / METRICS_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")


def _saved_text(meta: dict) -> ClassText:
    """The classifier of a checkpoint."""
    return ClassText(meta["class_names"], meta["text"], meta["groups"], checkpoint_record(meta))


def _label_source(cfg: TrainConfig) -> tuple[LabelFolder | None, LabelRecord]:
    """The label folder (None online without one) and the record of how its labels were made."""
    if cfg.labels is not None and cfg.record is not None:
        raise MaskCLIPError("Give a label folder or a labelling record, not both.")
    if cfg.labels is None:
        if not (cfg.online and cfg.record):
            raise MaskCLIPError("Training needs --labels (a folder made by `maskclip label`), or --online with --classes.")
        return None, LabelRecord.from_dict(cfg.record)
    folder = LabelFolder.open(cfg.labels)
    return folder, folder.record


def _saved_labeller(meta: dict) -> LabelRecord:
    """The record of a checkpoint's online labeller; one that cannot be reloaded is one clear error."""
    record = LabelRecord.from_dict(meta["labeller"])
    if record.clip is None or record.clip.weights.kind == "in-memory":
        raise MaskCLIPError("This run's online labeller was a CLIP built in memory; pass the same labeller to resume it.")
    return record


def setup(cfg: TrainConfig, text: ClassText | None = None, device: str | torch.device = "cpu", resume: bool = False,
          hook: ProgressHook = SILENT, given: Collection[str] | None = None, labeller: OnlineLabeller | None = None,
          iters: int | None = None) -> Run:
    """Check the inputs, build (or restore) network, optimiser, data and online labeller, and join the process group.

    ``text`` is the frozen classifier; by default it is rebuilt from the label folder's record (with
    ``cfg.clip_*`` overrides). A resumed run takes its own from the checkpoint, keeps its saved options
    and warns about those of ``cfg`` that differ, among ``given`` (the fields the caller set on purpose,
    e.g. typed flags; default: every field); ``iters`` sets a new total (the poly schedule is
    recomputed for it). With ``cfg.online`` the pseudo labels come from ``labeller`` (by default
    built, on this process's device, from the label folder's record or ``cfg.record``, or on resume
    from the checkpoint's), run on each augmented crop.
    """
    ckpt_path = cfg.out / CHECKPOINT_FILE
    state, labeller_record = None, None
    if resume:
        state = load_checkpoint(ckpt_path)
        cfg = _check_resume(state["config"], cfg, hook, given, iters, state["iteration"])
        text = _saved_text(state["meta"])
        if cfg.online and labeller is None:
            labeller_record = _saved_labeller(state["meta"])
    elif ckpt_path.is_file():
        raise MaskCLIPError(f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out.")

    folder, record = _label_source(cfg)
    names = folder.class_names if folder else record.classes
    if text is not None and text.class_names != names:
        raise MaskCLIPError(f"Text classes {text.class_names} differ from {cfg.labels}/classes.json {names}.")
    unseen = _unseen_ids(cfg, names)
    samples, unlabelled = find_samples(cfg.images, None if cfg.online else folder, cfg.gt_labels)
    if unlabelled:
        hook.warn(f"{unlabelled} images in {cfg.images} have no label map and are left out.")
    if (cfg.val_images is None) != (cfg.val_labels is None):
        raise MaskCLIPError("Validation needs both --val-images and --val-labels.")
    val_pairs = find_val_pairs(cfg.val_images, cfg.val_labels) if cfg.val_images else []

    d = distributed.setup(torch.device(device))
    if cfg.batch_size % d.world:
        raise MaskCLIPError(f"--batch-size {cfg.batch_size} must be divisible by the {d.world} processes.")
    clip = None  # loaded once, on this process's device, for whichever of text and labeller is missing
    if text is None or (cfg.online and labeller is None):
        overrides = ((None,) * 4 if labeller_record
                     else (cfg.clip_model, cfg.clip_pretrained, cfg.clip_checkpoint, cfg.clip_quick_gelu))
        clip = load_labels_clip(labeller_record or record, *overrides, device=d.device, hook=hook)
    if text is None:
        text = class_text_from_clip(clip, record, cfg.method, hook)
        if text.class_names != names:
            raise MaskCLIPError(f"Text classes {text.class_names} differ from {cfg.labels}/classes.json {names}.")
    if cfg.online and labeller is None:
        how = labeller_record or record
        labeller = OnlineLabeller(clip, names, labeller_config(how), IMAGENET_MEAN, IMAGENET_STD,
                                  synonyms=how.synonyms)
    if labeller is not None and labeller.class_names != names:
        raise MaskCLIPError(f"The online labeller's classes {labeller.class_names} differ from the training classes {names}.")
    torch.manual_seed(cfg.seed)
    model = DeepLabV2(cfg.backbone, text.text, text.groups, NO_WEIGHTS if state else cfg.backbone_weights).to(d.device)
    optimizer = _optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=cfg.iters, power=cfg.poly_power)
    use_amp = cfg.amp and d.device.type == "cuda"
    scaler = torch.amp.GradScaler(d.device.type, enabled=use_amp)
    start, window, teacher = 0, [], None
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _fit_schedule(scheduler, cfg.iters, state["iteration"])
        scaler.load_state_dict(state["scaler"])
        restore_rng(state["rng"])
        start = state["iteration"]
        window = list(state.get("log_window", []))  # losses since the last metrics line (absent before 0.2)
        if "teacher" in state:
            teacher = MeanTeacher(model, cfg.self_train_ema, state["teacher"])
        del state

    aug = AugmentConfig(cfg.crop_size, cfg.scale_min, cfg.scale_max, cfg.crop_size, cfg.flip, cfg.photometric, IMAGENET_MEAN, IMAGENET_STD)
    dataset = PseudoLabelDataset(samples, len(names), aug, cfg.min_confidence, unseen.tolist() if unseen is not None else None,
                                 record.exif)
    batches = IterationBatches(len(dataset), cfg.batch_size // d.world, cfg.seed, start, cfg.iters, d.rank, d.world)
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=cfg.workers, pin_memory=d.device.type == "cuda",
                        worker_init_fn=_ignore_sigint, collate_fn=collate)
    meta = {
        "backbone": cfg.backbone, "class_names": text.class_names, "text": text.text, "groups": text.groups,
        "record": text.record.to_dict(), "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "short_side": cfg.crop_size,
    }
    if labeller is not None:
        meta["labeller"] = labeller.record().to_dict()
        if unseen is not None:  # assign_label: only the unseen classes are candidates
            labeller = labeller.restricted(cfg.unseen)
    if d.main:
        cfg.out.mkdir(parents=True, exist_ok=True)
        write_json(cfg.out / CONFIG_FILE, cfg.as_json())
        _trim_metrics(cfg.out / METRICS_FILE, start)
    return Run(cfg, d, model, distributed.wrap(model, d), optimizer, scheduler, scaler, use_amp, loader, text, unseen,
               val_pairs, meta, start, window, labeller, teacher)


def _guide(run: Run, batch: dict, x: torch.Tensor) -> torch.Tensor:
    """MaskCLIP's labels for this crop: the online labeller on the crop itself, or the stored ones."""
    if run.labeller is not None:
        return run.labeller(x, batch["valid"], run.cfg.min_confidence)[0]
    return batch["pseudo"].to(x.device)


def step(run: Run, batch: dict, iteration: int) -> tuple[float, float, bool]:
    """One optimisation step on ``batch``: (loss, learning rate used, whether it was MaskCLIP-guided)."""
    cfg, device = run.cfg, run.dist.device
    x = batch["image"].to(device, non_blocking=True)
    gt = batch["gt"].to(device)
    guided = iteration < cfg.guided
    anchor = cfg.self_train_anchor
    guide = _guide(run, batch, x) if guided or anchor > 0 else None
    if not guided and cfg.self_train_ema > 0 and run.teacher is None:  # the switch: the teacher starts as the network
        run.teacher = MeanTeacher(run.model, cfg.self_train_ema)
    with torch.autocast(device.type, enabled=run.use_amp):
        logits = run.net(x)
        teacher_logits = run.teacher(x) if run.teacher is not None and not guided else None
    if guided:
        labels = guide
    else:  # the teacher's predictions, or the training pass's own as the reference's assign_label
        own, confidence = self_labels(logits if teacher_logits is None else teacher_logits, x.shape[-2:], run.unseen)
        invalid = batch["valid"].to(device) == IGNORE_INDEX
        labels = thresholded(own.masked_fill(invalid, IGNORE_INDEX), confidence, cfg.self_train_threshold)
        if cfg.self_train_portion < 1:
            labels = balanced(labels, confidence, cfg.self_train_portion, logits.shape[1], guide if anchor > 0 else None)
        if anchor > 0:
            labels = anchored(labels, confidence, guide, anchor)
        labels = labels.masked_fill(invalid, IGNORE_INDEX)
    target = merge_targets(gt, labels, run.unseen)
    logits = F.interpolate(logits.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
    n_valid = (target != IGNORE_INDEX).sum().clamp(min=1)
    loss = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="sum") / n_valid
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    if run.teacher is not None and not guided:
        run.teacher.update(run.model)
    lr = run.optimizer.param_groups[0]["lr"]
    run.scheduler.step()
    return loss.item(), lr, guided


def train(cfg: TrainConfig, text: ClassText | None = None, device: str | torch.device = "cpu", resume: bool = False,
          hook: ProgressHook = SILENT, given: Collection[str] | None = None, labeller: OnlineLabeller | None = None,
          iters: int | None = None) -> TrainSummary:
    """Train (or with ``resume`` continue) the run in ``cfg.out``; returns when ``cfg.iters`` are done.

    See :func:`setup` for ``text``, ``given``, ``labeller`` and ``iters``. Raises KeyboardInterrupt
    after saving a checkpoint when interrupted.
    """
    run = setup(cfg, text, device, resume, hook, given, labeller, iters)
    cfg, d, start = run.cfg, run.dist, run.start
    stop, losses, timed = _StopRequest(), [], 0  # timed: iterations this process ran since the last line
    summary = TrainSummary(start, start, 0.0, float("nan"), cfg.out / CHECKPOINT_FILE)
    began = tick = time.perf_counter()
    if d.main:
        hook.start(cfg.iters - start, f"train {start}->{cfg.iters}")
    completed = start
    try:
        with stop.installed():
            for iteration, batch in enumerate(run.loader, start):
                loss, lr, guided = step(run, raise_error(batch), iteration)
                completed = done = iteration + 1  # what a save must say from here on
                losses.append(loss)
                run.window.append(loss)
                timed += 1
                if done % cfg.log_every == 0 or done == cfg.iters:
                    now = time.perf_counter()
                    run.log({"iter": done, "phase": "guided" if guided else "self",
                             "loss": sum(run.window) / len(run.window), "lr": lr, "it_per_s": timed / (now - tick)})
                    run.window, timed, tick = [], 0, now
                if run.val_pairs and (done % cfg.val_every == 0 or done == cfg.iters) and d.main:
                    scores = validate(TrainedSegmenter(run.model, {**run.meta, "iteration": done}), run.val_pairs)
                    summary.val_miou = scores.miou
                    run.log({"iter": done, "val": scores.as_dict(run.text.class_names)})
                    hook.info(f"iteration {done}: validation mIoU {scores.miou * 100:.2f}")
                if done % cfg.checkpoint_every == 0 or done == cfg.iters:
                    run.save(done)
                if d.main:
                    hook.advance(1, loss=loss, lr=lr, phase="guided" if guided else "self")
                if stop.requested:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        run.save(completed)
        if d.main:
            hook.finish()
            hook.warn(f"Interrupted: checkpoint saved at iteration {completed} in {summary.checkpoint}; continue with --resume.")
        distributed.teardown(d)
        raise
    except MaskCLIPError:  # a bad training file: close the progress bar before the error line
        if d.main:
            hook.finish()
        distributed.teardown(d)
        raise
    if d.main:
        hook.finish()
    distributed.teardown(d)
    summary.iterations, summary.seconds, summary.losses = completed, time.perf_counter() - began, losses
    summary.last_loss = losses[-1] if losses else float("nan")
    return summary
