"""`maskclip label --method proxyclip | trident` end to end (issue 18): a small CLIP ViT/16 saved as a
checkpoint, timm DINO (and SAM) cut to 3 blocks and saved as state dicts (``--proxy-checkpoint``) or
put in an offline Hugging Face cache; label maps against the authors' formulas in proxy_reference.py."""

from __future__ import annotations

import json

import numpy as np
import open_clip
import pytest
import safetensors.torch
import timm
import torch
import torch.nn.functional as F
from conftest import TEXT_CFG, hub_cache
from PIL import Image
from proxy_reference import CLIP_NORM, IMAGENET, normalise, reference, trident_reference
from typer.testing import CliRunner

from maskclip_cli.cli import app
from maskclip_cli.clip.loading import from_model
from maskclip_cli.clip.templates import get_templates
from maskclip_cli.clip.text_embeddings import class_embeddings

runner = CliRunner()
CLIP_CFG = {"embed_dim": 64, "vision_cfg": {"image_size": 224, "patch_size": 16, "width": 128, "layers": 3, "head_width": 32}, "text_cfg": TEXT_CFG}
DINO8, DINO16, SAM = "vit_small_patch8_224.dino", "vit_base_patch16_224.dino", "samvit_base_patch16.sa1b"
SMALL = {DINO8: {"depth": 3}, DINO16: {"depth": 3}, SAM: {"depth": 3, "img_size": 256, "global_attn_indexes": [1, 2]}}
CLASSES = ["cat", "dog", "tree"]


@pytest.fixture(scope="module")
def timm_small():
    """timm builds these models cut to 3 blocks (SAM at 256 px) so the CLI runs them fast; returns
    timm's own ``create_model``."""
    create = timm.create_model

    def small(name, *args, **kwargs):
        return create(name, *args, **{**SMALL.get(name, {}), **kwargs})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(timm, "create_model", small)
        yield create


@pytest.fixture(scope="module")
def setup(tmp_path_factory, timm_small):
    """Images (sides multiples of 16, so the CLI does not resize them), CLIP's config and checkpoint,
    and the proxies' state dicts; the same models in float64 for the reference."""
    tmp_path = tmp_path_factory.mktemp("proxy-cli")
    torch.manual_seed(0)
    clip = open_clip.CLIP(**CLIP_CFG).eval()
    (tmp_path / "clip.json").write_text(json.dumps(CLIP_CFG))
    torch.save(clip.state_dict(), tmp_path / "clip.pt")
    models = {"clip": clip}
    for name in SMALL:
        model = timm_small(name, pretrained=False, **SMALL[name], **({} if name == SAM else {"dynamic_img_size": True})).eval()
        if name == SAM:  # SAM's relative positions start at zero: give them values so they count
            with torch.no_grad():
                for blk in model.blocks:
                    blk.attn.rel_pos_h.normal_(std=0.5), blk.attn.rel_pos_w.normal_(std=0.5)
        safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / f"{name}.safetensors")
        models[name] = model
    rng = np.random.default_rng(0)
    for sub, sizes in {"small": {"a.png": (64, 48), "b.png": (48, 80)}, "large": {"c.png": (160, 128)}}.items():
        (tmp_path / sub).mkdir()
        for file, (w, h) in sizes.items():
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / sub / file)
    return tmp_path, models


def label(root, images: str, out: str, *extra: str):
    return runner.invoke(app, ["label", str(root / images), "--out", str(root / out), "--classes", ",".join(CLASSES),
                               "--model", str(root / "clip.json"), "--checkpoint", str(root / "clip.pt"), "--templates", "simple",
                               "--no-progress", "--workers", "0", *extra])


def expected_labels(clip, features: torch.Tensor, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and the top-2 margin from dense features (1, D, h, w): cosines to the class
    embeddings, softmax(100 x cosine), bilinear upsampling, arg-max."""
    text = class_embeddings(from_model(clip, "small"), CLASSES, get_templates("simple")).double()
    probs = (100 * torch.einsum("bdhw,cd->bchw", F.normalize(features, dim=1), text)).softmax(dim=1)
    up = F.interpolate(probs, size=size, mode="bilinear", align_corners=False)[0]
    top2 = up.topk(2, dim=0).values
    return up.argmax(0).numpy(), (top2[0] - top2[1]).numpy()


def pixels_of(path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].double() / 255


def assert_agrees(out, image, want: tuple[np.ndarray, np.ndarray]) -> None:
    got = np.asarray(Image.open(out / "labels" / image))
    labels, margin = want
    assert got.shape == labels.shape and len(np.unique(labels)) > 1
    assert ((got == labels) | (margin < 1e-4)).all()  # float32 CLI vs float64 reference: only near-ties may differ


@torch.no_grad()
def test_proxyclip_from_a_checkpoint_and_from_the_offline_hub_cache(setup, hf_home):
    root, models = setup
    result = label(root, "small", "out", "--method", "proxyclip", "--proxy-model", DINO8, "--proxy-checkpoint",
                   str(root / f"{DINO8}.safetensors"), "--proxy-beta", "1.1", "--no-key-smoothing", "--no-prompt-denoising",
                   "--short-side", "48")
    assert result.exit_code == 0, result.output
    visual, proxy = models["clip"].visual.double(), models[DINO8].double()
    for image in ("a.png", "b.png"):
        pixels = pixels_of(root / "small" / image)
        feats = reference(visual, proxy, normalise(pixels, CLIP_NORM), normalise(pixels, IMAGENET), 1.1, 3.0)
        assert feats.shape[-2:] == (pixels.shape[-2] // 8, pixels.shape[-1] // 8)  # the proxy's grid, finer than CLIP's
        assert_agrees(root / "out", image, expected_labels(models["clip"].double(), feats, pixels.shape[-2:]))
    settings = json.loads((root / "out" / "classes.json").read_text())["settings"]
    assert settings["inference"]["method"] == "proxyclip" and settings["inference"]["proxy_beta"] == 1.1
    assert settings["backbones"]["proxy"]["model"] == DINO8 and settings["backbones"]["proxy"]["weights"]["kind"] == "checkpoint"
    assert "sam" not in settings["backbones"]

    # the same weights as timm's tag from the offline Hugging Face cache: the same labels, the tag recorded
    (root / "hub-file").mkdir()
    (root / "hub-file" / "model.safetensors").write_bytes((root / f"{DINO8}.safetensors").read_bytes())
    hub_cache(hf_home, DINO8, root / "hub-file" / "model.safetensors")
    result = label(root, "small", "hub", "--method", "proxyclip", "--proxy-model", DINO8, "--proxy-beta", "1.1",
                   "--no-key-smoothing", "--no-prompt-denoising", "--short-side", "48")
    assert result.exit_code == 0, result.output
    for image in ("a.png", "b.png"):
        assert (np.asarray(Image.open(root / "hub" / "labels" / image)) == np.asarray(Image.open(root / "out" / "labels" / image))).all()
    weights = json.loads((root / "hub" / "classes.json").read_text())["settings"]["backbones"]["proxy"]["weights"]
    assert weights["kind"] == "tag" and weights["tag"] == "dino"


@torch.no_grad()
def test_trident_matches_the_reference(setup):
    root, models = setup
    result = label(root, "large", "trident", "--method", "trident", "--proxy-model", DINO16, "--proxy-checkpoint",
                   str(root / f"{DINO16}.safetensors"), "--sam-checkpoint", str(root / f"{SAM}.safetensors"),
                   "--window", "112", "--stride", "64", "--no-key-smoothing", "--no-prompt-denoising", "--short-side", "128")
    assert result.exit_code == 0, result.output
    pixels = pixels_of(root / "large" / "c.png")
    feats, _ = trident_reference(models["clip"].visual.double(), models[DINO16].double(), models[SAM].double(), pixels,
                                 (128, 160), 112, 64)
    assert_agrees(root / "trident", "c.png", expected_labels(models["clip"].double(), feats, (128, 160)))
    settings = json.loads((root / "trident" / "classes.json").read_text())["settings"]
    assert settings["backbones"]["sam"]["model"] == SAM and settings["inference"]["sam_refine_neg_cos"] is True


def test_refinements_and_resume_with_proxyclip(setup):
    """Key smoothing, prompt denoising, PAMR, synonyms and float16 confidence run with the method
    unchanged; the same command again resumes (nothing relabelled)."""
    root, _ = setup
    (root / "classes.txt").write_text("cat, kitten\ndog\ntree\n")
    args = ("--method", "proxyclip", "--proxy-model", DINO8, "--proxy-checkpoint", str(root / f"{DINO8}.safetensors"),
            "--pamr", "--pamr-dilations", "1,2", "--confidence-format", "npy", "--short-side", "48")
    first = label(root, "small", "refined", *args)
    assert first.exit_code == 0, first.output
    conf = np.load(root / "refined" / "confidence" / "a.npy")
    assert conf.shape == (48, 64) and 0 < conf.min() <= conf.max() <= 1
    again = label(root, "small", "refined", *args)
    assert again.exit_code == 0 and "skipped" in again.output


@pytest.mark.parametrize("extra,flag", [
    (("--method", "naclip", "--proxy-beta", "1.0"), "--proxy-beta needs --method proxyclip or trident"),
    (("--method", "proxyclip", "--sam-model", SAM), "--sam-model needs --method trident"),
    (("--method", "proxyclip", "--proxy-model", "no_such_model"), "Unknown --proxy-model"),
    (("--method", "proxyclip", "--proxy-model", "resnet50.a1_in1k"), "--proxy-model 'resnet50.a1_in1k' is not a timm ViT"),
    (("--method", "proxyclip", "--proxy-model", "vit_small_patch14_reg4_dinov2.lvd142m"), "--proxy-checkpoint PATH"),
    (("--method", "trident", "--proxy-pretrained", "none", "--sam-model", DINO8), "--sam-model"),
])
def test_bad_proxy_options_are_one_line_before_any_image(setup, extra, flag):
    root, _ = setup
    result = label(root, "small", "refused", *extra)
    assert result.exit_code == 2 and flag in result.output and "Traceback" not in result.output, result.output
    assert not (root / "refused").exists()


def test_weights_that_do_not_fit_the_proxy(setup):
    root, _ = setup
    result = label(root, "small", "refused", "--method", "proxyclip", "--proxy-model", DINO8,
                   "--proxy-checkpoint", str(root / f"{DINO16}.safetensors"))
    assert result.exit_code == 2 and "--proxy-model" in result.output and not (root / "refused").exists(), result.output
