"""Every numeric option has a range (shown in --help) and cross-checks, refused before any model or
data is loaded: one line, exit 2, naming the flag. The library dataclasses check the same ranges and
name their parameters."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from maskclip_cli.cli import app
from maskclip_cli.engine.maskclip import MaskCLIPConfig
from maskclip_cli.core.errors import ParameterError
from maskclip_cli.labelling.label_job import LabelOptions
from maskclip_cli.synthetic.demo import DemoSettings
from maskclip_cli.training.loop import TrainConfig

runner = CliRunner()


def _flat(text: str) -> str:
    return " ".join(text.split())


LABEL_CASES = [
    (["--short-side", "0"], "--short-side"),
    (["--min-confidence", "2"], "--min-confidence"),
    (["--batch-size", "0"], "--batch-size"),
    (["--writers", "-2"], "--writers"),
    (["--denoise-threshold", "2"], "--denoise-threshold"),
    (["--window", "0"], "--window"),
    (["--stride", "0"], "--stride"),
    (["--window", "32", "--stride", "64"], "--stride must be at most --window"),
]


@pytest.mark.parametrize("args, flag", LABEL_CASES)
def test_label_ranges(tmp_path, args, flag):
    """RN50 with OpenAI weights cannot be loaded offline: the range error must come first."""
    result = runner.invoke(app, ["label", str(tmp_path), "--classes", "cat", "--out", str(tmp_path / "o"),
                                 "--model", "RN50", "--no-progress", *args])
    assert result.exit_code == 2, result.output
    assert flag in _flat(result.output) and "RN50" not in result.output and "Traceback" not in result.output


TRAIN_CASES = [
    (["--iters", "0"], "--iters"),
    (["--crop-size", "0"], "--crop-size"),
    (["--scale-min", "2", "--scale-max", "0.5"], "--scale-min (2.0) must be <= --scale-max (0.5)"),
    (["--scale-min", "0"], "--scale-min must be > 0"),
    (["--self-train", "--iters", "10", "--guided-iters", "20"], "--guided-iters (20) must be <= --iters (10)"),
    (["--lr", "0"], "--lr must be > 0"),
    (["--momentum", "2"], "--momentum"),
    (["--min-confidence", "-1"], "--min-confidence"),
    (["--self-train-threshold", "1.5"], "--self-train-threshold"),
    (["--self-train-ema", "1.5"], "--self-train-ema"),
    (["--self-train-portion", "0"], "--self-train-portion"),
    (["--seed", "-1"], "--seed"),
]


@pytest.mark.parametrize("args, flag", TRAIN_CASES)
def test_train_ranges(tmp_path, args, flag):
    result = runner.invoke(app, ["train", "--images", str(tmp_path), "--labels", str(tmp_path), "--out", str(tmp_path / "run"),
                                 "--no-progress", *args])
    assert result.exit_code == 2, result.output
    assert flag in _flat(result.output) and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, flag", [
    (["--ignore-index", "256"], "--ignore-index"),
    (["--bg-threshold", "2"], "--bg-threshold"),
    (["--denoise-threshold", "-0.5"], "--denoise-threshold"),
    (["--short-side", "0"], "--short-side"),
    (["--window", "-1"], "--window"),
])
def test_eval_ranges(tmp_path, args, flag):
    result = runner.invoke(app, ["eval", "--dataset", "voc", "--data-root", str(tmp_path), "--no-progress", *args])
    assert result.exit_code == 2, result.output
    assert flag in _flat(result.output) and "Traceback" not in result.output


def test_demo_seed_range():
    result = runner.invoke(app, ["demo", "--seed", "-1", "--no-progress"])
    assert result.exit_code == 2 and "--seed" in _flat(result.output)


@pytest.mark.parametrize("command, shown", [
    ("label", ["--short-side", "x>=1", "0<=x<=1"]),
    ("train", ["--crop-size", "x>=32", "--iters", "x>=1"]),
    ("eval", ["--ignore-index", "0<=x<=255"]),
])
def test_help_shows_ranges(command, shown):
    result = runner.invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert all(s in result.output for s in shown)


@pytest.mark.parametrize("make, name", [
    (lambda: MaskCLIPConfig(short_side=0), "short_side"),
    (lambda: MaskCLIPConfig(denoise_threshold=2), "denoise_threshold"),
    (lambda: MaskCLIPConfig(window=32, stride=64), "stride must be at most window"),
    (lambda: LabelOptions(min_confidence=2), "min_confidence"),
    (lambda: LabelOptions(batch_size=0), "batch_size"),
    (lambda: LabelOptions(writers=-2), "writers"),
    (lambda: TrainConfig("i", "l", "o", iters=0), "iters"),
    (lambda: TrainConfig("i", "l", "o", crop_size=0), "crop_size"),
    (lambda: TrainConfig("i", "l", "o", scale_min=2, scale_max=0.5), "scale_min (2) must be <= scale_max (0.5)"),
    (lambda: TrainConfig("i", "l", "o", iters=10, guided_iters=11), "guided_iters (11) must be <= iters (10)"),
    (lambda: DemoSettings(val_scenes=0), "val_scenes"),
])
def test_library_errors_name_parameters(make, name):
    with pytest.raises(ParameterError) as err:
        make()
    assert name in str(err.value) and "--" not in str(err.value)


def test_short_side_below_the_patch_size(tmp_path):
    """The patch size is known once the model is: a short side below it is refused by the segmenter."""
    from conftest import make_tiny_clip

    from maskclip_cli.engine.maskclip import MaskCLIP

    with pytest.raises(ParameterError, match="short_side must be at least the model's patch size 8"):
        MaskCLIP(make_tiny_clip("vit"), ["cat"], MaskCLIPConfig(short_side=4, templates="simple"))
