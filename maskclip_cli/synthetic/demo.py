"""The synthetic-world demo: the whole pipeline, offline, with numbers that mean something.

On held-out scenes of the synthetic world and the committed tiny CLIP it scores the paper's
ablation (naive last-layer tokens, MaskCLIP, +KS, +PD, +KS+PD), then labels a training split
with MaskCLIP (without KS and PD, as the paper's MaskCLIP+ does), trains MaskCLIP+ on those
pseudo labels with a short schedule, and scores it; then the paper's transductive zero-shot
setting (Table 3: ground truth for the seen colours, MaskCLIP for the unseen ones), seen and
unseen mIoU. Self-training (zero-shot or annotation-free) is off unless asked for: at the CPU
scale of this world it falls below guided learning (benchmarks/self_training.py, README).
Every step goes through the same library calls as ``maskclip label``, ``maskclip train`` and
``maskclip eval``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..clip.loading import LoadedCLIP
from ..core.constants import IMAGENET_MEAN, IMAGENET_STD
from ..engine.build import build_segmenter
from ..engine.config import MaskCLIPConfig
from ..engine.maskclip import MaskCLIP
from ..engine.segmenter import Segmenter
from ..core.errors import MaskCLIPError, ParameterError, check_range
from ..evaluation.datasets import get_spec, list_samples
from ..evaluation.evaluate import evaluate_segmenter
from ..evaluation.metrics import ConfusionMatrix
from ..core.hooks import SILENT, ProgressHook
from ..labelling.label_job import LabelOptions, label_folder
from ..training.class_text import ClassText, from_maskclip
from ..training.loop import METRICS_FILE, TrainConfig, train
from ..training.online_labeller import OnlineLabeller
from .assets import load_synthetic_clip
from .export import write_split
from .stages import UNSEEN, guided_only, stage_scores, train_branches
from .world import BACKGROUND_PHRASE, CLASSES, WorldSpec, make_scene

# (row name, MaskCLIPConfig overrides): the rows of the paper's Table 1a, in its order.
MASKCLIP_ROWS: tuple[tuple[str, dict], ...] = (
    ("baseline tokens", {"baseline": True, "key_smoothing": False, "prompt_denoising": False}),
    ("MaskCLIP", {"key_smoothing": False, "prompt_denoising": False}),
    ("MaskCLIP +KS", {"prompt_denoising": False}),
    ("MaskCLIP +PD", {"key_smoothing": False}),
    ("MaskCLIP +KS+PD", {}),
)
CHANCE, GUIDED, SELF_TRAINED = "random labels (chance)", "MaskCLIP+ (guided)", "MaskCLIP+ (+self-training)"
ONLINE_GUIDED, ONLINE_SELF_TRAINED = "MaskCLIP+ online (guided)", "MaskCLIP+ online (+self-training)"
ZERO_SHOT_ROWS = tuple(f"MaskCLIP+ zero-shot, {stage}: {part}" for stage in ("guided", "+self-training")
                       for part in ("seen", "unseen"))
ROW_NAMES = (CHANCE,) + tuple(name for name, _ in MASKCLIP_ROWS) + (GUIDED, SELF_TRAINED) + ZERO_SHOT_ROWS
# Scene streams: the tiny CLIP was trained on world seed 0, so demo worlds start far from it.
WORLD_SEED_BASE = 1000


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and schedule. The defaults take a few minutes on a CPU."""

    seed: int = 0
    train_scenes: int = 200
    val_scenes: int = 100
    maskclip_plus: bool = True
    online: bool = False  # also train MaskCLIP+ online (labeller on every crop) beside the offline run
    guided_iters: int = 200
    self_train_iters: int = 0  # annotation-free self-training: no better than guided here (README)
    batch_size: int = 8
    zero_shot_iters: int = 100  # the zero-shot runs (0: none): the first tenth guided, as in the paper
    zero_shot_batch_size: int = 4
    zero_shot_self_train: bool = False  # the zero-shot self-training rows: below guided here (README)
    lr: float = 0.005  # from a random-init backbone, 0.01 and above diverge early
    backbone: str = "resnet18"
    spec: WorldSpec = field(default_factory=WorldSpec)

    def __post_init__(self) -> None:  # checked on construction, before the tiny CLIP is loaded
        for name, low in (("seed", 0), ("train_scenes", 1), ("val_scenes", 1), ("guided_iters", 1),
                          ("self_train_iters", 0), ("batch_size", 1), ("zero_shot_iters", 0),
                          ("zero_shot_batch_size", 1)):
            check_range(name, getattr(self, name), low)
        check_range("lr", self.lr, 0, above=True)
        if not self.maskclip_plus and (self.self_train_iters or self.zero_shot_self_train):  # else silently no rows
            raise ParameterError("{} and {} train MaskCLIP+: drop {}.", "self_train_iters", "zs_self_train", "no_maskclip_plus")
        if self.zero_shot_self_train and not self.zero_shot_iters:
            raise ParameterError("{} needs zero-shot rows ({} > 0).", "zs_self_train", "zero_shot_iters")

    @classmethod
    def full(cls, **overrides: object) -> DemoSettings:
        """The longer demo (``maskclip demo --full``): zero-shot runs twice as long (200 iterations)."""
        return cls(**{"zero_shot_iters": 200, **overrides})

    @property
    def train_world(self) -> int:
        return WORLD_SEED_BASE + 2 * self.seed

    @property
    def val_world(self) -> int:
        return WORLD_SEED_BASE + 2 * self.seed + 1


def maskclip_config(spec: WorldSpec = WorldSpec(), **overrides: object) -> MaskCLIPConfig:
    """Inference settings for the synthetic world: the background phrase as class 0, native size."""
    return MaskCLIPConfig(templates="vild", background=[BACKGROUND_PHRASE], short_side=spec.size, **overrides)


def score(segmenter: Segmenter, val_root: Path, hook: ProgressHook = SILENT) -> float:
    """mIoU (0-1) over the background and the colours, read back like a real benchmark split."""
    samples = list_samples(get_spec("pascal-context-60"), val_root)
    return evaluate_segmenter(segmenter, samples, segmenter.class_names, hook=hook).scores.miou


def chance_miou(world: int, count: int, spec: WorldSpec = WorldSpec(), seed: int = 0) -> float:
    """mIoU (0-1) of uniformly random labels on scenes ``0 .. count-1`` of ``world``: the floor."""
    rng = np.random.default_rng(seed)
    cm = ConfusionMatrix(len(CLASSES) + 1)
    for index in range(count):
        labels = make_scene(world, index, spec).labels
        cm.update(rng.integers(0, len(CLASSES) + 1, labels.shape), labels)
    return cm.scores().miou


def train_config(s: DemoSettings, out: Path, online: bool = False, zero_shot: bool = False, name: str | None = None) -> TrainConfig:
    """MaskCLIP+'s short schedule: guided learning, then self-training, in one run as in the
    paper, validated on the held-out scenes when the guided phase ends and at the end. Zero-shot:
    ground truth for the background and the seen colours, none for :data:`.stages.UNSEEN`.
    Photometric distortion is off: it shifts hue, and hue is what the classes of this world are."""
    iters = s.guided_iters + s.self_train_iters
    name = name or ("maskclip-plus-online" if online else "maskclip-plus")
    return TrainConfig(
        images=out / "train" / "images", labels=out / "pseudo-labels", out=out / name,
        backbone=s.backbone, online=online,
        backbone_weights="none", iters=iters, self_train=s.self_train_iters > 0, guided_iters=s.guided_iters,
        batch_size=s.batch_size, crop_size=s.spec.size, photometric=False, lr=s.lr, seed=s.seed, workers=0,
        checkpoint_every=iters, log_every=10, amp=False, val_images=out / "val" / "JPEGImages",
        val_labels=out / "val" / "SegmentationClassContext", val_every=s.guided_iters,
        gt_labels=out / "train" / "labels" if zero_shot else None, unseen=list(UNSEEN) if zero_shot else [],
    )


def _val_record(run: Path, iteration: int) -> dict:
    """The validation figures (percent) the training run logged at ``iteration``."""
    for line in (run / METRICS_FILE).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record["iter"] == iteration and "val" in record:
            return record["val"]
    raise MaskCLIPError(f"{run / METRICS_FILE} has no validation at iteration {iteration}.")


def val_scores(run: Path, iteration: int) -> list[float]:
    """Per-class IoU (0-1, NaN for a class absent from the split) the run logged at ``iteration``."""
    return [np.nan if c["IoU"] is None else c["IoU"] / 100 for c in _val_record(run, iteration)["per_class"]]


def write_world(out: Path, s: DemoSettings, clip: LoadedCLIP, hook: ProgressHook = SILENT) -> MaskCLIP:
    """Training scenes (with their exact labels, the zero-shot ground truth) labelled by MaskCLIP
    without KS and PD (as the paper's MaskCLIP+ does); returns that labeller."""
    hook.info(f"Writing {s.train_scenes} training scenes to {out / 'train'}; labelling them with MaskCLIP")
    write_split(out / "train", s.train_world, s.train_scenes, layout="plain", split="train", spec=s.spec)
    labeller = build_segmenter(list(CLASSES), maskclip_config(s.spec, key_smoothing=False, prompt_denoising=False), clip=clip, hook=hook)
    label_folder(labeller, out / "train" / "images", out / "pseudo-labels", LabelOptions(workers=0, overwrite=True), hook)
    return labeller


def _val_miou(run: Path, iteration: int) -> float:
    """The validation mIoU (0-1) the training run logged at ``iteration``."""
    return _val_record(run, iteration)["mIoU"] / 100


def zero_shot_rows(out: Path, s: DemoSettings, text: ClassText, device: str, hook: ProgressHook = SILENT) -> dict[str, float]:
    """The paper's Table 3 on this world: guided only vs guided + self-training over the same
    schedule (one trunk, branched at the switch), seen and unseen mIoU (0-1) on the held-out scenes."""
    guided = max(1, s.zero_shot_iters // 10)
    zs = replace(s, guided_iters=guided, self_train_iters=s.zero_shot_iters - guided, batch_size=s.zero_shot_batch_size)
    trunk = replace(train_config(zs, out, zero_shot=True, name="maskclip-plus-zero-shot"), val_every=zs.zero_shot_iters)
    rows = {}
    branches = {"guided": guided_only(), **({"+self-training": {}} if s.zero_shot_self_train else {})}
    for stage, run in train_branches(trunk, text, branches, device, hook).items():
        sc = stage_scores(val_scores(run, trunk.iters))
        rows[f"MaskCLIP+ zero-shot, {stage}: seen"], rows[f"MaskCLIP+ zero-shot, {stage}: unseen"] = sc.seen, sc.unseen
    return rows


def run_demo(out: Path, settings: DemoSettings = DemoSettings(), clip: LoadedCLIP | None = None,
             hook: ProgressHook = SILENT) -> dict[str, float]:
    """Run everything under ``out``; return ``{row name: mIoU (0-1)}`` in :data:`ROW_NAMES` order, then
    the ``ONLINE_*`` rows (the MaskCLIP+ rows only with ``settings.maskclip_plus``, the online ones
    only with ``settings.online``, annotation-free self-training only with ``self_train_iters`` > 0,
    the zero-shot rows, seen and unseen mIoU, only with ``zero_shot_iters`` > 0, their self-training
    rows only with ``zero_shot_self_train``)."""
    s = settings
    clip = clip or load_synthetic_clip(hook=hook)
    hook.info(f"Writing {s.val_scenes} held-out scenes to {out / 'val'}")
    write_split(out / "val", s.val_world, s.val_scenes, layout="pascal-context", split="val", spec=s.spec)
    results = {CHANCE: chance_miou(s.val_world, s.val_scenes, s.spec, s.seed)}
    for name, overrides in MASKCLIP_ROWS:
        hook.info(f"Scoring {name}")
        results[name] = score(build_segmenter(list(CLASSES), maskclip_config(s.spec, **overrides), clip=clip, hook=hook), out / "val", hook)
    if not s.maskclip_plus:
        return results
    labeller = write_world(out, s, clip, hook)
    config = train_config(s, out)
    shutil.rmtree(config.out, ignore_errors=True)  # a demo always trains afresh
    hook.info(f"Training MaskCLIP+: {s.guided_iters} guided + {s.self_train_iters} self-training iterations")
    train(config, from_maskclip(labeller), device=clip.device, hook=hook)
    results[GUIDED] = _val_miou(config.out, s.guided_iters)
    if s.self_train_iters:
        results[SELF_TRAINED] = _val_miou(config.out, config.iters)
    if s.zero_shot_iters:
        results.update(zero_shot_rows(out, s, from_maskclip(labeller), clip.device, hook))
    if s.online:
        config = train_config(s, out, online=True)
        shutil.rmtree(config.out, ignore_errors=True)
        hook.info("Training MaskCLIP+ online: the same labeller scores every augmented crop")
        online = OnlineLabeller(clip, list(labeller.class_names), labeller.config, IMAGENET_MEAN, IMAGENET_STD)
        train(config, from_maskclip(labeller), device=clip.device, hook=hook, labeller=online)
        results[ONLINE_GUIDED] = _val_miou(config.out, s.guided_iters)
        if s.self_train_iters:
            results[ONLINE_SELF_TRAINED] = _val_miou(config.out, config.iters)
    return results
