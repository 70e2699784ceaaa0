"""Self-training (paper §3.4): after MaskCLIP-guided learning saturates, the network's own
predictions on the training crop replace MaskCLIP's pseudo labels.

As in the authors' ``MaskClipPlusHead.assign_label``, the labels are the argmax of the network's
(detached) logits (the training pass's own with ``--self-train-ema 0``, else the mean teacher's
below), upsampled bilinearly to the crop; in zero-shot mode the
argmax runs over the unseen classes only, and the seen classes keep their ground truth
(:func:`.zero_shot.merge_targets`). The restriction is applied after the bilinear upsampling:
before 0.3.0 the seen classes were set to -inf first, and the upsampling's zero weights at the crop
border made those pixels NaN, labelled background (a seen class) and so left unlabelled.

Annotation-free self-training (no ground truth; the paper never uses it there) has nothing that
anchors it: every pixel's target is the network's own argmax, a positive-feedback loop in which
the class the network over-predicts takes more pixels each step. On the synthetic world the
guided network inherits MaskCLIP's bias (MaskCLIP calls 38 % of the background "green"), and within
~30 iterations every pixel is green (issue 19: 35.7 -> 0.8 mIoU). One safeguard, on by default,
is confidence-based pseudo-label selection (Lee 2013, "Pseudo-Label"; Sohn et al. 2020,
"FixMatch": only predictions above a fixed confidence become targets) with MaskCLIP's label kept
everywhere else, so the annotator keeps anchoring the pixels the network is unsure of
(:func:`anchored`). Alone it does not stop the collapse of a briefly guided network, whose
confidence passes any fixed anchor everywhere within ~30 iterations (training loss ~1e-5).

Two established safeguards, on by default, address that (benchmarks/self_training.py, README):

- a mean teacher (Tarvainen & Valpola 2017; the EMA teacher of DACS, Tranheden et al. 2021, and
  DAFormer, Hoyer et al. 2022): the labels come from an exponential moving average of the network,
  in eval mode, started from the network at the switch (:class:`MeanTeacher`), not from the
  training pass that the loss then reinforces. Deliberate differences from DAFormer: the teacher
  starts at the switch (before it the labels are MaskCLIP's), its batch-norm statistics are the
  student's, and the default decay is 0.99, not 0.999, for schedules of hundreds of iterations;
- class-balanced selection (CBST, Zou et al. ECCV 2018): per class, only the most confident
  ``portion`` of the pixels the teacher gives that class become its targets (:func:`class_thresholds`),
  a rank and not a fixed confidence, so an overconfident network cannot select everything and no
  class can take over. Deliberate differences from CBST: the thresholds are computed per batch, not
  per round over the whole data set, with a fixed portion (default 0.2, CBST's first round; CBST
  grows it to 0.5); the unselected pixels keep MaskCLIP's label where the anchor is on (the
  default, zero-shot too, where the paper has none), are ignored without one (as CBST).

Measured: annotation-free they stop the collapse and keep self-training level with guided learning,
not above it; zero-shot, self-training from a network trained from random weights for a few dozen
iterations stays below guided learning, as it is a worse labeller than MaskCLIP.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..core.constants import IGNORE_INDEX


@torch.no_grad()
def self_labels(logits: torch.Tensor, size: tuple[int, int], unseen: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, confidence), each (B, H, W) at ``size``, from the network's (B, C, h, w) ``logits``.
    With ``unseen`` the argmax and the softmax run over those classes only (the reference's
    ``unlabeled_cats``): they are what the unlabelled pixels are for."""
    logits = F.interpolate(logits.detach().float(), size=size, mode="bilinear", align_corners=False)
    if unseen is not None:  # after the upsampling: bilinear weights of 0 times -inf are NaN (issue 19)
        keep = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
        keep[unseen.to(logits.device)] = True
        logits = logits.masked_fill(~keep[None, :, None, None], -torch.inf)
    confidence, labels = logits.softmax(dim=1).max(dim=1)
    return labels, confidence


def anchored(own: torch.Tensor, confidence: torch.Tensor, guide: torch.Tensor, anchor: float) -> torch.Tensor:
    """The network's label where its ``confidence`` is at least ``anchor``, MaskCLIP's ``guide``
    label (or ignore, where MaskCLIP gave none) everywhere else."""
    return torch.where(confidence >= anchor, own, guide)


def thresholded(labels: torch.Tensor, confidence: torch.Tensor, threshold: float) -> torch.Tensor:
    """``labels`` with ignore where ``confidence`` is below ``threshold``."""
    return labels.masked_fill(confidence < threshold, IGNORE_INDEX)


@torch.no_grad()
def class_thresholds(labels: torch.Tensor, confidence: torch.Tensor, portion: float, num_classes: int) -> torch.Tensor:
    """(num_classes,) CBST thresholds: for each class, the confidence above which lie the top
    ``portion`` of the pixels labelled with it (linear-interpolated quantile); 0 for a class no
    pixel has. Ignored pixels are left out."""
    out = torch.zeros(num_classes, device=confidence.device)
    for c in labels.unique():
        if c != IGNORE_INDEX:
            out[c] = torch.quantile(confidence[labels == c].float(), 1 - portion)
    return out


def balanced(labels: torch.Tensor, confidence: torch.Tensor, portion: float, num_classes: int,
             fallback: torch.Tensor | None) -> torch.Tensor:
    """``labels`` where the pixel is among the most confident ``portion`` of its class
    (:func:`class_thresholds`); elsewhere ``fallback`` (MaskCLIP's label) or, without one, ignore."""
    keep = confidence >= class_thresholds(labels, confidence, portion, num_classes)[labels.clamp(max=num_classes - 1)]
    keep &= labels != IGNORE_INDEX
    return torch.where(keep, labels, IGNORE_INDEX if fallback is None else fallback)


class MeanTeacher:
    """An exponential moving average of a network (Tarvainen & Valpola 2017), in eval mode:
    after each step each parameter becomes ``decay * teacher + (1 - decay) * student``; buffers
    (batch-norm statistics) are the student's."""

    def __init__(self, student: torch.nn.Module, decay: float, state: dict | None = None):
        self.decay = decay
        self.model = copy.deepcopy(student).eval().requires_grad_(False)
        if state is not None:
            self.model.load_state_dict(state)

    @torch.no_grad()
    def update(self, student: torch.nn.Module) -> None:
        for t, s in zip(self.model.parameters(), student.parameters()):
            t.lerp_(s.detach(), 1 - self.decay)
        for t, s in zip(self.model.buffers(), student.buffers()):
            t.copy_(s)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
