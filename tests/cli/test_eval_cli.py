"""`maskclip eval` end to end through Typer's runner: label folders against ground truth, and
benchmark mode with a tiny random CLIP built from a config file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TINY_CONFIGS
from PIL import Image
from typer.testing import CliRunner

from maskclip_cli import __version__
from maskclip_cli.cli import app
from maskclip_cli.evaluation.metrics import ConfusionMatrix

runner = CliRunner()
CLASSES = ["cat", "dog", "tree"]


def save_png(path, values, palette=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(values, dtype=np.uint8), mode="P" if palette else "L")
    if palette:
        img.putpalette([i % 256 for i in range(768)])
    img.save(path)


@pytest.fixture
def folders(tmp_path):
    """A `maskclip label`-style output (labels/ + classes.json) and a ground-truth folder."""
    rng = np.random.default_rng(0)
    out, gt = tmp_path / "out", tmp_path / "gt"
    maps = {}
    for rel in ["a", "nested/b", "nested/c"]:
        g = rng.integers(0, 3, (12, 16))
        g[0, :5] = 255
        p = np.where(rng.random(g.shape) < 0.7, np.where(g == 255, 0, g), rng.integers(0, 3, g.shape))
        p[-1, -3:] = 255  # "not sure" pixels in the prediction
        save_png(out / "labels" / f"{rel}.png", p)
        save_png(gt / f"{rel}.png", g, palette=False)
        maps[rel] = (p, g)
    save_png(out / "labels" / "only_pred.png", np.zeros((4, 4)))
    save_png(gt / "only_gt.png", np.zeros((4, 4)), palette=False)
    doc = {"classes": [{"id": i, "name": n, "color": [i, i, i]} for i, n in enumerate(CLASSES)],
           "ignore_index": 255, "settings": {}}
    (out / "classes.json").write_text(json.dumps(doc))
    return out, gt, maps


def expected_scores(maps, keys):
    cm = ConfusionMatrix(len(CLASSES))
    for k in keys:
        cm.update(*maps[k])
    return cm.scores()


def test_pred_dir_end_to_end(folders, tmp_path):
    out, gt, maps = folders
    report = tmp_path / "report.json"
    result = runner.invoke(app, ["eval", "--pred-dir", str(out), "--gt-dir", str(gt), "--json", str(report), "--skip-missing", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "mIoU" in result.output and "tree" in result.output
    doc = json.loads(report.read_text())
    want = expected_scores(maps, ["a", "nested/b", "nested/c"])
    assert doc["mIoU"] == pytest.approx(want.miou * 100, abs=1e-3)
    assert doc["aAcc"] == pytest.approx(want.aacc * 100, abs=1e-3)
    assert [c["name"] for c in doc["per_class"]] == CLASSES
    assert doc["images"] == 3
    assert doc["missing_predictions"] == ["only_gt"] and doc["extra_predictions"] == ["only_pred"]
    assert doc["settings"]["code_version"] == __version__ and doc["settings"]["mode"] == "folders"


@pytest.mark.parametrize("fmt", ["json-list", "txt"])
def test_pred_dir_class_file_formats_and_limit(folders, tmp_path, fmt):
    out, gt, maps = folders
    classes = tmp_path / ("names.json" if fmt == "json-list" else "names.txt")
    classes.write_text(json.dumps(CLASSES) if fmt == "json-list" else "# names\n" + "\n".join(CLASSES) + "\n")
    report = tmp_path / "r.json"
    result = runner.invoke(app, ["eval", "--pred-dir", str(out / "labels"), "--gt-dir", str(gt), "--classes-file", str(classes),
                                 "--limit", "1", "--json", str(report), "--no-progress"])
    assert result.exit_code == 0, result.output
    doc = json.loads(report.read_text())
    assert doc["images"] == 1
    assert doc["mIoU"] == pytest.approx(expected_scores(maps, ["a"]).miou * 100, abs=1e-3)


def test_ignore_index_option(folders, tmp_path):
    out, gt, _ = folders
    report = tmp_path / "r.json"
    result = runner.invoke(app, ["eval", "--pred-dir", str(out), "--gt-dir", str(gt), "--ignore-index", "2",
                                 "--json", str(report), "--no-progress"])
    # GT value 255 is now neither a class nor ignored: one clear error naming the file
    assert result.exit_code == 2
    assert "a.png" in result.output and "255" in result.output


@pytest.mark.parametrize("args, message", [
    ([], "either --dataset"),
    (["--pred-dir", "x"], "needs --gt-dir"),
    (["--dataset", "voc"], "needs --data-root"),
    (["--dataset", "voc", "--data-root", "nowhere"], "JPEGImages"),
    (["--dataset", "imagenet", "--data-root", "."], "Unknown dataset"),
])
def test_user_errors_are_one_line(args, message):
    result = runner.invoke(app, ["eval", *args, "--no-progress"])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_classes_file_not_utf8_is_one_line(folders, tmp_path):
    out, gt, _ = folders
    latin1 = tmp_path / "names.txt"
    latin1.write_bytes("caf\xe9\n".encode("latin-1"))
    result = runner.invoke(app, ["eval", "--pred-dir", str(out), "--gt-dir", str(gt), "--classes-file", str(latin1), "--no-progress"])
    assert result.exit_code == 2 and "Cannot read classes file" in result.output and "Traceback" not in result.output


def test_unwritable_json_is_one_line(folders, tmp_path):
    out, gt, _ = folders
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for target, message in ((tmp_path, "is a folder"), (blocker / "r.json", "Cannot write --json")):
        result = runner.invoke(app, ["eval", "--pred-dir", str(out), "--gt-dir", str(gt), "--json", str(target), "--no-progress"])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_no_matching_files(folders, tmp_path):
    out, _, _ = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["eval", "--pred-dir", str(out), "--gt-dir", str(empty), "--no-progress"])
    assert result.exit_code == 2 and "No label map" in result.output


# -- benchmark mode with a tiny random model -------------------------------------------------------

@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny-vit.json"
    path.write_text(json.dumps(TINY_CONFIGS["vit"]))
    return path


@pytest.fixture
def voc_root(tmp_path):
    root = tmp_path / "VOC2012"
    rng = np.random.default_rng(1)
    stems = ["2007_000032", "2007_000033"]
    for stem in stems:
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{stem}.jpg")
        g = rng.integers(0, 21, (30, 40))
        g[:, 0] = 255
        save_png(root / "SegmentationClass" / f"{stem}.png", g)
    (root / "ImageSets/Segmentation").mkdir(parents=True)
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(stems) + "\n")
    return root


def run_eval(tmp_path, tiny_config, *args):
    report = tmp_path / "bench.json"
    result = runner.invoke(app, ["eval", "--model", str(tiny_config), "--pretrained", "none", "--device", "cpu",
                                 "--json", str(report), "--no-progress", *args])
    assert result.exit_code == 0, result.output
    return result, json.loads(report.read_text())


def test_dataset_mode_paper_protocol(tmp_path, tiny_config, voc_root):
    result, doc = run_eval(tmp_path, tiny_config, "--dataset", "voc", "--data-root", str(voc_root),
                           "--limit", "1", "--short-side", "48", "--templates", "simple")
    assert "voc (paper protocol)" in result.output
    assert doc["images"] == 1 and len(doc["per_class"]) == 20
    gt = np.asarray(Image.open(voc_root / "SegmentationClass/2007_000032.png"))
    assert sum(c["gt_pixels"] for c in doc["per_class"]) == int(((gt != 0) & (gt != 255)).sum())  # background ignored
    s = doc["settings"]
    assert s["protocol"] == "paper" and s["dataset"] == "voc" and s["code_version"] == __version__
    seg = s["segmenter"]
    assert seg["classes"][0] == "aeroplane" and seg["inference"]["short_side"] == 48 and seg["inference"]["window"] is None
    assert seg["clip"]["weights"]["kind"] == "random" and seg["inference"]["key_smoothing"] and seg["inference"]["prompt_denoising"]


def test_dataset_mode_sclip_protocol_with_background(tmp_path, tiny_config, voc_root):
    _, doc = run_eval(tmp_path, tiny_config, "--dataset", "voc-bg", "--data-root", str(voc_root), "--protocol", "sclip",
                      "--templates", "simple", "--no-key-smoothing")
    assert doc["images"] == 2 and doc["per_class"][0]["name"] == "background"
    s = doc["settings"]
    assert s["bg_threshold"] == 0.1
    seg = s["segmenter"]
    inf = seg["inference"]
    assert (inf["window"], inf["stride"], inf["max_short_side"], inf["key_smoothing"]) == (224, 112, 336, False)
    assert "sky" in inf["background"] and seg["classes"][0] == "background"
    assert inf["logit_scale"] == 65 and inf["area_threshold"] == 0.1  # SCLIP's cfg_voc21
    assert seg["synonyms"]["person"][:2] == ["person", "person in shirt"] and len(seg["synonyms"]["television monitor"]) == 5


def test_label_output_scores_against_itself(tmp_path, tiny_config):
    """A real `maskclip label` output folder is read as is; scored against its own maps it is perfect."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(2)
    for name in ["x.jpg", "y.png"]:
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(images / name)
    out = tmp_path / "labelled"
    result = runner.invoke(app, ["label", str(images), "--out", str(out), "--model", str(tiny_config), "--pretrained", "none",
                                 "--no-progress", "--workers", "0", "--short-side", "32", "--templates", "simple",
                                 "--classes", "cat,dog"])
    assert result.exit_code == 0, result.output
    report = tmp_path / "self.json"
    result = runner.invoke(app, ["eval", "--pred-dir", str(out), "--gt-dir", str(out / "labels"), "--json", str(report), "--no-progress"])
    assert result.exit_code == 0, result.output
    doc = json.loads(report.read_text())
    assert doc["images"] == 2 and doc["aAcc"] == 100.0
    assert [c["name"] for c in doc["per_class"]] == ["cat", "dog"]


def test_trained_segmenter_option(tmp_path, voc_root, monkeypatch):
    """--segmenter evaluates a loaded Segmenter (here a tiny MaskCLIP standing in for a checkpoint)."""
    from conftest import make_tiny_clip

    from maskclip_cli.engine.maskclip import MaskCLIP, MaskCLIPConfig
    from maskclip_cli.evaluation.datasets import class_names, get_spec
    from maskclip_cli.training import trained_segmenter

    names = class_names(get_spec("voc"))
    (tmp_path / "ckpt.pt").write_bytes(b"stand-in")
    loaded = []
    monkeypatch.setattr(trained_segmenter, "load_segmenter", lambda path, device: loaded.append(path) or MaskCLIP(
        make_tiny_clip(), names, MaskCLIPConfig(templates="simple", short_side=32)))
    report = tmp_path / "seg.json"
    result = runner.invoke(app, ["eval", "--dataset", "voc", "--data-root", str(voc_root), "--segmenter", str(tmp_path / "ckpt.pt"),
                                 "--device", "cpu", "--json", str(report), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert loaded == [tmp_path / "ckpt.pt"]
    doc = json.loads(report.read_text())
    assert doc["images"] == 2 and doc["settings"]["segmenter"]["classes"] == names

    monkeypatch.setattr(trained_segmenter, "load_segmenter", lambda path, device: MaskCLIP(
        make_tiny_clip(), names[:3], MaskCLIPConfig(templates="simple", short_side=32)))
    result = runner.invoke(app, ["eval", "--dataset", "voc", "--data-root", str(voc_root), "--segmenter", str(tmp_path / "ckpt.pt"),
                                 "--no-progress"])
    assert result.exit_code == 2 and "other classes" in result.output
    result = runner.invoke(app, ["eval", "--dataset", "voc", "--data-root", str(voc_root), "--segmenter", "missing.pt", "--no-progress"])
    assert result.exit_code == 2 and "not found" in result.output


def test_label_folder_classes_json_found_from_labels_dir(folders):
    out, gt, _ = folders
    result = runner.invoke(app, ["eval", "--pred-dir", str(out / "labels"), "--gt-dir", str(gt), "--no-progress"])
    assert result.exit_code == 0, result.output
    (out / "classes.json").unlink()
    result = runner.invoke(app, ["eval", "--pred-dir", str(out / "labels"), "--gt-dir", str(gt), "--no-progress"])
    assert result.exit_code == 2 and "--classes-file" in result.output


def test_bg_threshold_needs_a_background_class(voc_root, tiny_config):
    result = runner.invoke(app, ["eval", "--dataset", "voc", "--data-root", str(voc_root), "--bg-threshold", "0.2",
                                 "--model", str(tiny_config), "--pretrained", "none", "--no-progress"])
    assert result.exit_code == 2 and "background class" in result.output


@pytest.mark.parametrize("workers", ["0", "2"])
def test_bad_dataset_image_is_one_clear_error(tmp_path, tiny_config, voc_root, workers):
    """A corrupt image, or one whose size differs from its label map, stops eval with one line
    (also when it was read in a DataLoader worker)."""
    (voc_root / "JPEGImages/2007_000033.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    args = ["eval", "--model", str(tiny_config), "--pretrained", "none", "--device", "cpu", "--no-progress",
            "--dataset", "voc", "--data-root", str(voc_root), "--short-side", "48", "--templates", "simple", "--workers", workers]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "Cannot read image" in result.output and "2007_000033.jpg" in result.output
    assert "Traceback" not in result.output
    Image.new("RGB", (10, 10)).save(voc_root / "JPEGImages/2007_000033.jpg")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "label map" in result.output


def test_missing_predictions_count_as_all_wrong(folders, tmp_path):
    """By default a ground-truth map without a prediction scores every pixel as an error, so a labeller
    that failed on an image cannot score higher for it; --skip-missing (above) leaves it out."""
    out, gt, maps = folders
    report = tmp_path / "report.json"
    result = runner.invoke(app, ["eval", "--pred-dir", str(out), "--gt-dir", str(gt), "--json", str(report), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "scored as all wrong" in " ".join(result.output.split())
    maps = {**maps, "only_gt": (np.full((4, 4), 255), np.zeros((4, 4), np.int64))}
    want = expected_scores(maps, ["a", "nested/b", "nested/c", "only_gt"])
    doc = json.loads(report.read_text())
    assert doc["images"] == 4 and doc["settings"]["skip_missing"] is False
    assert doc["mIoU"] == pytest.approx(want.miou * 100, abs=1e-3) and doc["aAcc"] == pytest.approx(want.aacc * 100, abs=1e-3)
    assert doc["per_class"][0]["gt_pixels"] == int(want.gt_pixels[0])
    assert doc["aAcc"] < expected_scores(maps, ["a", "nested/b", "nested/c"]).aacc * 100


def test_reordered_classes_file_is_refused(folders, tmp_path):
    """The prediction folder's classes.json says what its ids mean: a --classes-file listing the same
    names in another order would rename every per-class row, so it is an error."""
    out, gt, _ = folders
    names = tmp_path / "names.txt"
    names.write_text("\n".join(["dog", "cat", "tree"]) + "\n")
    result = runner.invoke(app, ["eval", "--pred-dir", str(out), "--gt-dir", str(gt), "--classes-file", str(names), "--no-progress"])
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())
    assert "disagrees with" in flat and "first difference at id 0" in flat and "Traceback" not in result.output
    names.write_text("\n".join(CLASSES) + "\n")  # the same order is fine
    result = runner.invoke(app, ["eval", "--pred-dir", str(out), "--gt-dir", str(gt), "--classes-file", str(names), "--no-progress"])
    assert result.exit_code == 0, result.output


def test_missing_pred_dir_says_so(tmp_path):
    (tmp_path / "gt").mkdir()
    result = runner.invoke(app, ["eval", "--pred-dir", str(tmp_path / "nope"), "--gt-dir", str(tmp_path / "gt"), "--no-progress"])
    assert result.exit_code == 2 and "Prediction folder not found" in result.output and "classes.json" not in result.output


def test_pascal_context_sclip_protocol_clearclip_with_shipped_synonyms(tmp_path, tiny_config):
    """`eval --dataset pascal-context --protocol sclip --method clearclip` runs with the shipped
    synonym list and SCLIP's settings, on a generated PASCAL-Context tree."""
    root = tmp_path / "VOC2010"
    rng = np.random.default_rng(2)
    stems = ["2008_000002", "2008_000003"]
    for stem in stems:
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{stem}.jpg")
        save_png(root / "SegmentationClassContext" / f"{stem}.png", rng.integers(0, 60, (30, 40)), palette=False)
    (root / "ImageSets/SegmentationContext").mkdir(parents=True)
    (root / "ImageSets/SegmentationContext/val.txt").write_text("\n".join(stems) + "\n")
    result, doc = run_eval(tmp_path, tiny_config, "--dataset", "pascal-context", "--data-root", str(root),
                           "--protocol", "sclip", "--method", "clearclip", "--templates", "simple")
    assert doc["images"] == 2 and len(doc["per_class"]) == 59
    seg = doc["settings"]["segmenter"]
    inf = seg["inference"]
    assert inf["method"] == "clearclip" and inf["logit_scale"] == 40 and inf["upsample_logits"]
    assert not inf["key_smoothing"] and not inf["prompt_denoising"] and inf["area_threshold"] is None
    assert (inf["window"], inf["stride"], inf["max_short_side"]) == (224, 112, 336)
    assert len(seg["classes"]) == 59 and seg["synonyms"] == {}  # Context 59's list has one word per class
    _, pamr_doc = run_eval(tmp_path, tiny_config, "--dataset", "pascal-context", "--data-root", str(root), "--limit", "1",
                           "--protocol", "sclip", "--method", "naclip", "--templates", "simple", "--pamr", "--logit-scale", "50")
    inf = pamr_doc["settings"]["segmenter"]["inference"]
    assert inf["pamr"] and inf["logit_scale"] == 50


def test_paper_exact_protocol(tmp_path, tiny_config, voc_root):
    """paper-exact = paper + the authors' code's differences, recorded."""
    _, doc = run_eval(tmp_path, tiny_config, "--dataset", "voc", "--data-root", str(voc_root), "--limit", "1",
                      "--protocol", "paper-exact", "--templates", "simple", "--no-key-smoothing")
    inf = doc["settings"]["segmenter"]["inference"]
    assert doc["settings"]["protocol"] == "paper-exact" and inf["authors_code"] and inf["upsample_logits"]
    assert inf["max_short_side"] == 512 and inf["window"] is None and inf["logit_scale"] == 100


@pytest.mark.parametrize("protocol", ["proxyclip", "trident"])
def test_proxy_protocols_pick_their_method_and_settings(tmp_path, tiny_config, voc_root, monkeypatch, protocol):
    """`eval --protocol proxyclip|trident` runs its method (random proxy and SAM, cut small) with the
    authors' background threshold and scale; the report names the backbones."""
    import timm

    create = timm.create_model
    small = {"samvit_base_patch16.sa1b": {"img_size": 256, "depth": 2, "global_attn_indexes": [1]}}
    monkeypatch.setattr(timm, "create_model", lambda name, *a, **k: create(name, *a, **{"depth": 1, **small.get(name, {}), **k}))
    extra = ("--sam-pretrained", "none") if protocol == "trident" else ()
    _, doc = run_eval(tmp_path, tiny_config, "--dataset", "voc-bg", "--data-root", str(voc_root), "--protocol", protocol,
                      "--templates", "simple", "--short-side", "64", "--window", "32", "--stride", "16", "--limit", "1",
                      "--proxy-model", "vit_small_patch16_224.dino", "--proxy-pretrained", "none", *extra)
    s = doc["settings"]
    inf = s["segmenter"]["inference"]
    assert s["bg_threshold"] == 0.2 and (inf["method"], inf["logit_scale"], inf["proxy_beta"]) == (protocol, 40.0, 1.2)
    assert s["segmenter"]["backbones"]["proxy"]["model"] == "vit_small_patch16_224.dino"
    assert ("sam" in s["segmenter"]["backbones"]) == (protocol == "trident")


@pytest.mark.parametrize("extra, says", [
    (["--protocol", "proxyclip"], "--protocol choose the model"),
    (["--method", "naclip"], "--method choose the model"),
    (["--protocol", "trident", "--proxy-beta", "1.5"], "--protocol / --proxy-beta choose the model"),
])
def test_pred_dir_with_model_options(folders, extra, says):
    """`eval --pred-dir ... --protocol proxyclip` scored the saved maps and printed them as if the
    protocol had been used: the model options are refused in --pred-dir mode."""
    out, gt, _ = folders
    result = runner.invoke(app, ["eval", "--pred-dir", str(out), "--gt-dir", str(gt), "--no-progress", *extra])
    assert result.exit_code == 2 and says in result.output and result.output.count("\n") == 1, result.output
