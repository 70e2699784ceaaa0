"""Transductive zero-shot targets: seen ground truth kept, unseen pixels only from pseudo labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.formats.label_files import palette, write_label_png
from maskclip_cli.formats.label_folder import LabelFolder
from maskclip_cli.training.augment import AugmentConfig
from maskclip_cli.training.pseudo_label_dataset import PseudoLabelDataset, find_samples
from maskclip_cli.training.zero_shot import check_no_unseen, mask_unseen, merge_targets

IGN = 255
UNSEEN = torch.tensor([2, 3])


def test_seen_ground_truth_kept_unseen_only_from_pseudo():
    gt = mask_unseen(torch.tensor([[0, 1, 2, 3, IGN, IGN, IGN]]), UNSEEN)
    pseudo = torch.tensor([[3, 3, 0, 1, 2, 1, IGN]])
    target = merge_targets(gt, pseudo, UNSEEN)
    # seen GT (0, 1) kept whatever the pseudo label; GT unseen pixels (2, 3) were masked, so they take
    # the pseudo label only if it is unseen; unlabelled pixels likewise; never a GT unseen id.
    assert target.tolist() == [[0, 1, IGN, IGN, 2, IGN, IGN]]


def test_annotation_free_uses_pseudo_labels():
    pseudo = torch.tensor([[0, 1, IGN]])
    assert merge_targets(torch.full_like(pseudo, IGN), pseudo, None).tolist() == pseudo.tolist()


def test_leak_check_raises():
    with pytest.raises(MaskCLIPError, match="unseen"):
        check_no_unseen(torch.tensor([[0, 3]]), UNSEEN)
    with pytest.raises(MaskCLIPError):
        merge_targets(torch.tensor([[2]]), torch.tensor([[2]]), UNSEEN)


def test_dataset_masks_unseen_ground_truth(tmp_path):
    from PIL import Image

    (tmp_path / "img").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img" / "a.png")
    gt = np.array([[0, 1, 2, 3, 255, 1, 0, 2]] * 8, np.uint8)
    pseudo = np.array([[2, 2, 2, 2, 3, 0, 1, 1]] * 8, np.uint8)
    write_label_png(tmp_path / "labels" / "labels" / "a.png", pseudo, palette(4))
    write_label_png(tmp_path / "gt" / "a.png", gt, palette(4))
    samples, _ = find_samples(tmp_path / "img", LabelFolder(tmp_path / "labels"), tmp_path / "gt")
    ds = PseudoLabelDataset(samples, 4, AugmentConfig(crop_size=8), unseen=[2, 3])
    _, p, g = ds.load(0)
    assert not torch.isin(g, UNSEEN).any()
    target = merge_targets(g.long(), p.long(), UNSEEN)
    assert target[0].tolist() == [0, 1, 2, 2, 3, 1, 0, IGN]

    write_label_png(tmp_path / "gt" / "a.png", np.full((8, 8), 7, np.uint8), palette(8))
    with pytest.raises(MaskCLIPError, match="beyond"):
        ds.load(0)
