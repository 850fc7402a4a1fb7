"""The typed observation model that flows from vision to rules to service.

One `FrameObservation` per analysed frame: the camera, the time, and a
`PersonObservation` per tracked person. Landmarks stay numpy arrays inside;
`to_dict`/`from_dict` turn a frame into one JSON line and back, so rules can be
tested on recorded observation files without running a model.

Every feature carries a confidence, and a feature the landmarks cannot support
is `unknown` (`Label.value == "unknown"`, `Measure.value is None`) instead of a
guess: a rule treats unknown as "no evidence either way".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

UNKNOWN = "unknown"

POSTURES = ("standing", "sitting", "lying")
HANDS = (
    "at_sides",
    "clasped_front",
    "clasped_behind",
    "on_hips",
    "arms_folded",
    "in_pockets",
    "at_ear",
    "at_mouth",
    "other",
)
PHONE_STATES = ("none", "in_hand", "looking", "at_ear")
HELD_OBJECTS = ("tie", "book", "cup", "bottle")


@dataclass(frozen=True)
class Label:
    """A categorical feature: a value from a fixed vocabulary, or `unknown`."""

    value: str = UNKNOWN
    confidence: float = 0.0

    @property
    def known(self) -> bool:
        return self.value != UNKNOWN

    def to_list(self) -> list[Any]:
        return [self.value, round(float(self.confidence), 3)]

    @classmethod
    def from_list(cls, data: list[Any] | None) -> Label:
        return cls() if not data else cls(str(data[0]), float(data[1]))


@dataclass(frozen=True)
class Measure:
    """A numeric feature (degrees, metres, body heights...), `None` when unknown."""

    value: float | None = None
    confidence: float = 0.0

    @property
    def known(self) -> bool:
        return self.value is not None

    def to_list(self) -> list[Any]:
        value = None if self.value is None else round(float(self.value), 3)
        return [value, round(float(self.confidence), 3)]

    @classmethod
    def from_list(cls, data: list[Any] | None) -> Measure:
        if not data or data[0] is None:
            return cls(None, float(data[1]) if data else 0.0)
        return cls(float(data[0]), float(data[1]))


@dataclass
class Features:
    """What a rule can read about one person in one frame.

    Angles are degrees. `trunk_lean_deg` is the trunk's angle from vertical
    (0 = upright). `head_pitch_deg` is positive when the head is bowed down.
    `body_yaw_deg` is the chest's direction relative to the camera (0 = facing
    it, positive = turned to the person's left, i.e. image right).
    `heel_gap` is in body heights until a floor scale turns it into metres;
    `toe_angle_deg` is the angle between the two feet.
    `objects` maps held or worn COCO objects (tie, book, cup, bottle) to a
    confidence. `legs` is `crossed`, `apart`, `together` or unknown.
    """

    posture: Label = field(default_factory=Label)
    hands: Label = field(default_factory=Label)
    phone: Label = field(default_factory=Label)
    legs: Label = field(default_factory=Label)
    objects: dict[str, float] = field(default_factory=dict)
    trunk_lean_deg: Measure = field(default_factory=Measure)
    head_pitch_deg: Measure = field(default_factory=Measure)
    body_yaw_deg: Measure = field(default_factory=Measure)
    heel_gap: Measure = field(default_factory=Measure)
    toe_angle_deg: Measure = field(default_factory=Measure)

    _LABELS = ("posture", "hands", "phone", "legs")
    _MEASURES = ("trunk_lean_deg", "head_pitch_deg", "body_yaw_deg", "heel_gap", "toe_angle_deg")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name).to_list() for name in self._LABELS}
        out.update({name: getattr(self, name).to_list() for name in self._MEASURES})
        out["objects"] = {k: round(float(v), 3) for k, v in self.objects.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Features:
        kwargs: dict[str, Any] = {n: Label.from_list(data.get(n)) for n in cls._LABELS}
        kwargs.update({n: Measure.from_list(data.get(n)) for n in cls._MEASURES})
        kwargs["objects"] = {k: float(v) for k, v in (data.get("objects") or {}).items()}
        return cls(**kwargs)


@dataclass
class Detection:
    """A non-person object the detector saw (phone, tie, cup...), in image pixels."""

    label: str
    confidence: float
    box: np.ndarray  # (4,) xyxy
    source: str = "frame"  # "frame" (full-frame pass) or "wrist" (a crop around a wrist)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "confidence": round(float(self.confidence), 3),
            "box": _round(self.box, 1),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Detection:
        return cls(data["label"], float(data["confidence"]), np.asarray(data["box"], float), data["source"])


@dataclass
class PersonObservation:
    """One tracked person in one frame.

    `keypoints` are the 33 BlazePose landmarks in image pixels (x, y),
    `keypoints_world` the same landmarks in metres around the hip centre
    (x right, y down, z toward the camera is negative), `visibility` in [0, 1].
    All three are `None` when pose was not run or found no body.
    `evidence` keeps what the phone/object calls were built from (crop
    detections, hand geometry, head pitch...) so a rule can weigh it.
    """

    track_id: int
    box: np.ndarray  # (4,) xyxy pixels
    confidence: float
    keypoints: np.ndarray | None = None  # (33, 2)
    keypoints_world: np.ndarray | None = None  # (33, 3)
    visibility: np.ndarray | None = None  # (33,)
    features: Features = field(default_factory=Features)
    held: list[Detection] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def foot_point(self) -> tuple[float, float]:
        """Where the person stands in the image: between the ankles when they are
        visible, else the bottom centre of the box. Zone membership and floor speed use this.

        Ankles below the box are believed (legs hidden behind a desk or cut by the frame
        edge: BlazePose places them), ankles in the upper half of the box are not: feet are
        the lowest part of anyone standing or sitting, and a small far person's pose that
        puts them mid-body made one frame's foot jump half a body and read as running."""
        x1, y1, x2, y2 = (float(v) for v in self.box)
        if self.keypoints is not None and self.visibility is not None:
            ankles = [27, 28]
            if all(self.visibility[i] >= 0.5 for i in ankles):
                x, y = self.keypoints[ankles].mean(axis=0)
                if y >= (y1 + y2) / 2.0:
                    return float(x), float(y)
        return (x1 + x2) / 2.0, y2

    @property
    def height_px(self) -> float:
        return float(self.box[3] - self.box[1])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "track_id": int(self.track_id),
            "box": _round(self.box, 1),
            "confidence": round(float(self.confidence), 3),
            "features": self.features.to_dict(),
        }
        if self.keypoints is not None:
            out["keypoints"] = _round(self.keypoints, 1)
            out["keypoints_world"] = _round(self.keypoints_world, 4)
            out["visibility"] = _round(self.visibility, 3)
        if self.held:
            out["held"] = [d.to_dict() for d in self.held]
        if self.evidence:
            out["evidence"] = self.evidence
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PersonObservation:
        def arr(key: str) -> np.ndarray | None:
            return None if data.get(key) is None else np.asarray(data[key], dtype=float)

        return cls(
            track_id=int(data["track_id"]),
            box=np.asarray(data["box"], dtype=float),
            confidence=float(data["confidence"]),
            keypoints=arr("keypoints"),
            keypoints_world=arr("keypoints_world"),
            visibility=arr("visibility"),
            features=Features.from_dict(data.get("features") or {}),
            held=[Detection.from_dict(d) for d in data.get("held") or []],
            evidence=dict(data.get("evidence") or {}),
        )


@dataclass
class FrameObservation:
    """Everything vision saw in one analysed frame. One JSON line on disk."""

    camera: str
    t: float  # seconds from the stream start, from the container's clock
    index: int  # frame number in the source (not the analysed-frame count)
    width: int
    height: int
    persons: list[PersonObservation] = field(default_factory=list)
    objects: list[Detection] = field(default_factory=list)

    def person(self, track_id: int) -> PersonObservation | None:
        return next((p for p in self.persons if p.track_id == track_id), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "t": round(float(self.t), 4),
            "index": int(self.index),
            "width": int(self.width),
            "height": int(self.height),
            "persons": [p.to_dict() for p in self.persons],
            "objects": [o.to_dict() for o in self.objects],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrameObservation:
        return cls(
            camera=str(data["camera"]),
            t=float(data["t"]),
            index=int(data["index"]),
            width=int(data["width"]),
            height=int(data["height"]),
            persons=[PersonObservation.from_dict(p) for p in data.get("persons") or []],
            objects=[Detection.from_dict(o) for o in data.get("objects") or []],
        )

    @classmethod
    def from_json(cls, line: str) -> FrameObservation:
        return cls.from_dict(json.loads(line))


def read_jsonl(path: str) -> list[FrameObservation]:
    """Read an `observations.jsonl` written by `postwatch analyze --dump`."""
    with open(path, encoding="utf-8") as fh:
        return [FrameObservation.from_json(line) for line in fh if line.strip()]


def _round(a: np.ndarray | None, digits: int) -> list[Any] | None:
    return None if a is None else np.round(np.asarray(a, dtype=float), digits).tolist()
