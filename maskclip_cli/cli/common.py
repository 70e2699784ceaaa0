"""Pieces shared by the commands: rich progress hook, user-error handling, model options."""

from __future__ import annotations

import contextlib
import functools
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..clip.methods import methods_help
from ..engine.config import MaskCLIPConfig
from ..core.errors import MaskCLIPError, ParameterError
from ..core.hooks import ProgressHook
from ..core.vocabulary import ClassSpec, ClassVocabulary, parse_class_lines, read_class_text

if TYPE_CHECKING:
    import torch

    from ..engine.segmenter import Segmenter

console = Console(stderr=True)


class RichHook(ProgressHook):
    """Progress bars and notices on stderr through rich."""

    def __init__(self, unit: str = "img", enabled: bool = True):
        self.unit, self.enabled = unit, enabled
        self.progress: Progress | None = None
        self.task = None

    def start(self, total: int | None, description: str = "") -> None:
        if not self.enabled:
            return
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[extra]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(description, total=total, rate="", extra="")

    def advance(self, n: int = 1, **fields: object) -> None:
        if self.progress is None:
            return
        self.progress.advance(self.task, n)
        speed = self.progress.tasks[0].speed
        extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
        self.progress.update(self.task, rate=f"{speed:.2f} {self.unit}/s" if speed else "", extra=extra)

    def finish(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def info(self, message: str) -> None:
        console.print(message)

    def warn(self, message: str) -> None:
        console.print(f"[bold yellow]warning:[/] {message}")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a MaskCLIPError into one line on stderr and exit code 2 (library parameter names shown as flags)."""
    try:
        yield
    except MaskCLIPError as exc:
        message = exc.as_flags() if isinstance(exc, ParameterError) else str(exc)
        console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)  # [..] is text, not markup
        raise typer.Exit(2)


def resolve_device(device: str) -> "torch.device":
    import torch  # here, not at the top: `maskclip --help` does not load torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MaskCLIPError("--device cuda was asked for but no CUDA GPU is available; use --device cpu.")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise MaskCLIPError(f"Unknown --device '{device}'; use auto, cpu, or cuda[:N].") from exc


def comma_list(values: str | list[str] | None, as_typed: bool = False) -> list[str]:
    """The items of one or more comma-separated option values: stripped, blanks dropped. ``as_typed``
    keeps them as typed (--background: the record, and so the resume hash, holds the words so)."""
    parts = [p for v in ([values] if isinstance(values, str) else values or []) for p in v.split(",")]
    return parts if as_typed else [p.strip() for p in parts if p.strip()]


def read_classes(classes: list[str] | None, classes_file: Path | None) -> list[ClassSpec]:
    """Names from --classes (each may hold commas: several classes) and --classes-file (see
    :func:`~maskclip_cli.core.vocabulary.parse_class_lines`: a line "person, person in shirt" is one
    class with synonyms, named by the first, as in SCLIP's class files)."""
    names: list[ClassSpec] = list(comma_list(classes))
    if classes_file is not None:
        names += parse_class_lines(read_class_text(classes_file))
    return names


def extra_class_names(ctx: typer.Context, classes: list[str] | None) -> list[str]:
    """Words left after the options: `--classes batman joker` gives "joker" here."""
    if ctx.args and not classes:
        raise MaskCLIPError(f"Unexpected arguments: {' '.join(ctx.args)}")
    return comma_list(ctx.args)


# Shared option declarations (Annotated types keep every command's help text identical).
Model = Annotated[str, typer.Option(help="open_clip architecture (ViT-B-16, RN50, ...), a model-config .json, or hf-hub:/local-dir: id.")]
Pretrained = Annotated[str, typer.Option(help="open_clip pretrained tag, loaded from the Hugging Face cache or downloaded; 'none' = random weights (speed tests only).")]
Checkpoint = Annotated[Optional[Path], typer.Option(help="Local open_clip weights file (state dict or whole model); overrides --pretrained.")]
QuickGelu = Annotated[Optional[bool], typer.Option("--quick-gelu/--no-quick-gelu", show_default=False, help="Activation of CLIP's transformer MLPs. Default: as the weights were trained (QuickGELU for OpenAI's tags and checkpoints, from open_clip's tag table or the file); give it for a checkpoint whose training is unknown.")]
Device = Annotated[str, typer.Option(help="auto (GPU if available), cpu, or cuda[:N].")]
Classes = Annotated[Optional[list[str]], typer.Option("--classes", "-c", help="Class names: --classes cat dog, --classes cat,dog or a repeated option.")]
ClassesFile = Annotated[Optional[Path], typer.Option(help="Text file with one class per line (# starts a comment); synonyms on one line separated by ', ' (named by the first; the class scores the max over them).")]
Templates = Annotated[str, typer.Option(help="Prompt template set: vild (85, the paper's), imagenet (80) or simple (1).")]
Background = Annotated[Optional[str], typer.Option(help="Comma-separated words merged into one background class with id 0, e.g. 'sky,wall,floor,ground'. Off when not given.")]
Method = Annotated[str, typer.Option(help=f"Dense-feature method (the last ViT block's recipe): {methods_help()}. See README 'Which method'.")]
Pamr = Annotated[bool, typer.Option("--pamr/--no-pamr", help="PAMR post-processing (as SCLIP/NACLIP): scores refined at the original size by pixel-adaptive neighbour averaging guided by the image. Slower; skipped with a warning if a photo does not fit in memory.")]
PamrIterations = Annotated[int, typer.Option(min=1, help="PAMR iterations.")]
PamrDilations = Annotated[str, typer.Option(help="PAMR neighbourhood dilations in pixels, comma-separated.")]
KeySmoothing = Annotated[bool, typer.Option("--key-smoothing/--no-key-smoothing", help="Key smoothing (paper eq. 5).")]
PromptDenoising = Annotated[bool, typer.Option("--prompt-denoising/--no-prompt-denoising", help="Prompt denoising: drop classes never confident in an image.")]
DenoiseThreshold = Annotated[float, typer.Option(min=0, max=1, help="Prompt-denoising threshold t (paper: 0.5).")]
ShortSide = Annotated[int, typer.Option(min=1, help="Resize images so the short side has this many pixels before inference (at least the patch size; the long side is capped at 4x it).")]
Window = Annotated[Optional[int], typer.Option(min=1, help="Sliding-window size in pixels (multiple of the patch size); whole-image inference when not given.")]
Stride = Annotated[Optional[int], typer.Option(min=1, help="Sliding-window stride in pixels; default window/2 rounded down to a multiple of the patch size.")]


def parse_dilations(text: str) -> tuple[int, ...]:
    """``"8,16"`` -> (8, 16); anything else is one clear error."""
    try:
        values = tuple(int(v) for v in comma_list(text))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise MaskCLIPError(f"--pamr-dilations must be positive integers separated by commas (e.g. 8,16), got '{text}'.")
    return values


def load_trained(path: Path, classes: list[str], device: str) -> "Segmenter":
    """A `maskclip train` checkpoint as a segmenter; it brings its own classes."""
    from ..training.trained_segmenter import load_segmenter

    if classes:
        raise MaskCLIPError("--segmenter labels with the classes it was trained on; drop --classes/--classes-file.")
    if not path.is_file():
        raise MaskCLIPError(f"Segmenter checkpoint not found: {path}")
    return load_segmenter(path, resolve_device(device))



# The --proxy-*/--sam-* options of the methods with a second backbone (MaskCLIPConfig's proxy_*/sam_* fields).
_PROXY_OPTIONS = {
    "proxy_model": Annotated[Optional[str], typer.Option(help="--method proxyclip/trident: the proxy, any timm ViT with its tag (default vit_base_patch8_224.dino for proxyclip, vit_base_patch16_224.dino for trident; e.g. vit_base_patch14_reg4_dinov2.lvd142m).", show_default=False)],
    "proxy_pretrained": Annotated[Optional[str], typer.Option(help="timm tag of the proxy's weights, replacing the one in --proxy-model, loaded from the Hugging Face cache or downloaded; 'none' = random weights.", show_default=False)],
    "proxy_checkpoint": Annotated[Optional[Path], typer.Option(help="Local timm state dict (.safetensors or .pth) for the proxy; overrides --proxy-pretrained.", show_default=False)],
    "proxy_beta": Annotated[Optional[float], typer.Option(help="ProxyCLIP's beta in S' = (S - beta * mean(S)) * gamma (default 1.2).", show_default=False)],
    "proxy_gamma": Annotated[Optional[float], typer.Option(help="ProxyCLIP's gamma (default 3.0).", show_default=False)],
    "sam_model": Annotated[Optional[str], typer.Option(help="--method trident: SAM's image encoder, a timm samvit_* name (default samvit_base_patch16.sa1b).", show_default=False)],
    "sam_pretrained": Annotated[Optional[str], typer.Option(help="timm tag of SAM's weights; 'none' = random weights.", show_default=False)],
    "sam_checkpoint": Annotated[Optional[Path], typer.Option(help="Local timm state dict for SAM; overrides --sam-pretrained.", show_default=False)],
    "sam_refine_neg_cos": Annotated[Optional[bool], typer.Option("--sam-refine-neg-cos/--no-sam-refine-neg-cos", help="--method trident: keep a negative SAM similarity threshold as it is (the authors' default; off for ADE20K: 0.6 instead).", show_default=False)],
}
PROXY_FLAGS = {name: f"--{name.replace('_', '-')}" for name in _PROXY_OPTIONS}


def with_proxy_options(command: Callable) -> Callable:
    """Give a Typer command the --proxy-*/--sam-* options; it receives them as one keyword ``proxy``:
    MaskCLIPConfig fields, None where not given (paths as str)."""
    signature = inspect.signature(command, eval_str=True)
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=kind) for name, kind in _PROXY_OPTIONS.items()]

    @functools.wraps(command)
    def run(*args: object, **kwargs: object) -> object:
        given = {name: kwargs.pop(name) for name in _PROXY_OPTIONS}
        proxy = {name: str(value) if isinstance(value, Path) else value for name, value in given.items()}
        return command(*args, proxy=proxy, **kwargs)

    run.__signature__ = signature.replace(parameters=[p for p in signature.parameters.values() if p.name != "proxy"] + added)
    run.__annotations__ = {**{p.name: p.annotation for p in run.__signature__.parameters.values()}, "return": signature.return_annotation}
    return run
