"""Helpers to build observation sequences for rule tests without running a model.

Why: the rules read `PersonObservation`s; building them by hand (features as labels and
measures, a simple skeleton when a rule needs landmarks) makes each test say exactly
which feature drives the rule. Sequences follow the convention of test_temporal.py:
a pattern string, one character a frame at `fps`:

    T  the "on" person (breaking the clause)      F  the "off" person (keeping it)
    ?  the "unknown" person (features unknown)   .  no person in this frame (time passes)

    frames = sequence("TTTT..TTTT", on=person(hands="on_hips"), off=person(hands="clasped_front"))
    violations = run_rules(frames, overrides=ZERO_SUSTAIN)

Recorded observations (JSON lines written by `postwatch analyze --dump`) load with
`vision.observation.read_jsonl` and go through the same `run_engine`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rules.engine import RuleEngine, ViolationEvent
from rules.violation import Violation
from vision.observation import FrameObservation, Label, Measure, PersonObservation
from vision.pose import (
    L_ANKLE,
    L_EAR,
    L_ELBOW,
    L_EYE,
    L_FOOT,
    L_HEEL,
    L_HIP,
    L_INDEX,
    L_KNEE,
    L_MOUTH,
    L_PINKY,
    L_SHOULDER,
    L_THUMB,
    L_WRIST,
    N_LANDMARKS,
    NOSE,
    R_ANKLE,
    R_EAR,
    R_ELBOW,
    R_EYE,
    R_FOOT,
    R_HEEL,
    R_HIP,
    R_INDEX,
    R_KNEE,
    R_MOUTH,
    R_PINKY,
    R_SHOULDER,
    R_THUMB,
    R_WRIST,
)

FPS = 5.0
CONF = 0.8  # default confidence of a hand-built label or measure
DEFAULT_BOX = (200.0, 100.0, 300.0, 500.0)  # a 400 px tall person
Feature = str | Label | None
Number = float | Measure | None

# -- features and persons --------------------------------------------------------------------


def label(value: Feature, conf: float = CONF) -> Label:
    """A Label from a value ("on_hips"), an existing Label, or None (unknown)."""
    if isinstance(value, Label):
        return value
    return Label() if value is None else Label(value, conf)


def measure(value: Number, conf: float = CONF) -> Measure:
    """A Measure from a number, an existing Measure, or None (unknown)."""
    if isinstance(value, Measure):
        return value
    return Measure() if value is None else Measure(float(value), conf)


@dataclass
class Skeleton:
    """33 landmarks in image pixels, metres (hip-centred, y down, -z toward the camera) and visibility."""

    keypoints: np.ndarray
    world: np.ndarray
    visibility: np.ndarray

    def copy(self) -> Skeleton:
        return Skeleton(self.keypoints.copy(), self.world.copy(), self.visibility.copy())

    def moved(self, index: int | Sequence[int], dx: float = 0.0, dy: float = 0.0) -> Skeleton:
        """A copy with landmark(s) shifted in the image by (dx, dy) pixels."""
        out = self.copy()
        out.keypoints[np.atleast_1d(index)] += (dx, dy)
        return out

    def hidden(self, *index: int) -> Skeleton:
        """A copy with these landmarks invisible (visibility 0)."""
        out = self.copy()
        out.visibility[list(index)] = 0.0
        return out


# (x offset as a share of the box height from the centre, y share from the top) for a person
# facing the camera: their left is image right. World coordinates in metres.
_STANDING_PX = {
    NOSE: (0.0, 0.06), L_EYE: (0.01, 0.05), R_EYE: (-0.01, 0.05), L_EAR: (0.03, 0.06), R_EAR: (-0.03, 0.06),
    L_MOUTH: (0.012, 0.085), R_MOUTH: (-0.012, 0.085), L_SHOULDER: (0.1, 0.18), R_SHOULDER: (-0.1, 0.18),
    L_ELBOW: (0.11, 0.34), R_ELBOW: (-0.11, 0.34), L_WRIST: (0.11, 0.49), R_WRIST: (-0.11, 0.49),
    L_PINKY: (0.11, 0.52), R_PINKY: (-0.11, 0.52), L_INDEX: (0.11, 0.53), R_INDEX: (-0.11, 0.53),
    L_THUMB: (0.1, 0.52), R_THUMB: (-0.1, 0.52), L_HIP: (0.06, 0.5), R_HIP: (-0.06, 0.5),
    L_KNEE: (0.06, 0.72), R_KNEE: (-0.06, 0.72), L_ANKLE: (0.06, 0.93), R_ANKLE: (-0.06, 0.93),
    L_HEEL: (0.06, 0.95), R_HEEL: (-0.06, 0.95), L_FOOT: (0.08, 0.99), R_FOOT: (-0.08, 0.99),
}  # fmt: skip
_STANDING_WORLD = {
    NOSE: (0.0, -0.62, -0.1), L_EYE: (0.03, -0.65, -0.08), R_EYE: (-0.03, -0.65, -0.08),
    L_EAR: (0.07, -0.64, 0.0), R_EAR: (-0.07, -0.64, 0.0), L_MOUTH: (0.02, -0.57, -0.09),
    R_MOUTH: (-0.02, -0.57, -0.09), L_SHOULDER: (0.18, -0.5, 0.0), R_SHOULDER: (-0.18, -0.5, 0.0),
    L_ELBOW: (0.2, -0.25, 0.0), R_ELBOW: (-0.2, -0.25, 0.0), L_WRIST: (0.2, 0.0, 0.0),
    R_WRIST: (-0.2, 0.0, 0.0), L_PINKY: (0.2, 0.05, 0.0), R_PINKY: (-0.2, 0.05, 0.0),
    L_INDEX: (0.2, 0.06, 0.0), R_INDEX: (-0.2, 0.06, 0.0), L_THUMB: (0.18, 0.05, -0.02),
    R_THUMB: (-0.18, 0.05, -0.02), L_HIP: (0.1, 0.0, 0.0), R_HIP: (-0.1, 0.0, 0.0),
    L_KNEE: (0.1, 0.43, 0.0), R_KNEE: (-0.1, 0.43, 0.0), L_ANKLE: (0.1, 0.85, 0.0),
    R_ANKLE: (-0.1, 0.85, 0.0), L_HEEL: (0.1, 0.88, 0.05), R_HEEL: (-0.1, 0.88, 0.05),
    L_FOOT: (0.13, 0.9, -0.1), R_FOOT: (-0.13, 0.9, -0.1),
}  # fmt: skip
# Seated, facing the camera: thighs toward the camera (-z), shins hanging down.
_SITTING_PX = dict(_STANDING_PX) | {
    L_KNEE: (0.07, 0.55), R_KNEE: (-0.07, 0.55), L_ANKLE: (0.07, 0.78), R_ANKLE: (-0.07, 0.78),
    L_HEEL: (0.07, 0.8), R_HEEL: (-0.07, 0.8), L_FOOT: (0.09, 0.82), R_FOOT: (-0.09, 0.82),
}  # fmt: skip
_SITTING_WORLD = dict(_STANDING_WORLD) | {
    L_KNEE: (0.1, 0.02, -0.43), R_KNEE: (-0.1, 0.02, -0.43), L_ANKLE: (0.1, 0.44, -0.45),
    R_ANKLE: (-0.1, 0.44, -0.45), L_HEEL: (0.1, 0.47, -0.42), R_HEEL: (-0.1, 0.47, -0.42),
    L_FOOT: (0.12, 0.48, -0.55), R_FOOT: (-0.12, 0.48, -0.55),
}  # fmt: skip


def skeleton(pose: str = "standing", box: Sequence[float] = DEFAULT_BOX, vis: float = 0.9) -> Skeleton:
    """A plausible skeleton of a person facing the camera, standing or sitting, filling `box`."""
    px, world = (_SITTING_PX, _SITTING_WORLD) if pose == "sitting" else (_STANDING_PX, _STANDING_WORLD)
    x1, y1, x2, y2 = (float(v) for v in box)
    h, cx = y2 - y1, (x1 + x2) / 2
    kp = np.zeros((N_LANDMARKS, 2))
    w = np.zeros((N_LANDMARKS, 3))
    v = np.full(N_LANDMARKS, vis)
    for i in range(N_LANDMARKS):
        if i in px:
            kp[i] = (cx + px[i][0] * h, y1 + px[i][1] * h)
            w[i] = world[i]
        else:  # the eye corners: next to the eyes
            j = L_EYE if i < R_EYE else R_EYE
            kp[i] = (cx + px[j][0] * h, y1 + px[j][1] * h)
            w[i] = world[j]
    return Skeleton(kp, w, v)


def lean_back(sk: Skeleton, degrees: float) -> Skeleton:
    """A copy whose upper body (shoulders and head) is rotated back (away from the camera, +z) about the hips.

    Negative degrees lean forward. Only world coordinates change: a leaning trunk barely
    moves in a front view's image.
    """
    out = sk.copy()
    a = np.radians(degrees)
    upper = [i for i in range(N_LANDMARKS) if i <= R_THUMB]  # face, shoulders, arms
    y, z = out.world[upper, 1].copy(), out.world[upper, 2].copy()
    # rotate (y, z) about the hip centre: up is -y, back is +z
    out.world[upper, 1] = y * np.cos(a) + z * np.sin(a)
    out.world[upper, 2] = -y * np.sin(a) + z * np.cos(a)
    return out


def person(
    track_id: int = 1,
    *,
    posture: Feature = "standing",
    hands: Feature = "clasped_front",
    phone: Feature = "none",
    legs: Feature = "together",
    objects: Mapping[str, float] | None = None,
    lean: Number = 5.0,
    pitch: Number = 0.0,
    yaw: Number = 0.0,
    heel_gap: Number = 0.02,
    toe: Number = 60.0,
    box: Sequence[float] = DEFAULT_BOX,
    skel: Skeleton | str | None = None,
    evidence: Mapping[str, Any] | None = None,
    conf: float = CONF,
) -> PersonObservation:
    """A person whose features are given directly; the defaults keep every clause.

    `skel` is a Skeleton, a pose name ("standing"/"sitting") to build one in `box`, or
    None for no landmarks (the checks that need them then report unknown).
    """
    feats_kwargs: dict[str, Any] = {
        "posture": label(posture, conf),
        "hands": label(hands, conf),
        "phone": label(phone, conf),
        "legs": label(legs, conf),
        "objects": dict(objects or {}),
        "trunk_lean_deg": measure(lean, conf),
        "head_pitch_deg": measure(pitch, conf),
        "body_yaw_deg": measure(yaw, conf),
        "heel_gap": measure(heel_gap, conf),
        "toe_angle_deg": measure(toe, conf),
    }
    from vision.observation import Features

    sk = skeleton(skel, box) if isinstance(skel, str) else skel
    return PersonObservation(
        track_id=track_id,
        box=np.asarray(box, dtype=float),
        confidence=0.9,
        keypoints=None if sk is None else sk.keypoints,
        keypoints_world=None if sk is None else sk.world,
        visibility=None if sk is None else sk.visibility,
        features=Features(**feats_kwargs),
        evidence=dict(evidence or {}),
    )


UNKNOWN_FEATURES = {
    "posture": None,
    "hands": None,
    "phone": None,
    "legs": None,
    "lean": None,
    "pitch": None,
    "yaw": None,
    "heel_gap": None,
    "toe": None,
}


def unknown_person(track_id: int = 1, **kw: Any) -> PersonObservation:
    """A person the landmarks could not describe: every feature unknown (overridable)."""
    return person(track_id, **(UNKNOWN_FEATURES | kw))


# -- sequences -------------------------------------------------------------------------------

PersonSpec = PersonObservation | Callable[[int, float], PersonObservation | None] | None


@dataclass
class Pattern:
    """What each pattern character puts in the frame (None: no person)."""

    on: PersonSpec
    off: PersonSpec = None
    unknown: PersonSpec = None
    extra: list[PersonSpec] = field(default_factory=list)  # persons in every frame (other tracks)


def _resolve(spec: PersonSpec, i: int, t: float) -> PersonObservation | None:
    if spec is None or isinstance(spec, PersonObservation):
        return spec
    return spec(i, t)


def frame(
    t: float, persons: Iterable[PersonObservation] = (), index: int = 0, camera: str = "cam"
) -> FrameObservation:
    return FrameObservation(camera=camera, t=t, index=index, width=640, height=480, persons=list(persons))


def sequence(
    pattern: str,
    on: PersonSpec,
    off: PersonSpec = None,
    unknown: PersonSpec = None,
    *,
    fps: float = FPS,
    t0: float = 0.0,
    camera: str = "cam",
    extra: Iterable[PersonSpec] = (),
) -> list[FrameObservation]:
    """Frames at `fps` from a pattern (spaces ignored): T on, F off, ? unknown, . no person.

    A spec is a PersonObservation (the same one every frame) or a function
    (frame number, t) -> PersonObservation for people who move.
    """
    slots = {"T": on, "F": off, "?": unknown, ".": None}
    out = []
    for i, ch in enumerate(pattern.replace(" ", "")):
        t = t0 + i / fps
        persons = [p for p in (_resolve(slots[ch], i, t),) if p is not None]
        persons += [p for p in (_resolve(s, i, t) for s in extra) if p is not None]
        out.append(frame(t, persons, index=i, camera=camera))
    return out


def repeat(p: PersonSpec, seconds: float, *, fps: float = FPS, t0: float = 0.0) -> list[FrameObservation]:
    """`p` in every frame for `seconds` (inclusive of t0, exclusive of t0 + seconds)."""
    n = int(round(seconds * fps))
    return [
        frame(t0 + i / fps, [q] if (q := _resolve(p, i, t0 + i / fps)) else [], index=i) for i in range(n)
    ]


def moving(
    base: PersonObservation, speed_px_per_s: float, *, direction: tuple[float, float] = (1.0, 0.0)
) -> Callable[[int, float], PersonObservation]:
    """A person spec that slides `base` (box and landmarks) across the image at a constant speed."""

    def at(i: int, t: float) -> PersonObservation:
        dx, dy = direction[0] * speed_px_per_s * t, direction[1] * speed_px_per_s * t
        return shifted(base, dx, dy)

    return at


def shifted(p: PersonObservation, dx: float, dy: float) -> PersonObservation:
    """A copy of `p` moved by (dx, dy) pixels."""
    from dataclasses import replace

    return replace(
        p,
        box=p.box + np.array([dx, dy, dx, dy]),
        keypoints=None if p.keypoints is None else p.keypoints + (dx, dy),
    )


# -- running the engine ----------------------------------------------------------------------


def zero_sustain(*clauses: str) -> dict[str, dict[str, float]]:
    """Overrides making each clause open on its first True frame (photo cases)."""
    from rules.catalogue import load_catalogue

    out = {}
    for clause_id in clauses:
        params = load_catalogue().get(clause_id).params
        keys = [k for k in ("sustain_s", "work_zone_sustain_s", "lying_on_desk_s") if k in params]
        out[clause_id] = {k: 0.0 for k in keys}
    return out


@dataclass
class Run:
    """The outcome of feeding frames to an engine: every event in order and the violations."""

    engine: RuleEngine
    events: list[ViolationEvent]

    @property
    def violations(self) -> list[Violation]:
        return self.engine.violations

    def of(self, clause: str, gate: str | None = None) -> list[Violation]:
        """The violations of one clause (and, with `gate`, one of its gates, e.g. "d1.floor.03/long")."""
        return [
            v
            for v in self.engine.violations
            if v.clause == clause and (gate is None or v.details.get("gate") == gate)
        ]

    def kinds(self, clause: str | None = None) -> list[tuple[str, str, float]]:
        """(kind, gate, t) of the events, optionally of one clause."""
        return [
            (e.kind, e.violation.details.get("gate", ""), round(e.t, 3))
            for e in self.events
            if clause is None or e.violation.clause == clause
        ]


def run_engine(
    frames: Iterable[FrameObservation],
    *,
    role: str = "front_desk",
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    clauses: Iterable[str] | None = None,
    finish: bool = True,
    camera: str = "cam",
) -> Run:
    """Feed the frames to a fresh engine (and finish the stream unless `finish=False`)."""
    engine = RuleEngine(camera, role, overrides, clauses)
    events: list[ViolationEvent] = []
    for obs in frames:
        events.extend(engine.update(obs))
    if finish:
        events.extend(engine.finish())
    return Run(engine, events)
