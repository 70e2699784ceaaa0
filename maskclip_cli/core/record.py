"""The record of how a label folder was made: one typed, versioned value for every command.

``label`` writes it into ``classes.json`` (key ``settings``) and ``train`` into checkpoints; ``train``,
``eval``, ``export`` and ``report`` read it back with :meth:`LabelRecord.from_dict`, which also reads
the flat settings dicts written by maskclip 0.1.0. Equal records mean reusable outputs: resume
compares them and :func:`record_hash` keys the manifest.

The record holds plain values only (no torch), so reading a label folder never loads a model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

RECORD_VERSION = 2

#: WeightsSource kinds. "tag": an open_clip pretrained tag; "checkpoint": a local file; "random":
#: ``--pretrained none``; "bundled": weights that come with an hf-hub:/local-dir: model id;
#: "in-memory": a model built in Python (cannot be reloaded from the record).
WEIGHT_KINDS = ("tag", "checkpoint", "random", "bundled", "in-memory")


@dataclass(frozen=True)
class WeightsSource:
    """Where CLIP's weights came from: enough to load them again, and a short stable label."""

    kind: str  # one of WEIGHT_KINDS
    tag: str | None = None  # the open_clip pretrained tag, for kind "tag"
    path: str | None = None  # the checkpoint file as given, for kind "checkpoint"
    sha256: str | None = None  # the checkpoint file's sha256 (whole hex digest or its 16-char prefix)

    def __post_init__(self) -> None:
        if self.kind not in WEIGHT_KINDS:
            raise ValueError(f"weights kind must be one of {', '.join(WEIGHT_KINDS)}, not {self.kind!r}")

    @property
    def label(self) -> str:
        """Short identity (``openai``, ``checkpoint:<sha256[:16]>``, ``none``...): keys caches."""
        if self.kind == "tag":
            return str(self.tag)
        if self.kind == "checkpoint":
            return f"checkpoint:{(self.sha256 or '')[:16]}"
        return {"random": "none"}.get(self.kind, self.kind)

    @classmethod
    def from_legacy(cls, weights: str, checkpoint: str | None = None) -> WeightsSource:
        """0.1.0 wrote one string for every case (and sometimes the checkpoint path beside it)."""
        if weights.startswith("checkpoint:"):
            return cls("checkpoint", path=checkpoint, sha256=weights.split(":", 1)[1])
        if weights in ("none", "in-memory", "bundled"):
            return cls({"none": "random"}.get(weights, weights))
        return cls("tag", tag=weights)

    @classmethod
    def from_dict(cls, data: dict) -> WeightsSource:
        return cls(**{k: data.get(k) for k in ("kind", "tag", "path", "sha256")})


@dataclass(frozen=True)
class ClipSource:
    """Which CLIP: the architecture (an open_clip name, hf-hub:/local-dir: id, or a model-config
    .json path), its weights, and the activation it was built with (``quick_gelu``: QuickGELU or
    GELU in the transformer MLPs; ``None`` in records of 0.1.0, which did not say)."""

    model: str
    weights: WeightsSource
    quick_gelu: bool | None = None

    @property
    def identity(self) -> str:
        return f"{self.model}@{self.weights.label}"

    def to_dict(self) -> dict:
        return {"model": self.model, "weights": asdict(self.weights), "quick_gelu": self.quick_gelu}

    @classmethod
    def from_dict(cls, data: dict) -> ClipSource:
        weights = data.get("weights") or "in-memory"
        source = (WeightsSource.from_legacy(weights, data.get("checkpoint")) if isinstance(weights, str)
                  else WeightsSource.from_dict(weights))
        quick_gelu = data.get("quick_gelu")
        return cls(str(data.get("model") or ""), source, None if quick_gelu is None else bool(quick_gelu))


@dataclass(frozen=True)
class BackboneSource:
    """A frozen backbone run beside CLIP (ProxyCLIP's proxy, Trident's SAM): its timm name with tag
    and where its weights came from."""

    model: str
    weights: WeightsSource

    def to_dict(self) -> dict:
        return {"model": self.model, "weights": asdict(self.weights)}

    @classmethod
    def from_dict(cls, data: dict) -> BackboneSource:
        return cls(str(data.get("model") or ""), WeightsSource.from_dict(data.get("weights") or {"kind": "in-memory"}))


@dataclass(frozen=True)
class TrainedNetwork:
    """The MaskCLIP+ network that made labels (``label --segmenter``)."""

    checkpoint: str  # the file as given
    sha256: str  # its sha256 prefix
    backbone: str
    iteration: int
    short_side: int


@dataclass
class LabelRecord:
    """How a label folder was made.

    ``inference`` holds :class:`~maskclip_cli.engine.maskclip.MaskCLIPConfig`'s fields as plain values
    (method, templates, background words, key smoothing, ...): the engine owns their defaults.
    """

    classes: list[str]  # class names by id (id 0 is "background" when background words were merged)
    clip: ClipSource | None  # the CLIP that scored the classes (None: unknown, e.g. 0.1.0 in-memory)
    segmenter: str = "maskclip"  # "maskclip", or "maskclip+" for a trained network
    inference: dict[str, Any] = field(default_factory=dict)
    synonyms: dict[str, list[str]] = field(default_factory=dict)  # extra words scored for a class (max)
    network: TrainedNetwork | None = None  # set when segmenter == "maskclip+"
    min_confidence: float | None = None  # pixels below it were written as the ignore index
    confidence_format: str = "png"  # png | npy: how confidence/ maps are stored
    exif: bool = True  # images were decoded with their EXIF orientation applied (formats.images)
    backbones: dict[str, BackboneSource] = field(default_factory=dict)  # "proxy", "sam": only for methods that use them
    version: int = RECORD_VERSION

    @property
    def background(self) -> list[str]:
        return list(self.inference.get("background") or [])

    @property
    def templates(self) -> str:
        return str(self.inference.get("templates", "vild"))

    def to_dict(self) -> dict:
        """JSON values; ``backbones`` only when a method used some (records of other methods, and their
        hashes, are as before)."""
        backbones = {"backbones": {k: v.to_dict() for k, v in self.backbones.items()}} if self.backbones else {}
        return {
            "record_version": self.version,
            "segmenter": self.segmenter,
            "clip": self.clip.to_dict() if self.clip else None,
            "classes": list(self.classes),
            "synonyms": {k: list(v) for k, v in self.synonyms.items()},
            "inference": dict(self.inference),
            "network": asdict(self.network) if self.network else None,
            "min_confidence": self.min_confidence,
            "confidence_format": self.confidence_format,
            "exif": self.exif,
            **backbones,
        }

    @classmethod
    def from_dict(cls, data: dict) -> LabelRecord:
        """Read a record written by any version (0.1.0's flat settings included)."""
        if not isinstance(data, dict):
            raise ValueError("the settings record must be a JSON object")
        if "record_version" not in data:
            return _from_v1(data)
        if data["record_version"] > RECORD_VERSION:
            raise ValueError(f"record version {data['record_version']} is newer than this maskclip reads ({RECORD_VERSION}); upgrade maskclip")
        network = data.get("network")
        return cls(
            classes=[str(c) for c in data.get("classes", [])],
            clip=ClipSource.from_dict(data["clip"]) if data.get("clip") else None,
            segmenter=str(data.get("segmenter", "maskclip")),
            inference=dict(data.get("inference") or {}),
            synonyms={str(k): [str(w) for w in v] for k, v in (data.get("synonyms") or {}).items()},
            network=TrainedNetwork(**{f.name: network[f.name] for f in fields(TrainedNetwork)}) if network else None,
            min_confidence=data.get("min_confidence"),
            confidence_format=str(data.get("confidence_format", "png")),
            exif=bool(data.get("exif", False)),  # records without the key were made ignoring EXIF
            backbones={str(k): BackboneSource.from_dict(v) for k, v in (data.get("backbones") or {}).items()},
        )


_V1_INFERENCE = ("templates", "background", "key_smoothing", "prompt_denoising", "denoise_threshold",
                 "short_side", "window", "stride", "baseline")


def _from_v1(data: dict) -> LabelRecord:
    """maskclip 0.1.0: one flat dict; a trained network nested its CLIP under ``clip``."""
    if data.get("segmenter") == "maskclip+":
        clip = data.get("clip") or {}
        path, _, sha = str(data.get("checkpoint") or "").rpartition("@")
        network = TrainedNetwork(path, sha, str(data.get("backbone", "")), int(data.get("iteration", 0)),
                                 int(data.get("short_side", 0)))
        inference = {k: clip[k] for k in ("templates", "background") if k in clip}
        return LabelRecord(classes=list(data.get("classes", [])), clip=ClipSource.from_dict(clip) if clip else None,
                           segmenter="maskclip+", inference=inference, network=network,
                           min_confidence=data.get("min_confidence"),
                           confidence_format=data.get("confidence_format", "png"), exif=False)
    return LabelRecord(
        classes=list(data.get("classes", [])),
        clip=ClipSource.from_dict(data) if data.get("model") else None,
        inference={k: data[k] for k in _V1_INFERENCE if k in data},
        min_confidence=data.get("min_confidence"),
        confidence_format=data.get("confidence_format", "png"),
        exif=False,  # 0.1.0 ignored EXIF orientation
    )


def record_hash(record: LabelRecord) -> str:
    """Short stable hash of a record: the manifest's ``settings`` tag for resume."""
    return hashlib.sha256(json.dumps(record.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
