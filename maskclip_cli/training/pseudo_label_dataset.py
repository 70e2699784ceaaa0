"""The training set of MaskCLIP+: images paired with the pseudo labels ``maskclip label`` wrote.

``--images DIR/<rel>.<ext>`` pairs with its label map and confidence map in the label folder
(found through formats.label_folder; online training reads images only), and in zero-shot mode with ``GT_DIR/<rel>.png``. Samples are addressed by ``(index, seed)`` keys that
:func:`batch_keys` derives from (run seed, iteration), so which images and which crops a step
sees depend on nothing but its iteration number: that is what makes ``--resume`` exact.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler, default_collate
from torchvision.transforms.v2 import functional as TF

from ..core._worker_items import load_item
from ..core.constants import IGNORE_INDEX
from ..core.errors import MaskCLIPError
from ..formats.image_files import find_images, output_stems
from ..formats.images import read_rgb
from ..formats.label_files import read_label_png
from ..formats.label_folder import LabelFolder, read_confidence
from .augment import AugmentConfig, augment
from .zero_shot import mask_unseen


@dataclass
class Sample:
    image: Path
    label: Path | None  # None online: the labels are made on the crop
    confidence: Path | None
    gt: Path | None


def find_samples(images: Path, labels: LabelFolder | None, gt: Path | None = None) -> tuple[list[Sample], int]:
    """Images that have a label map (and ground truth, when ``gt`` is given), plus how many
    images had no label map (failed or not yet labelled; the caller warns). With ``labels`` None
    (online labelling) every image is a sample."""
    rels = find_images(images)
    if not rels:
        raise MaskCLIPError(f"No images found in {images}.")
    stems = output_stems(rels)
    samples, unlabelled = [], 0
    for rel in rels:
        label = labels.label_path(stems[rel]) if labels is not None else None
        if label is not None and not label.is_file():
            unlabelled += 1
            continue
        gt_file = None
        if gt is not None:
            gt_file = gt / f"{stems[rel]}.png"
            if not gt_file.is_file():
                raise MaskCLIPError(f"Ground-truth label map missing for {rel}: expected {gt_file}.")
        samples.append(Sample(images / rel, label, labels.find_confidence(stems[rel]) if labels else None, gt_file))
    if not samples:
        raise MaskCLIPError(f"No image in {images} has a label map in {labels.label_path('').parent}.")
    return samples, unlabelled


def _at_size(values: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """``values`` (H, W) resized nearest-neighbour to the image's (W, H) ``size``, if they differ."""
    if values.shape[::-1] != size:
        values = np.asarray(Image.fromarray(values).resize(size, Image.NEAREST))
    return torch.from_numpy(np.array(values))


def read_map(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """(H, W) uint8 map of a PNG (palette indices or grey values), at the image's (W, H) ``size``."""
    return _at_size(read_label_png(path).astype(np.uint8), size)


class PseudoLabelDataset(Dataset):
    """``dataset[(index, seed)]`` -> augmented image (3, S, S), pseudo labels, ground truth and
    ``valid`` (0 on the image, ignore on crop padding) maps (S, S).

    Ground truth is all-ignore in annotation-free mode; in zero-shot mode its unseen-class pixels
    are masked at load time. Pseudo labels below ``min_confidence`` become ignore.
    """

    def __init__(self, samples: list[Sample], n_classes: int, aug: AugmentConfig, min_confidence: float = 0.0, unseen: list[int] | None = None,
                 exif: bool = True):
        self.samples, self.n_classes, self.aug = samples, n_classes, aug
        self.exif = exif  # decode images as the labels were made (formats.images)
        self.min_confidence = min_confidence
        self.unseen = torch.tensor(unseen or [], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unaugmented uint8 image (3, H, W), pseudo labels and ground truth (H, W)."""
        s = self.samples[index]
        image = TF.pil_to_tensor(read_rgb(s.image, self.exif).image)
        size = (image.shape[2], image.shape[1])
        if s.label is None:
            pseudo = torch.full((size[1], size[0]), IGNORE_INDEX, dtype=torch.uint8)
        else:
            pseudo = read_map(s.label, size)
            self._check_ids(pseudo, s.label)
        if s.confidence is not None and self.min_confidence > 0:  # either stored format (PNG or npy)
            pseudo[_at_size(read_confidence(s.confidence), size) < self.min_confidence] = IGNORE_INDEX
        gt = torch.full_like(pseudo, IGNORE_INDEX)
        if s.gt is not None:
            gt = read_map(s.gt, size)
            self._check_ids(gt, s.gt)
            gt = mask_unseen(gt, self.unseen)
        return image, pseudo, gt

    def _check_ids(self, values: torch.Tensor, path: Path) -> None:
        """Pseudo labels and ground truth alike: every value a class id of classes.json or ignore."""
        bad = (values >= self.n_classes) & (values != IGNORE_INDEX)
        if bad.any():
            raise MaskCLIPError(f"{path} holds class id {int(values[bad].max())}, beyond the {self.n_classes} classes of classes.json.")

    def __getitem__(self, key: tuple[int, int]) -> dict:
        """The augmented sample, or ``{"error": message}`` for a bad file: raised in a loader worker,
        the error would reach the user wrapped in the worker's traceback (see :func:`collate`)."""
        index, seed = key
        return load_item(lambda: self._augmented(index, seed), f"{self.samples[index].image} or its label maps")

    def _augmented(self, index: int, seed: int) -> dict:
        image, pseudo, gt = self.load(index)
        g = torch.Generator().manual_seed(seed)
        x, maps = augment(image, torch.stack([pseudo, gt, torch.zeros_like(pseudo)]), self.aug, g)
        return {"image": x, "pseudo": maps[0], "gt": maps[1], "valid": maps[2]}


def collate(items: list[dict]) -> dict:
    """A batch of :class:`PseudoLabelDataset` items, or the first item's ``{"error": message}``."""
    errors = [it for it in items if "error" in it]
    return errors[0] if errors else default_collate(items)


@functools.lru_cache(maxsize=4)
def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def batch_keys(n: int, batch: int, seed: int, iteration: int, rank: int = 0, world: int = 1) -> list[tuple[int, int]]:
    """Sample keys of one process's share of one iteration: the global sample counter walks a fresh
    permutation of the data per epoch; each sample's augmentation seed derives from the counter."""
    keys = []
    for j in range(batch):
        k = (iteration * world + rank) * batch + j
        epoch, pos = divmod(k, n)
        keys.append((int(_epoch_order(n, seed, epoch)[pos]), (seed * 0x9E3779B1 + k) % (1 << 62)))
    return keys


class IterationBatches(Sampler):
    """Batch sampler over iterations ``start``..``stop`` - 1 (see :func:`batch_keys`)."""

    def __init__(self, n: int, batch: int, seed: int, start: int, stop: int, rank: int = 0, world: int = 1):
        self.args = (n, batch, seed)
        self.start, self.stop, self.rank, self.world = start, stop, rank, world

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __iter__(self):
        for it in range(self.start, self.stop):
            yield batch_keys(*self.args, it, self.rank, self.world)
