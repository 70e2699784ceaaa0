"""The synthetic world: deterministic scenes with exact masks, captions, export, and the committed
tiny CLIP's quality on held-out scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from maskclip_cli.clip.templates import get_templates
from maskclip_cli.synthetic import BACKGROUND_PHRASE, CLASSES, WorldSpec, make_scene
from maskclip_cli.synthetic.captions import caption, class_set_id, describe
from maskclip_cli.synthetic.export import write_split
from maskclip_cli.synthetic.world import COLOURS


def test_scenes_are_a_pure_function_of_seed_and_index():
    a, b, c = make_scene(3, 7), make_scene(3, 7), make_scene(4, 7)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert np.array_equal(a.labels, b.labels) and a.present == b.present
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))


def test_labels_are_exact_and_match_the_painted_colours():
    for index in range(40):
        scene = make_scene(0, index)
        image = np.asarray(scene.image).astype(float) / 255
        assert scene.image.size == (96, 96) and scene.labels.shape == (96, 96)
        assert set(np.unique(scene.labels)) == {0} | {CLASSES.index(n) + 1 for n in scene.present}
        for cls, name in enumerate(CLASSES, start=1):
            mask = scene.labels == cls
            if mask.any():  # every labelled pixel is near its class colour, farther from the others
                dist = {n: np.abs(image[mask] - np.asarray(c)).mean(axis=1) for n, c in COLOURS.items()}
                nearest = np.argmin(np.stack([dist[n] for n in CLASSES]), axis=0)
                assert (nearest == cls - 1).mean() > 0.95
        if (scene.labels == 0).any():  # background is muted: low saturation, never white
            bg = image[scene.labels == 0]
            assert (bg.max(axis=1) - bg.min(axis=1)).mean() < 0.25 and bg.mean() < 0.8


def test_world_has_empty_scenes_and_up_to_three_objects():
    counts = np.array([len(make_scene(1, i).present) for i in range(400)])
    assert 0.18 < (counts == 0).mean() < 0.32
    assert counts.max() == 3


def test_captions_use_the_inference_templates():
    rng = np.random.default_rng(0)
    templates = get_templates("vild")
    assert describe((), rng) == BACKGROUND_PHRASE
    assert describe(("red",), rng) == "red"
    three = describe(("red", "blue", "green"), rng)
    assert sorted(three.replace(",", "").replace(" and ", " ").split()) == ["blue", "green", "red"]
    text = caption(("red",), templates, rng)
    assert any(t.format("red") == text for t in templates)
    assert class_set_id(("red", "blue")) == class_set_id(("blue", "red")) != class_set_id(("red",))
    assert class_set_id(()) == 0


def test_pascal_context_split_reads_back_through_the_eval_reader(tmp_path):
    from maskclip_cli.evaluation.datasets import get_spec, list_samples

    stems = write_split(tmp_path, seed=5, count=6)
    samples = list_samples(get_spec("pascal-context-60"), tmp_path)
    assert [s.key for s in samples] == stems
    for i, sample in enumerate(samples):
        assert np.array_equal(sample.load_label(), make_scene(5, i).labels)
    assert (tmp_path / "classes.txt").read_text().split() == list(CLASSES)


def test_plain_split_pairs_images_and_labels(tmp_path):
    stems = write_split(tmp_path, seed=5, count=3, layout="plain", spec=WorldSpec(size=64))
    for i, stem in enumerate(stems):
        assert np.array_equal(np.asarray(Image.open(tmp_path / "images" / f"{stem}.png")), np.asarray(make_scene(5, i, WorldSpec(size=64)).image))
        assert np.array_equal(np.asarray(Image.open(tmp_path / "labels" / f"{stem}.png")), make_scene(5, i, WorldSpec(size=64)).labels)


def test_training_writes_a_checkpoint_that_loads_through_the_ordinary_path(tmp_path):
    from maskclip_cli.clip.loading import load_clip
    from maskclip_cli.synthetic.assets import MODEL_CONFIG
    from maskclip_cli.synthetic.train_clip import TrainSettings, train_tiny_clip

    checkpoint = tmp_path / "tiny.pt"
    train_tiny_clip(MODEL_CONFIG, checkpoint, TrainSettings(steps=2, batch_size=4, warmup=1, save_every=1))
    clip = load_clip(str(MODEL_CONFIG), checkpoint=checkpoint)
    assert clip.pretrained.startswith("checkpoint:") and clip.model.visual.patch_size == (8, 8)


# -- the committed tiny CLIP on held-out scenes -------------------------------------------------
# Measured with `python benchmarks/synthetic_quality.py --seeds 10 --no-maskclip-plus` (mIoU %,
# 100 held-out scenes per seed, mean +- std over seeds): chance 2.5 +- 0.1, baseline tokens
# 11.2 +- 1.4 (9.5-14.1), MaskCLIP 32.7 +- 1.5 (30.9-35.4), +KS 32.8 +- 2.4, +KS+PD 32.8 +- 2.5.
# On this test's split (world 7, 100 scenes): chance 2.4, tokens 11.1, MaskCLIP 30.5.
# The measured gaps are ~21 points (MaskCLIP - tokens) and ~30 (MaskCLIP - chance), each with a
# seed-to-seed spread of ~2; the margins below sit 4-5 spreads under them.
QUALITY_WORLD, QUALITY_SCENES = 7, 100


@pytest.fixture(scope="module")
def quality_split(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic-val")
    write_split(root, QUALITY_WORLD, QUALITY_SCENES)
    return root


def test_committed_checkpoint_is_small_and_loads_like_real_weights():
    from maskclip_cli.clip.loading import load_clip
    from maskclip_cli.synthetic.assets import CHECKPOINT, MODEL_CONFIG

    assert CHECKPOINT.stat().st_size < 10 * 2**20
    clip = load_clip(str(MODEL_CONFIG), checkpoint=CHECKPOINT)
    assert clip.model_name == "maskclip-synthetic-vit" and clip.pretrained.startswith("checkpoint:")


def test_maskclip_clearly_beats_the_token_baseline_and_chance(quality_split):
    from maskclip_cli.engine.maskclip import MaskCLIP
    from maskclip_cli.synthetic.assets import load_synthetic_clip
    from maskclip_cli.synthetic.demo import (
        MASKCLIP_ROWS,
        chance_miou,
        maskclip_config,
        score,
    )

    clip = load_synthetic_clip()
    rows = dict(MASKCLIP_ROWS)
    miou = {name: score(MaskCLIP(clip, list(CLASSES), maskclip_config(**rows[name])), quality_split)
            for name in ("baseline tokens", "MaskCLIP")}
    chance = chance_miou(QUALITY_WORLD, QUALITY_SCENES)
    assert miou["MaskCLIP"] > miou["baseline tokens"] + 0.12, miou
    assert miou["MaskCLIP"] > chance + 0.20, (miou, chance)
    assert miou["baseline tokens"] > chance, (miou, chance)


def test_demo_command_prints_the_maskclip_rows(tmp_path):
    from typer.testing import CliRunner

    from maskclip_cli.cli import app

    result = CliRunner().invoke(app, ["demo", "--no-maskclip-plus", "--val-scenes", "8", "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    for row in ("random labels (chance)", "baseline tokens", "MaskCLIP +KS+PD"):
        assert row in result.output
    assert (tmp_path / "val" / "ImageSets" / "SegmentationContext" / "val.txt").is_file()
    # zero guided iterations would be a zero validation interval deep inside training
    result = CliRunner().invoke(app, ["demo", "--guided-iters", "0", "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_demo_runs_label_train_eval_end_to_end(tmp_path):
    """Wiring only (a few iterations): the MaskCLIP+ rows come from a real label -> train -> eval."""
    from maskclip_cli.synthetic.demo import ROW_NAMES, DemoSettings, run_demo

    settings = DemoSettings(train_scenes=6, val_scenes=4, guided_iters=2, self_train_iters=2, batch_size=2,
                            zero_shot_iters=3, zero_shot_batch_size=2, zero_shot_self_train=True)
    results = run_demo(tmp_path, settings)
    assert tuple(results) == ROW_NAMES and all(0 <= v <= 1 for v in results.values())
    assert len(list((tmp_path / "pseudo-labels" / "labels").glob("*.png"))) == 6
    config = json.loads((tmp_path / "maskclip-plus" / "config.json").read_text())
    assert config["photometric"] is False and config["iters"] == 4 and config["guided_iters"] == 2
    # zero-shot: one guided iteration shared, then guided only vs self-training, both to iteration 3
    guided = json.loads((tmp_path / "maskclip-plus-zero-shot-guided" / "config.json").read_text())
    selftrained = json.loads((tmp_path / "maskclip-plus-zero-shot-self-training" / "config.json").read_text())
    assert guided["self_train"] is False and selftrained["self_train"] is True and selftrained["guided_iters"] == 1
    assert guided["unseen"] == selftrained["unseen"] == ["orange", "cyan", "white"] and selftrained["gt_labels"]
    for name, phase in (("guided", "guided"), ("self-training", "self")):
        lines = [json.loads(ln) for ln in (tmp_path / f"maskclip-plus-zero-shot-{name}" / "metrics.jsonl").read_text().splitlines()]
        assert [ln["phase"] for ln in lines if "phase" in ln] == [phase] and lines[-1]["iter"] == 3 and "val" in lines[-1]


def test_label_and_eval_commands_read_an_exported_split(tmp_path):
    """The exported split and the committed CLIP work through the ordinary CLI, and score the
    same as the library path the demo takes."""
    from typer.testing import CliRunner

    from maskclip_cli.cli import app
    from maskclip_cli.engine.maskclip import MaskCLIP
    from maskclip_cli.synthetic.assets import (
        CHECKPOINT,
        MODEL_CONFIG,
        load_synthetic_clip,
    )
    from maskclip_cli.synthetic.demo import maskclip_config, score

    write_split(tmp_path / "val", seed=QUALITY_WORLD, count=12)
    runner = CliRunner()
    label = runner.invoke(app, [
        "label", str(tmp_path / "val" / "JPEGImages"), "--out", str(tmp_path / "labels"), "--model", str(MODEL_CONFIG),
        "--checkpoint", str(CHECKPOINT), "--classes-file", str(tmp_path / "val" / "classes.txt"), "--background",
        BACKGROUND_PHRASE, "--short-side", "96", "--workers", "0", "--no-progress",
    ])
    assert label.exit_code == 0, label.output
    report = tmp_path / "eval.json"
    evaluated = runner.invoke(app, [
        "eval", "--pred-dir", str(tmp_path / "labels" / "labels"), "--gt-dir", str(tmp_path / "val" / "SegmentationClassContext"),
        "--json", str(report), "--no-progress",
    ])
    assert evaluated.exit_code == 0, evaluated.output
    library = score(MaskCLIP(load_synthetic_clip(), list(CLASSES), maskclip_config()), tmp_path / "val")
    assert json.loads(report.read_text())["mIoU"] == pytest.approx(library * 100, abs=0.01)


@pytest.mark.slow
def test_maskclip_plus_trained_on_maskclip_labels_at_least_matches_maskclip(tmp_path):
    """The paper's MaskCLIP+ claim, in CI: ~3 CPU minutes, the slowest test of the suite."""
    # Measured (benchmarks/synthetic_quality.py --seeds 3 --first-seed 0 and 3, demo defaults, mIoU %):
    # MaskCLIP 31.1/34.6/33.3/35.4/31.2/32.3 (33.0 +- 1.6), MaskCLIP+ after its 200 guided iterations
    # 35.9/38.6/36.3/37.9/39.7/36.8 (37.5 +- 1.3): +4.6 +- 1.9, never below +2.5. This run (seed 0, no
    # self-training phase, so the LR decays within the 200 guided iterations): 31.1 -> 34.7.
    # Self-training: tests/training/test_self_training.py and benchmarks/self_training.py (README).
    from maskclip_cli.synthetic.demo import GUIDED, DemoSettings, run_demo

    results = run_demo(tmp_path, DemoSettings(self_train_iters=0, zero_shot_iters=0))
    assert results[GUIDED] >= results["MaskCLIP"], results


@pytest.mark.slow
def test_annotation_free_self_training_does_not_collapse(tmp_path):
    """Issue 19's acceptance criterion on the synthetic world (seed 0 of benchmarks/self_training.py
    at the paper's switch, 1/10; ~3 CPU minutes): after the switch the authors' self-training
    collapses below guided learning, and the default safeguards (mean teacher, CBST, anchor) stay
    with guided learning. Measured: guided 8.5, authors' 0.2, default 8.4 mIoU."""
    from dataclasses import replace

    from maskclip_cli.synthetic.assets import load_synthetic_clip
    from maskclip_cli.synthetic.demo import DemoSettings, train_config, val_scores, write_world
    from maskclip_cli.synthetic.stages import guided_only, stage_scores, train_branches
    from maskclip_cli.training.class_text import from_maskclip

    s = DemoSettings(guided_iters=10, self_train_iters=90, batch_size=2)
    write_split(tmp_path / "val", s.val_world, s.val_scenes, layout="pascal-context", split="val", spec=s.spec)
    text = from_maskclip(write_world(tmp_path, s, load_synthetic_clip()))
    trunk = train_config(s, tmp_path, name="af")
    trunk = replace(trunk, val_every=trunk.iters)
    plain = {"self_train_anchor": 0.0, "self_train_ema": 0.0, "self_train_portion": 1.0}  # the authors' assign_label
    runs = train_branches(trunk, text, {"guided": guided_only(), "plain": plain, "default": {}})
    miou = {name: stage_scores(val_scores(run, trunk.iters)).miou for name, run in runs.items()}
    assert miou["plain"] < miou["guided"] - 0.05, miou
    assert miou["default"] >= miou["guided"] - 0.02, miou


@pytest.mark.parametrize("args, says", [
    (["--no-maskclip-plus", "--zs-self-train"], "--self-train-iters and --zs-self-train train MaskCLIP+: drop --no-maskclip-plus."),
    (["--no-maskclip-plus", "--self-train-iters", "5"], "drop --no-maskclip-plus"),
    (["--zs-self-train", "--zero-shot-iters", "0"], "--zs-self-train needs zero-shot rows (--zero-shot-iters > 0)."),
])
def test_demo_self_training_options_that_would_show_no_row(tmp_path, args, says):
    """`demo --no-maskclip-plus --zs-self-train` printed the MaskCLIP rows and "Self-training rows
    ... are off", ignoring the option: now one line, exit 2, before the tiny CLIP is loaded."""
    from typer.testing import CliRunner

    from maskclip_cli.cli import app

    result = CliRunner().invoke(app, ["demo", *args, "--out", str(tmp_path / "demo"), "--no-progress"])
    assert result.exit_code == 2 and says in result.output and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "demo").exists()
