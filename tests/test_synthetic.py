"""The synthetic world: deterministic scenes with exact masks, captions, export, and the committed
tiny CLIP's quality on held-out scenes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from maskclip_cli.synthetic import BACKGROUND_PHRASE, CLASSES, WorldSpec, make_scene
from maskclip_cli.synthetic.captions import caption, class_set_id, describe
from maskclip_cli.synthetic.export import write_split
from maskclip_cli.synthetic.world import COLOURS
from maskclip_cli.templates import get_templates


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
    from maskclip_cli.datasets import get_spec, list_samples

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
    from maskclip_cli.loading import load_clip
    from maskclip_cli.synthetic.assets import MODEL_CONFIG
    from maskclip_cli.synthetic.train_clip import TrainSettings, train_tiny_clip

    checkpoint = tmp_path / "tiny.pt"
    train_tiny_clip(MODEL_CONFIG, checkpoint, TrainSettings(steps=2, batch_size=4, warmup=1, save_every=1))
    clip = load_clip(str(MODEL_CONFIG), checkpoint=checkpoint)
    assert clip.pretrained.startswith("checkpoint:") and clip.model.visual.patch_size == (8, 8)
