"""The Typer application object that every command module registers on."""

import logging

import typer

app = typer.Typer(
    name="maskclip",
    help="Annotation-free semantic segmentation labels from CLIP (MaskCLIP / MaskCLIP+, ECCV 2022).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """Annotation-free semantic segmentation labels from CLIP (MaskCLIP / MaskCLIP+, ECCV 2022).

    label: folder -> pseudo-labelled dataset. overlay / report: look at the labels. export: COCO, YOLO or
    CVAT files. train: MaskCLIP+ on those labels. eval: mIoU.
    """
    logging.basicConfig(level=logging.ERROR)  # libraries' chatter off; our notices go through the hook
