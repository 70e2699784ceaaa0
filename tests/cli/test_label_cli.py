"""`maskclip label` end to end through Typer's runner, on a tiny random CLIP built from a config file."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIGS, make_tiny_clip
from PIL import Image
from typer.testing import CliRunner

from maskclip_cli.cli import app
from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig
from maskclip_cli.core.hooks import ProgressHook
from maskclip_cli.labelling.label_job import LabelOptions, label_folder

runner = CliRunner()
SIZES = {"a.jpg": (64, 48), "nested/deeper/b.PNG": (40, 72), "nested/c.JPEG": (50, 50), "d.webp": (33, 65)}


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for rel, (w, h) in SIZES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny-vit.json"
    path.write_text(json.dumps(TINY_CONFIGS["vit"]))
    return path


def run_label(images, out, tiny_config, *extra):
    args = ["label", str(images), "--out", str(out), "--model", str(tiny_config), "--pretrained", "none",
            "--no-progress", "--workers", "0", "--short-side", "32", "--templates", "simple", *extra]
    return runner.invoke(app, args)


def manifest_lines(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_label_writes_dataset(images, tmp_path, tiny_config):
    """Every image gets a palette label map and a confidence map of its own size; the manifest and
    classes.json describe them; nested folders are mirrored."""
    out = tmp_path / "out"
    result = run_label(images, out, tiny_config, "--classes", "cat", "dog", "tree")
    assert result.exit_code == 0, result.output
    classes = json.loads((out / "classes.json").read_text())
    assert [c["name"] for c in classes["classes"]] == ["cat", "dog", "tree"]
    assert classes["ignore_index"] == 255
    lines = manifest_lines(out)
    assert sorted(e["source"] for e in lines) == sorted(SIZES)
    for entry in lines:
        assert entry["status"] == "ok"
        label = Image.open(out / entry["label"])
        conf = Image.open(out / entry["confidence"])
        assert label.mode == "P" and conf.mode == "L"
        assert label.size == conf.size == SIZES[entry["source"]] == (entry["width"], entry["height"])
        ids = np.unique(np.asarray(label))
        assert ids.max() < 3
        assert sorted(entry["classes_present"]) == sorted(["cat", "dog", "tree"][i] for i in ids)
        assert 0 <= entry["mean_confidence"] <= 1
    assert (out / "labels/nested/deeper/b.png").is_file()


def test_resume_skips_finished_images(images, tmp_path, tiny_config):
    """A second identical run labels nothing and leaves the files untouched; --overwrite redoes all."""
    out = tmp_path / "out"
    assert run_label(images, out, tiny_config, "--classes", "cat,dog").exit_code == 0
    stamp = {p: p.stat().st_mtime_ns for p in (out / "labels").rglob("*.png")}
    time.sleep(0.01)
    again = run_label(images, out, tiny_config, "--classes", "cat,dog")
    assert again.exit_code == 0 and "0 labelled, 4 skipped" in again.output
    assert stamp == {p: p.stat().st_mtime_ns for p in (out / "labels").rglob("*.png")}
    redo = run_label(images, out, tiny_config, "--classes", "cat,dog", "--overwrite")
    assert "4 labelled, 0 skipped" in redo.output
    assert len(manifest_lines(out)) == 4


@pytest.mark.parametrize("inside", ["maskclip-labels", "."])
def test_output_folder_inside_input_is_not_relabelled(images, tmp_path, tiny_config, inside):
    """`maskclip label . --out maskclip-labels` (or --out .) resumes without labelling its own outputs."""
    out = images / inside
    assert run_label(images, out, tiny_config, "--classes", "cat,dog").exit_code == 0
    again = run_label(images, out, tiny_config, "--classes", "cat,dog")
    assert again.exit_code == 0 and "0 labelled, 4 skipped" in again.output, again.output


def test_resume_relabels_missing_outputs(images, tmp_path, tiny_config):
    out = tmp_path / "out"
    run_label(images, out, tiny_config, "--classes", "cat,dog")
    (out / "labels/a.png").unlink()
    again = run_label(images, out, tiny_config, "--classes", "cat,dog")
    assert "1 labelled, 3 skipped" in again.output
    assert (out / "labels/a.png").is_file()


def test_changed_settings_refused_without_overwrite(images, tmp_path, tiny_config):
    out = tmp_path / "out"
    run_label(images, out, tiny_config, "--classes", "cat,dog")
    result = run_label(images, out, tiny_config, "--classes", "cat,dog,bird")
    assert result.exit_code == 2 and "other settings" in result.output and "classes" in result.output


def test_corrupt_image_is_reported_and_others_labelled(images, tmp_path, tiny_config):
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    good = Image.open(images / "a.jpg")
    good.save(images / "truncated.png")
    data = (images / "truncated.png").read_bytes()
    (images / "truncated.png").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    result = run_label(images, out, tiny_config, "--classes", "cat,dog")
    assert result.exit_code == 1
    assert "4 labelled, 0 skipped (already done), 2 failed" in result.output
    by_source = {e["source"]: e for e in manifest_lines(out)}
    assert by_source["broken.jpg"]["status"] == "error" and by_source["broken.jpg"]["error"]
    assert by_source["truncated.png"]["status"] == "error"
    assert all(by_source[s]["status"] == "ok" for s in SIZES)


def test_background_min_confidence_and_npy(images, tmp_path, tiny_config):
    """--background adds class 0; --min-confidence marks low pixels 255; npy confidences are float16
    and agree with the label map's ignore pixels."""
    out = tmp_path / "out"
    result = run_label(images, out, tiny_config, "--classes", "cat,dog", "--background", "sky,wall",
                       "--min-confidence", "0.6", "--confidence-format", "npy")
    assert result.exit_code == 0, result.output
    names = [c["name"] for c in json.loads((out / "classes.json").read_text())["classes"]]
    assert names == ["background", "cat", "dog"]
    ignored = 0
    for entry in manifest_lines(out):
        conf = np.load(out / entry["confidence"])
        label = np.asarray(Image.open(out / entry["label"]))
        assert conf.dtype == np.float16 and conf.shape == label.shape
        conf = conf.astype(np.float32)  # float16 storage: allow its rounding at the threshold
        assert (conf[label == 255] < 0.6 + 1e-3).all()
        assert (conf[label != 255] >= 0.6 - 1e-3).all()
        ignored += int((label == 255).sum())
    assert ignored > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--classes", "cat", "--classes", "cat"], "Duplicate class names"),
        ([], "No classes given"),
        (["--classes", " , "], "No classes given"),
        (["--classes", "cat", "--device", "gpu"], "Unknown --device"),
    ],
)
def test_bad_classes_exit_2(images, tmp_path, tiny_config, args, message):
    result = run_label(images, tmp_path / "out", tiny_config, *args)
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output


def test_missing_folder_and_unwritable_output(tmp_path, tiny_config, images):
    result = run_label(tmp_path / "nope", tmp_path / "out", tiny_config, "--classes", "cat")
    assert result.exit_code == 2 and "Input folder not found" in result.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_label(images, blocker / "out", tiny_config, "--classes", "cat")
    assert result.exit_code == 2 and "not writable" in result.output


def test_offline_weights_give_one_clear_error(images, tmp_path):
    """No cached weights and no hub: exit 2 with a message naming model and tag, quickly, no traceback."""
    start = time.perf_counter()
    result = runner.invoke(app, ["label", str(images), "--classes", "cat", "--out", str(tmp_path / "o"),
                                 "--model", "RN50", "--pretrained", "openai", "--no-progress"])
    assert time.perf_counter() - start < 20
    assert result.exit_code == 2
    assert "RN50" in result.output and "'openai'" in result.output and "--checkpoint" in result.output
    assert "Traceback" not in result.output


def test_checkpoint_option_loads_local_weights(images, tmp_path, tiny_config):
    """--checkpoint feeds a local state dict through the same path as real weights, and the label
    maps equal those of the library on the same model."""
    clip = make_tiny_clip("vit", seed=3)
    ckpt = tmp_path / "tiny.pt"
    torch.save(clip.model.state_dict(), ckpt)
    out = tmp_path / "out"
    result = runner.invoke(app, ["label", str(images), "--classes", "cat,dog", "--out", str(out), "--model", str(tiny_config),
                                 "--checkpoint", str(ckpt), "--no-progress", "--workers", "0", "--short-side", "32",
                                 "--templates", "simple"])
    assert result.exit_code == 0, result.output
    seg = MaskCLIP(clip, ["cat", "dog"], MaskCLIPConfig(templates="simple", short_side=32))
    expected = seg.label_image(Image.open(images / "a.jpg").convert("RGB")).labels
    assert np.array_equal(np.asarray(Image.open(out / "labels/a.png")), expected)


class _InterruptAfter(ProgressHook):
    def __init__(self, n: int):
        self.n = n

    def advance(self, n: int = 1, **fields: object) -> None:
        self.n -= n
        if self.n <= 0:
            raise KeyboardInterrupt


def test_interrupted_run_leaves_no_partial_files_and_resumes(images, tmp_path):
    """Ctrl-C mid-run: finished images are in the manifest, no temp files remain, and the next run
    labels only the rest."""
    seg = MaskCLIP(make_tiny_clip("vit"), ["cat", "dog"], MaskCLIPConfig(templates="simple", short_side=32))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        label_folder(seg, images, out, LabelOptions(batch_size=1, workers=0), _InterruptAfter(2))
    assert not list(out.rglob("*.tmp"))
    done = manifest_lines(out)
    assert 1 <= len(done) < len(SIZES)
    summary = label_folder(seg, images, out, LabelOptions(batch_size=1, workers=0))
    assert summary.skipped == len(done) and summary.labelled == len(SIZES) - len(done)


def test_batched_equals_one_by_one(tmp_path):
    """Same-sized images labelled in one batch give the same maps as one at a time (with workers)."""
    root = tmp_path / "same"
    root.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(root / f"{i}.png")
    seg = MaskCLIP(make_tiny_clip("resnet"), ["cat", "dog", "car"], MaskCLIPConfig(templates="simple", short_side=64))
    label_folder(seg, root, tmp_path / "batched", LabelOptions(batch_size=3, workers=1))
    label_folder(seg, root, tmp_path / "single", LabelOptions(batch_size=1, workers=0))
    for i in range(3):
        a = np.asarray(Image.open(tmp_path / f"batched/confidence/{i}.png"), dtype=int)
        b = np.asarray(Image.open(tmp_path / f"single/confidence/{i}.png"), dtype=int)
        assert np.abs(a - b).max() <= 1


def test_bad_confidence_format_refused_before_model_load(images, tmp_path):
    """Checked before the weights are looked up: the offline RN50 error must not appear."""
    result = runner.invoke(app, ["label", str(images), "--classes", "cat", "--out", str(tmp_path / "o"), "--model", "RN50",
                                 "--confidence-format", "tiff", "--no-progress"])
    assert result.exit_code == 2 and "--confidence-format must be png or npy" in result.output


@pytest.mark.parametrize("background", [[], ["--background", "sky"]])
def test_too_many_classes_refused_before_model_load(images, tmp_path, monkeypatch, background):
    """256 classes (or 255 plus the merged background) do not fit an 8-bit label map: one line, exit 2,
    before any weights are loaded or any text is embedded."""
    import maskclip_cli.clip.loading as loading

    monkeypatch.setattr(loading, "load_clip", lambda *a, **k: pytest.fail("the model was loaded"))
    names = [f"class{i}" for i in range(256 - len(background) // 2)]
    result = runner.invoke(app, ["label", str(images), "--classes", ",".join(names), *background,
                                 "--out", str(tmp_path / "o"), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "256 classes given; at most 255" in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("method", ["sclip", "clearclip", "naclip"])
def test_method_is_used_and_recorded(images, tmp_path, tiny_config, method):
    """--method changes the labels' scores and is recorded; a different method on the same folder is refused."""
    out = tmp_path / "out"
    assert run_label(images, out, tiny_config, "--classes", "cat", "dog", "--method", method).exit_code == 0
    assert json.loads((out / "classes.json").read_text())["settings"]["inference"]["method"] == method
    result = run_label(images, out, tiny_config, "--classes", "cat", "dog")
    assert result.exit_code == 2 and "method" in result.output


def test_unknown_method_and_resnet_method_refused(images, tmp_path, tiny_config):
    result = run_label(images, tmp_path / "o", tiny_config, "--classes", "cat", "--method", "gem")
    assert result.exit_code == 2 and "Unknown method 'gem'" in result.output
    rn = tmp_path / "rn.json"
    rn.write_text(json.dumps(TINY_CONFIGS["resnet"]))
    result = run_label(images, tmp_path / "o", rn, "--classes", "cat", "--method", "naclip")
    assert result.exit_code == 2 and "needs a ViT" in result.output


class _FailsOnWhite(MaskCLIP):
    """MaskCLIP that runs out of memory on any batch holding an all-white input."""

    def scores(self, images):
        if (images.flatten(1).amin(dim=1) > 1.5).any():
            raise RuntimeError("CUDA out of memory. Tried to allocate 295.00 GiB\nmore detail")
        return super().scores(images)


def test_image_the_model_cannot_process_is_an_error_entry_and_the_run_goes_on(tmp_path):
    """A model error on one image (e.g. out of memory) is recorded for that image; the images batched
    with it and after it are labelled."""
    root = tmp_path / "in"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name, (w, h) in {"a.png": (40, 10), "b.png": (40, 10), "c.png": (32, 32), "d.png": (24, 24)}.items():
        Image.fromarray(rng.integers(0, 200, (h, w, 3), dtype=np.uint8)).save(root / name)
    Image.new("RGB", (40, 10), "white").save(root / "a.png")  # batched with b.png (same shape)
    seg = _FailsOnWhite(make_tiny_clip("vit"), ["cat", "dog"], MaskCLIPConfig(templates="simple", short_side=16))
    out = tmp_path / "out"
    summary = label_folder(seg, root, out, LabelOptions(batch_size=4, workers=0))
    assert (summary.labelled, summary.failed) == (3, 1)
    entries = {e["source"]: e for e in manifest_lines(out)}
    assert entries["a.png"]["status"] == "error"
    assert entries["a.png"]["error"] == "RuntimeError: CUDA out of memory. Tried to allocate 295.00 GiB"
    assert all(entries[n]["status"] == "ok" and (out / "labels" / n).is_file() for n in ("b.png", "c.png", "d.png"))
    assert not (out / "labels" / "a.png").exists()


def test_unwritable_text_cache_is_a_warning_not_a_crash(images, tmp_path, tiny_config, monkeypatch):
    """MASKCLIP_CACHE that cannot be created: label warns once and labels every image (it crashed)."""
    from maskclip_cli.clip import text_embeddings

    monkeypatch.setattr(text_embeddings, "_unwritable", set())
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("MASKCLIP_CACHE", str(tmp_path / "file" / "cache"))
    ckpt = tmp_path / "tiny.pt"
    torch.save(make_tiny_clip("vit", seed=3).model.state_dict(), ckpt)
    out = tmp_path / "out"
    result = runner.invoke(app, ["label", str(images), "--classes", "cat,dog", "--out", str(out), "--model", str(tiny_config),
                                 "--checkpoint", str(ckpt), "--no-progress", "--workers", "0", "--short-side", "32",
                                 "--templates", "simple"])
    assert result.exit_code == 0, result.output
    assert " ".join(result.output.split()).count("is not writable") == 1
    assert len(manifest_lines(out)) == len(SIZES)


def test_naclip_with_pamr_end_to_end(images, tmp_path, tiny_config):
    """`label --method naclip --pamr` labels every image at its own size and records the settings."""
    out = tmp_path / "out"
    result = run_label(images, out, tiny_config, "--classes", "a", "b", "--method", "naclip", "--pamr",
                       "--pamr-iterations", "3", "--pamr-dilations", "1,2")
    assert result.exit_code == 0, result.output
    inference = json.loads((out / "classes.json").read_text())["settings"]["inference"]
    assert inference["method"] == "naclip" and inference["pamr"] and inference["pamr_dilations"] == [1, 2]
    for rel, (w, h) in SIZES.items():
        stem = rel.rsplit(".", 1)[0]
        assert Image.open(out / "labels" / f"{stem}.png").size == (w, h)
    bad = run_label(images, tmp_path / "o2", tiny_config, "--classes", "a", "--pamr", "--pamr-dilations", "8,x")
    assert bad.exit_code == 2 and "--pamr-dilations" in bad.output


def test_classes_file_synonyms(images, tmp_path, tiny_config):
    """A classes-file line with ', ' is one class with synonyms, named by its first word."""
    names = tmp_path / "names.txt"
    names.write_text("person, person in shirt, person in jeans\ncat\n")
    out = tmp_path / "out"
    result = run_label(images, out, tiny_config, "--classes-file", str(names))
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "classes.json").read_text())
    assert [c["name"] for c in doc["classes"]] == ["person", "cat"]
    assert doc["settings"]["synonyms"] == {"person": ["person", "person in shirt", "person in jeans"]}


def test_classes_file_with_bom_names_its_first_class_without_it(images, tmp_path, tiny_config):
    """A classes file saved with a UTF-8 byte-order mark (Notepad): the mark is not part of the first name."""
    names = tmp_path / "names.txt"
    names.write_bytes("\ufeffcat\ndog\n".encode("utf-8"))
    out = tmp_path / "out"
    result = run_label(images, out, tiny_config, "--classes-file", str(names))
    assert result.exit_code == 0, result.output
    assert [c["name"] for c in json.loads((out / "classes.json").read_text())["classes"]] == ["cat", "dog"]


def test_classes_differing_only_in_case_refused(images, tmp_path, tiny_config):
    """`--classes red,Red`: CLIP's tokenizer lowercases, so they would be one class under two ids."""
    result = run_label(images, tmp_path / "out", tiny_config, "--classes", "red,Red")
    assert result.exit_code == 2 and "Duplicate class names: Red, red" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, says", [
    (["--actors", "2"], "--actors needs --engine ray."),
    (["--gpus-per-actor", "1", "--ray-address", "auto"], "--ray-address / --gpus-per-actor need --engine ray."),
    (["--max-failures", "3"], "--max-failures needs --engine ray."),
])
def test_ray_options_with_the_local_engine(images, tmp_path, tiny_config, extra, says):
    """`label --actors 2` (engine local by default) labelled on one process, the option silently ignored."""
    result = run_label(images, tmp_path / "out", tiny_config, "--classes", "cat,dog", *extra)
    assert result.exit_code == 2 and says in result.output and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "out").exists()


def test_object_store_url_with_the_local_engine(tmp_path, tiny_config):
    result = run_label("s3://bucket/photos", tmp_path / "out", tiny_config, "--classes", "cat,dog")
    assert result.exit_code == 2 and "object-store URLs need --engine ray" in result.output, result.output
    assert not (tmp_path / "out").exists()
