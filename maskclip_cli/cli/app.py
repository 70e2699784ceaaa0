"""The Typer application object that every command module registers on.

Command modules are imported only when their command runs or its own help is asked for, so
`maskclip --help` and `maskclip --version` answer at once instead of loading torch and open_clip
(seconds). :data:`COMMANDS` names each command's module and the summary line the top-level help
shows (a test keeps it equal to the command's docstring).
"""

import importlib
import logging
from typing import Annotated

import click
import typer
from typer.core import TyperGroup
from typer.main import get_command_from_info

from .._version import __version__

#: command -> (module under maskclip_cli.cli, summary shown by `maskclip --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "label": ("label", "Label every image with MaskCLIP (dense CLIP features + text embeddings, key smoothing, prompt denoising), or a successor method (--method), optionally with PAMR."),
    "train": ("train", "Train MaskCLIP+ (DeepLabv2 with CLIP's text classifier) on MaskCLIP pseudo labels, optionally followed by self-training. The labels come from a `maskclip label` folder, or with --online from a frozen CLIP labeller run on every augmented crop (then --classes etc. describe it when there is no label folder). Multi-GPU: launch with `torchrun --nproc-per-node N -m maskclip_cli train ...`."),
    "eval": ("eval", "Measure mIoU, per-class IoU/accuracy, aAcc and fwIoU."),
    "demo": ("demo", "Score MaskCLIP's ablation and MaskCLIP+ on generated scenes with exact ground truth."),
    "export": ("export", "Export pseudo labels for another trainer or labelling tool."),
    "overlay": ("overlay", "Write LABEL_DIR/overlays/<path>.jpg: each photo blended with its label colours, with a legend of the classes present."),
    "report": ("report", "Write a review page: run settings, per-class pixel share / image count / confidence, a confidence histogram, the lowest-confidence images, failures, and overlay thumbnails by class."),
}


class _LazyGroup(TyperGroup):
    """A group whose commands are built from their modules on first use; the command list in the
    top-level help comes from :data:`COMMANDS` without importing anything."""

    _listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(dict.fromkeys([*COMMANDS, *self.commands]))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            if self._listing:
                return click.Command(cmd_name, help=COMMANDS[cmd_name][1])
            importlib.import_module(f"{__package__}.{COMMANDS[cmd_name][0]}")
            info = next(c for c in app.registered_commands if c.name == cmd_name)
            self.commands[cmd_name] = get_command_from_info(
                info, pretty_exceptions_short=app.pretty_exceptions_short, rich_markup_mode=app.rich_markup_mode
            )
        return super().get_command(ctx, cmd_name)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="maskclip",
    cls=_LazyGroup,
    help="Annotation-free semantic segmentation labels from CLIP (MaskCLIP / MaskCLIP+, ECCV 2022).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"maskclip {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit.")] = False,
) -> None:
    """Annotation-free semantic segmentation labels from CLIP (MaskCLIP / MaskCLIP+, ECCV 2022).

    label: folder -> pseudo-labelled dataset. overlay / report: look at the labels. export: COCO, YOLO or
    CVAT files. train: MaskCLIP+ on those labels. eval: mIoU.
    """
    logging.basicConfig(level=logging.ERROR)  # libraries' chatter off; our notices go through the hook
