"""`maskclip eval`: mIoU of MaskCLIP on a standard benchmark, or of any label folder against ground truth."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .. import __version__
from ..core._io import write_json
from ..clip.methods import METHODS
from ..core.constants import DEFAULT_MODEL, DEFAULT_PRETRAINED
from ..engine.config import MaskCLIPConfig as _M  # option defaults are the library's
from ..core.errors import MaskCLIPError, ParameterError
from ..evaluation.datasets import DATASETS, class_names, get_spec, list_samples
from ..evaluation.evaluate import (
    EvalResult,
    evaluate_segmenter,
    prediction_layout,
    read_class_names,
    score_folders,
)
from ..evaluation.protocols import (
    PROTOCOLS,
    background_threshold,
    eval_config,
    protocol_vocabulary,
    protocol_settings,
)
from .app import app
from .common import (
    Checkpoint,
    DenoiseThreshold,
    Device,
    Model,
    Pamr,
    PamrDilations,
    PamrIterations,
    Pretrained,
    QuickGelu,
    RichHook,
    comma_list,
    load_trained,
    parse_dilations,
    resolve_device,
    user_errors,
    with_proxy_options,
)

PROTOCOL_DEFAULT = "default: the protocol's"


def _pct(v: float) -> str:
    return "-" if math.isnan(v) else f"{v * 100:.2f}"


def _print_result(result: EvalResult, title: str) -> None:
    """Per-class table, then the summary figures on one line (stdout, so it can be piped)."""
    s = result.scores
    table = Table(title=title)
    for col in ("id", "class", "IoU", "Acc", "GT pixels"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for i, name in enumerate(result.class_names):
        table.add_row(str(i), name, _pct(s.iou[i]), _pct(s.acc[i]), str(int(s.gt_pixels[i])))
    out = Console()
    out.print(table)
    out.print(
        f"[bold]mIoU {_pct(s.miou)}[/]  mAcc {_pct(s.macc)}  aAcc {_pct(s.aacc)}  fwIoU {_pct(s.fwiou)}  "
        f"({result.images} images, {result.images_per_second:.2f} images/s)"
    )


@app.command("eval")
@with_proxy_options
def eval_command(
    dataset: Annotated[Optional[str], typer.Option(help=f"Benchmark to run MaskCLIP on: {', '.join(DATASETS)}.")] = None,
    data_root: Annotated[Optional[Path], typer.Option(help="The dataset's root in MMSegmentation's layout, e.g. data/VOCdevkit/VOC2010 for pascal-context.")] = None,
    protocol: Annotated[str, typer.Option(help=f"Inference settings to match published tables: {' or '.join(PROTOCOLS)} (see README).")] = "paper",
    pred_dir: Annotated[Optional[Path], typer.Option(help="Folder of PNG label maps to score instead of running a model (a `maskclip label` output folder works as is).")] = None,
    gt_dir: Annotated[Optional[Path], typer.Option(help="Folder of ground-truth PNG label maps, paired with --pred-dir files by relative path.")] = None,
    classes_file: Annotated[Optional[Path], typer.Option(help="Class names for --pred-dir: classes.json of `maskclip label`, a JSON list, or one name per line; default: classes.json in PRED_DIR or its parent.")] = None,
    ignore_index: Annotated[int, typer.Option(min=0, max=255, help="Ground-truth value that is not scored (--pred-dir mode).")] = 255,
    skip_missing: Annotated[bool, typer.Option(help="--pred-dir mode: leave out ground-truth maps without a prediction instead of scoring them as all wrong.")] = False,
    segmenter_path: Annotated[Optional[Path], typer.Option("--segmenter", help="Evaluate a trained MaskCLIP+ checkpoint (from `maskclip train`) instead of MaskCLIP.")] = None,
    model: Model = DEFAULT_MODEL,
    pretrained: Pretrained = DEFAULT_PRETRAINED,
    checkpoint: Checkpoint = None,
    quick_gelu: QuickGelu = None,
    device: Device = "auto",
    method: Annotated[Optional[str], typer.Option(help=f"Dense-feature method: {', '.join(METHODS)} (see `maskclip label --help`); default: the protocol's (maskclip; proxyclip and trident for their protocols).", show_default=False)] = None,
    proxy: Optional[dict] = None,  # the --proxy-*/--sam-* options, filled in by with_proxy_options
    templates: Annotated[Optional[str], typer.Option(help=f"Prompt template set: vild (85), imagenet (80) or simple (1); {PROTOCOL_DEFAULT}.")] = None,
    background: Annotated[Optional[str], typer.Option(help=f"Comma-separated words merged into the background class (voc-bg, pascal-context-60 only); {PROTOCOL_DEFAULT}.")] = None,
    key_smoothing: Annotated[Optional[bool], typer.Option("--key-smoothing/--no-key-smoothing", help=f"Key smoothing (paper eq. 5); {PROTOCOL_DEFAULT} (paper: on, sclip: off).")] = None,
    prompt_denoising: Annotated[Optional[bool], typer.Option("--prompt-denoising/--no-prompt-denoising", help=f"Prompt denoising; {PROTOCOL_DEFAULT} (paper: on, sclip: off).")] = None,
    denoise_threshold: DenoiseThreshold = _M.denoise_threshold,
    baseline: Annotated[bool, typer.Option(help="The paper's naive baseline: ordinary last-layer tokens instead of MaskCLIP's value features.")] = _M.baseline,
    short_side: Annotated[Optional[int], typer.Option(min=1, help=f"Resize every image to this short side instead of the protocol's rescale rule; {PROTOCOL_DEFAULT}.")] = None,
    window: Annotated[Optional[int], typer.Option(min=0, help=f"Sliding-window size in pixels, 0 = whole image; {PROTOCOL_DEFAULT}.")] = None,
    stride: Annotated[Optional[int], typer.Option(min=1, help=f"Sliding-window stride in pixels; {PROTOCOL_DEFAULT} (window/2 with --window).")] = None,
    bg_threshold: Annotated[Optional[float], typer.Option(min=0, max=1, help=f"Pixels whose top probability is below this become background (datasets with a background class); {PROTOCOL_DEFAULT}.")] = None,
    logit_scale: Annotated[Optional[float], typer.Option(help=f"Probabilities are softmax(logit-scale x cosine); {PROTOCOL_DEFAULT} (paper: 100; sclip: 40, 65 on voc-bg, 50 on pascal-context-60).")] = None,
    area_threshold: Annotated[Optional[float], typer.Option(min=0, max=1, help=f"Foreground classes covering at most this fraction of an image's foreground pixels fall back to the next class (datasets with a background class); 0 = off; {PROTOCOL_DEFAULT} (sclip: 0.1 on voc-bg).")] = None,
    pamr: Pamr = _M.pamr,
    pamr_iterations: PamrIterations = _M.pamr_iterations,
    pamr_dilations: PamrDilations = ",".join(map(str, _M.pamr_dilations)),
    limit: Annotated[Optional[int], typer.Option(min=1, help="Evaluate only the first N images (quick runs).")] = None,
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes reading and resizing images while the model runs.")] = 2,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the figures and the full settings to this JSON file.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Measure mIoU, per-class IoU/accuracy, aAcc and fwIoU.

    Either run MaskCLIP on a benchmark (--dataset, --data-root; --protocol paper, paper-exact, sclip, proxyclip or trident; the other model options override the protocol's), or score a folder of label maps against ground truth (--pred-dir, --gt-dir) without loading a model.

    Exit code 2 on bad input.
    """
    hook = RichHook(enabled=progress)
    with user_errors():
        if (dataset is None) == (pred_dir is None):
            raise MaskCLIPError("Give either --dataset with --data-root, or --pred-dir with --gt-dir.")
        if json_out is not None and json_out.is_dir():  # found out before the (long) evaluation
            raise MaskCLIPError(f"--json {json_out} is a folder; give a file name.")
        if pred_dir is not None:
            if gt_dir is None:
                raise MaskCLIPError("--pred-dir needs --gt-dir.")
            model_options = [n for n, v in {"protocol": protocol != "paper", "method": method, **proxy}.items() if v]
            if model_options:  # else silently ignored: no model runs in this mode
                raise ParameterError(" / ".join("{}" for _ in model_options) + " choose the model, which --pred-dir does not run: "
                                     "drop them (it scores saved label maps).", *model_options)
            labels_dir, classes_file = prediction_layout(pred_dir, classes_file)
            names = read_class_names(classes_file)
            result = score_folders(labels_dir, gt_dir, names, ignore_index, limit, hook, skip_missing)
            settings = {"mode": "folders", "pred_dir": str(labels_dir), "gt_dir": str(gt_dir), "classes_file": str(classes_file),
                        "class_names": names, "ignore_index": ignore_index, "skip_missing": skip_missing}
            title = f"{labels_dir} vs {gt_dir}"
        else:
            if data_root is None:
                raise MaskCLIPError("--dataset needs --data-root.")
            spec = get_spec(dataset)
            names = class_names(spec)
            samples = list_samples(spec, data_root)  # checked before the (slow) model load
            ps = protocol_settings(protocol, dataset)
            threshold = background_threshold(ps, bg_threshold)
            if segmenter_path is not None:
                segmenter = load_trained(segmenter_path, [], device)
                if segmenter.class_names != names:
                    raise MaskCLIPError(f"{segmenter_path} was trained on other classes than {dataset}'s {len(names)}; "
                                        "train on labels made with the dataset's class list.")
            else:
                config = eval_config(
                    ps, templates, comma_list(background, as_typed=True) if background else None, short_side, window, stride,
                    key_smoothing, prompt_denoising, logit_scale, area_threshold,
                    method=method, denoise_threshold=denoise_threshold, baseline=baseline,
                    pamr=pamr, pamr_iterations=pamr_iterations, pamr_dilations=parse_dilations(pamr_dilations),
                    **proxy,
                )
                vocab = protocol_vocabulary(ps, spec, config)
                from ..engine.build import build_segmenter  # here: `maskclip --help` does not load torch

                segmenter = maskclip = build_segmenter(vocab, config, model=model, pretrained=pretrained, checkpoint=checkpoint,
                                                       quick_gelu=quick_gelu, device=resolve_device(device), hook=hook)
            result = evaluate_segmenter(segmenter, samples, names, threshold, limit, hook, workers)
            settings = {
                "mode": "dataset", "dataset": dataset, "data_root": str(data_root), "protocol": protocol,
                "bg_threshold": threshold, "limit": limit, "segmenter": segmenter.settings(),
                "checkpoint_sha256": maskclip.clip.source.weights.sha256 if checkpoint and segmenter_path is None else None,
            }
            title = f"{dataset} ({protocol} protocol)"
        settings["code_version"] = __version__
        _print_result(result, title)
        if json_out is not None:
            try:
                write_json(json_out, result.report(settings))
            except OSError as exc:
                raise MaskCLIPError(f"Cannot write --json {json_out}: {exc}") from exc
