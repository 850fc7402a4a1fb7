"""`postwatch evaluate`: run the pipeline over labelled media and score it against the ground truth.

Why: the features and rules are tuned on a few dozen photos and clips, and a change that helps one
case can quietly break three others. This command turns `../shared/media/labels.yaml` into figures
(per-attribute accuracy on photos, event-level precision / recall / F1 and onset / end errors on
clips, per-clause hits), so every change can be judged on the whole set, not on the case at hand.
It exits 0 whatever the score: the figures are the output.

Label format (see the header of labels.yaml): `images:` maps a file name to attributes of its
subject (`people`, `hands`, `phone`, `posture`, `tie`, `object`, with `expect`/`clause` for the
rule verdict); `videos:` maps a file name to `events` (`kind`, `start`, `end` in seconds, optional
`zone`, `people`, `clause`) and optional `zones` (image polygons, which act as post zones). An
event `{kind: violation, clause: ID, start, end}` is scored against the rule engine's violations
of that clause (default parameters, the clause's first role).

How a video is scored, per kind and per clause:

* per-frame states come from the features of the persons: of the *main* person (the tallest in
  the frame, as for a one-person photo) for most kinds, of *any* person for events labelled with
  `people:` (the event holds for several people); zone presence is `rules.zones.ZoneMonitor`'s;
* runs of frames become intervals (each frame stands for the time up to half-way to its
  neighbours), gaps shorter than `MERGE_GAP_S` are merged and intervals shorter than `MIN_EVENT_S`
  dropped, the same post-processing for every kind;
* a predicted interval matches a true one when they overlap by at least half of the shorter of
  the two; matching is one-to-one (a maximum matching, preferring larger overlaps), so one long
  prediction cannot claim two true events and a split prediction counts its extra pieces as
  false positives;
* only the kinds labelled in a file are scored in that file (a clip's labels speak of the kinds
  they name, not of every kind): predictions of other kinds are listed as "also predicted", for
  reading hard negatives (a phone call predicted in the drinking clip), but not counted. Even a
  named kind is not always labelled everywhere it happens, so precision is a lower bound.

Run it as `postwatch evaluate ...` (once mounted) or `python -m service.evaluate ...`.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml

if TYPE_CHECKING:
    from calibration.site import Zone
    from vision.observation import FrameObservation, PersonObservation
    from vision.pipeline import Pipeline

DEFAULT_FPS = 5.0
MERGE_GAP_S = 0.5  # predicted intervals closer than this are one event (a blink of the detector)
MIN_EVENT_S = 0.3  # predicted intervals shorter than this are noise, not an event
MIN_OVERLAP_SHARE = 0.5  # of the shorter interval, for a predicted and a true interval to match
WALK_BH_PER_S = 0.5  # foot-point speed (body heights/s) above which a person walks, as rules.checks

PipelineFactory = Callable[[float, bool], "Pipeline"]  # (fps, track) -> a fresh Pipeline
Progress = Callable[[str], None]


class LabelsError(ValueError):
    """A labels file that cannot be used; the message names the file, the entry and the problem.

    A ValueError so that the CLI's entry point prints it as one line and exits 2."""


# ================================================================================ intervals, scores


@dataclass(frozen=True, order=True)
class Interval:
    """A closed time span in seconds from the start of the file."""

    start: float
    end: float

    @property
    def length(self) -> float:
        return max(0.0, self.end - self.start)

    def to_list(self) -> list[float]:
        return [round(self.start, 2), round(self.end, 2)]


def overlap(a: Interval, b: Interval) -> float:
    """Seconds that two intervals share (0 when they are disjoint or only touch)."""
    return max(0.0, min(a.end, b.end) - max(a.start, b.start))


def can_match(truth: Interval, pred: Interval, share: float = MIN_OVERLAP_SHARE) -> bool:
    """Whether a predicted interval may stand for a true one: they overlap, by at least `share` of
    the shorter. Why the shorter: a 2 s prediction inside a 10 s call is the call found (late or
    split), while "half of the longer" would reject every short prediction of a long event."""
    ov = overlap(truth, pred)
    return ov > 0.0 and ov >= share * min(truth.length, pred.length) - 1e-9


@dataclass(frozen=True)
class Pair:
    """A true interval and the predicted one matched to it, with the timing errors (pred - truth)."""

    truth: Interval
    pred: Interval

    @property
    def onset_error_s(self) -> float:
        return self.pred.start - self.truth.start

    @property
    def end_error_s(self) -> float:
        return self.pred.end - self.truth.end


@dataclass
class Matching:
    """One-to-one matching of true and predicted intervals of one kind in one file."""

    pairs: list[Pair] = field(default_factory=list)
    missed: list[Interval] = field(default_factory=list)  # true intervals no prediction matched (FN)
    extra: list[Interval] = field(default_factory=list)  # predictions that matched nothing (FP)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tp": len(self.pairs),
            "fp": len(self.extra),
            "fn": len(self.missed),
            "matched": [
                {
                    "truth": p.truth.to_list(),
                    "pred": p.pred.to_list(),
                    "onset_error_s": round(p.onset_error_s, 2),
                    "end_error_s": round(p.end_error_s, 2),
                }
                for p in self.pairs
            ],
            "missed": [i.to_list() for i in self.missed],
            "extra": [i.to_list() for i in self.extra],
        }


def match_intervals(
    truth: Sequence[Interval], pred: Sequence[Interval], share: float = MIN_OVERLAP_SHARE
) -> Matching:
    """Match true and predicted intervals one-to-one (see `can_match` for when a pair may match).

    A maximum bipartite matching (augmenting paths), each true interval trying its candidates in
    order of decreasing overlap: greedy "largest overlap first" can leave a true event unmatched
    when its only candidate was taken by a neighbour that had another choice.
    """
    truth, pred = sorted(truth), sorted(pred)
    candidates = [
        sorted(
            (j for j, p in enumerate(pred) if can_match(t, p, share)), key=lambda j, t=t: -overlap(t, pred[j])
        )
        for t in truth
    ]
    owner: dict[int, int] = {}  # predicted index -> true index

    def augment(i: int, seen: set[int]) -> bool:
        for j in candidates[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in owner or augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    for i in range(len(truth)):
        augment(i, set())
    by_truth = {i: j for j, i in owner.items()}
    return Matching(
        pairs=[Pair(truth[i], pred[by_truth[i]]) for i in range(len(truth)) if i in by_truth],
        missed=[t for i, t in enumerate(truth) if i not in by_truth],
        extra=[p for j, p in enumerate(pred) if j not in owner],
    )


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def _errors(values: Iterable[float]) -> dict[str, float | None]:
    absolute = [abs(v) for v in values]
    if not absolute:
        return {"median_s": None, "worst_s": None}
    return {"median_s": round(statistics.median(absolute), 2), "worst_s": round(max(absolute), 2)}


@dataclass
class EventScore:
    """Event-level figures of one kind (or clause) over every file where it is labelled.

    Precision is None when nothing was predicted, recall None when nothing is labelled: an
    undefined figure is not a zero. Onset and end errors are absolute seconds over matched pairs.
    """

    matchings: list[Matching] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def tp(self) -> int:
        return sum(len(m.pairs) for m in self.matchings)

    @property
    def fp(self) -> int:
        return sum(len(m.extra) for m in self.matchings)

    @property
    def fn(self) -> int:
        return sum(len(m.missed) for m in self.matchings)

    @property
    def precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None if r is None else 0.0
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)

    def to_dict(self) -> dict[str, Any]:
        pairs = [p for m in self.matchings for p in m.pairs]
        return {
            "n_true": self.tp + self.fn,
            "n_pred": self.tp + self.fp,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "precision": _round(self.precision),
            "recall": _round(self.recall),
            "f1": _round(self.f1),
            "onset_error": _errors(p.onset_error_s for p in pairs),
            "end_error": _errors(p.end_error_s for p in pairs),
            "notes": list(dict.fromkeys(self.notes)),
        }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def merge_intervals(
    intervals: Iterable[Interval], max_gap: float = MERGE_GAP_S, min_length: float = MIN_EVENT_S
) -> list[Interval]:
    """Merge intervals whose gap is shorter than `max_gap`, then drop those shorter than `min_length`.

    Merge first: three 0.2 s flickers 0.1 s apart are one 0.8 s event, not three dropped blips."""
    merged: list[Interval] = []
    for iv in sorted(intervals):
        if merged and iv.start - merged[-1].end < max_gap:
            merged[-1] = Interval(merged[-1].start, max(merged[-1].end, iv.end))
        else:
            merged.append(iv)
    return [iv for iv in merged if iv.length >= min_length - 1e-9]


def frames_to_intervals(times: Sequence[float], flags: Sequence[bool], end_t: float) -> list[Interval]:
    """Runs of flagged frames as time intervals, before merging.

    Each frame stands for the time from half-way after the previous frame to half-way before the
    next one (the first frame from its own time, the last one to `end_t`, the end of the file):
    the state changed somewhere between two analysed frames, and the midpoint is the unbiased
    guess, so a lower analysis rate widens the error but does not shift it.
    """
    out: list[Interval] = []
    n = len(times)
    for i, flag in enumerate(flags):
        if not flag:
            continue
        lo = times[0] if i == 0 else (times[i - 1] + times[i]) / 2
        hi = max(end_t, times[i]) if i == n - 1 else (times[i] + times[i + 1]) / 2
        if out and abs(out[-1].end - lo) < 1e-9:
            out[-1] = Interval(out[-1].start, hi)
        else:
            out.append(Interval(lo, hi))
    return out


def complement(intervals: Sequence[Interval], start: float, end: float) -> list[Interval]:
    """The parts of [start, end] that no interval covers (for `absent` from `present`)."""
    out: list[Interval] = []
    cursor = start
    for iv in sorted(intervals):
        if iv.start > cursor:
            out.append(Interval(cursor, min(iv.start, end)))
        cursor = max(cursor, iv.end)
    if cursor < end:
        out.append(Interval(cursor, end))
    return [iv for iv in out if iv.length > 0]


# ========================================================================================== labels


@dataclass
class VideoEvent:
    """One labelled event: a kind (or a clause) held from `start` to `end` seconds."""

    kind: str
    start: float
    end: float
    zone: str | None = None
    people: int | None = None
    clause: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys the evaluator does not score (hands...)

    @property
    def interval(self) -> Interval:
        return Interval(self.start, self.end)

    @property
    def key(self) -> str:
        """What the event is scored under: the clause for a violation event, else the kind."""
        return self.clause if self.kind == "violation" and self.clause else self.kind


@dataclass
class VideoLabel:
    name: str
    events: list[VideoEvent]
    zones: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    size: tuple[float, float] | None = None  # width, height the zone coordinates were read in


@dataclass
class Labels:
    images: dict[str, dict[str, Any]]
    videos: dict[str, VideoLabel]


def load_labels(path: str | Path) -> Labels:
    """Read and check a labels file; every problem is a LabelsError naming the entry."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise LabelsError(f"Cannot read labels file {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise LabelsError(f"Labels file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise LabelsError(f"{path}: expected a mapping with 'images' and/or 'videos'.")
    images = data.get("images") or {}
    videos = data.get("videos") or {}
    if not isinstance(images, dict) or not isinstance(videos, dict):
        raise LabelsError(f"{path}: 'images' and 'videos' must map file names to labels.")
    for name, label in images.items():
        if not isinstance(label, dict):
            raise LabelsError(f"{path}: images.{name}: expected a mapping of attributes.")
    parsed = {str(name): _video_label(path, str(name), label) for name, label in videos.items()}
    return Labels({str(k): _valued(v) for k, v in images.items()}, parsed)


def _valued(entry: Mapping[Any, Any]) -> dict[str, Any]:
    """The keys that carry a value. Why: in a flow mapping a comma inside a note ends it, so
    `{note: legs crossed, tie, expect: violation}` has a key `tie` with no value - note text, not a
    labelled tie."""
    return {str(k): v for k, v in entry.items() if v is not None}


def _video_label(path: Path, name: str, label: Any) -> VideoLabel:
    where = f"{path}: videos.{name}"
    if not isinstance(label, dict):
        raise LabelsError(f"{where}: expected a mapping with 'events'.")
    events = []
    for k, ev in enumerate(label.get("events") or []):
        if not isinstance(ev, dict) or "kind" not in ev:
            raise LabelsError(f"{where}.events[{k}]: expected a mapping with kind, start and end.")
        ev = _valued(ev)
        try:
            start, end = float(ev["start"]), float(ev["end"])
        except (KeyError, TypeError, ValueError) as exc:
            raise LabelsError(f"{where}.events[{k}]: start and end must be numbers of seconds.") from exc
        if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
            raise LabelsError(f"{where}.events[{k}]: end ({end:g}) must come after start ({start:g}).")
        known = {"kind", "start", "end", "zone", "people", "clause", "note"}
        events.append(
            VideoEvent(
                kind=str(ev["kind"]),
                start=start,
                end=end,
                zone=None if ev.get("zone") is None else str(ev["zone"]),
                people=None if ev.get("people") is None else int(ev["people"]),
                clause=None if ev.get("clause") is None else str(ev["clause"]),
                extra={key: v for key, v in ev.items() if key not in known},
            )
        )
    zones: dict[str, list[tuple[float, float]]] = {}
    for zname, poly in (label.get("zones") or {}).items():
        try:
            zones[str(zname)] = [(float(x), float(y)) for x, y in poly]
        except (TypeError, ValueError) as exc:
            raise LabelsError(f"{where}.zones.{zname}: expected a list of [x, y] points.") from exc
    for ev in events:
        if ev.kind == "violation" and not ev.clause:
            raise LabelsError(f"{where}: a violation event needs the clause it breaks (clause: ...).")
        if ev.kind in ZONE_KINDS and (ev.zone is None or ev.zone not in zones):
            raise LabelsError(
                f"{where}: a {ev.kind} event needs a zone defined under 'zones' (got {ev.zone!r})."
            )
    size = label.get("size")
    return VideoLabel(name, events, zones, (float(size[0]), float(size[1])) if size else None)


# ===================================================================== per-frame states of a person


ZONE_KINDS = ("present", "absent")
NO_DETECTOR = {"salute": "no salute detector yet (rules.guard.salute_pose not available)"}


@dataclass
class PersonState:
    """One person in one frame, with what the evaluator adds to the features: the track's speed."""

    person: PersonObservation
    speed_bh_per_s: float | None


def _drinking(p: PersonObservation) -> bool:
    """As d1.floor.11 judges it: a hand at the mouth *and* a cup or bottle at the hands."""
    from rules.checks import DRINKS

    if p.features.hands.value != "at_mouth":
        return False
    if any(p.features.objects.get(k, 0.0) > 0 for k in DRINKS):
        return True
    return any(
        isinstance(e, (list, tuple)) and e and e[0] in DRINKS for e in p.evidence.get("other_in_hand") or []
    )


def _leaning(p: PersonObservation) -> bool:
    """As d5.stance.02 judges it (trunk beyond the catalogue's lean_deg while seen standing)."""
    from rules.catalogue import resolve_params
    from rules.checks import PersonHistory, trunk_lean

    return trunk_lean(p, PersonHistory(), resolve_params("d5.stance.02")).state is True


def _walking(s: PersonState) -> bool:
    return (
        s.speed_bh_per_s is not None
        and s.speed_bh_per_s > WALK_BH_PER_S
        and (s.person.features.posture.value not in ("sitting", "lying"))
    )


# Kind -> per-frame predicate. Why predicates on features and not new detectors: the evaluation
# measures what the system reads today; a kind gets a predicate when a feature or rule supports it.
KIND_PREDICATES: dict[str, Callable[[PersonState], bool]] = {
    "sitting": lambda s: s.person.features.posture.value == "sitting",
    "standing": lambda s: s.person.features.posture.value == "standing" and not _walking(s),
    "walking": _walking,
    "lying": lambda s: s.person.features.posture.value == "lying",
    "leaning": lambda s: _leaning(s.person),
    "phone_look": lambda s: s.person.features.phone.value == "looking",
    "phone_call": lambda s: s.person.features.phone.value == "at_ear",
    "drinking": lambda s: _drinking(s.person),
}


def kind_predicate(kind: str) -> Callable[[PersonState], bool] | None:
    """The per-frame predicate of a kind, or None when the system cannot read it yet.

    The salute comes from `rules.guard.salute_pose` (d11.salute.01) when that module is there;
    it is imported here, not at the top, so the evaluation runs the same without it.
    """
    if kind in KIND_PREDICATES:
        return KIND_PREDICATES[kind]
    if kind == "salute":
        try:
            from rules.guard import salute_pose
        except ImportError:
            return None
        return lambda s: salute_pose(s.person).state is True
    return None


def predictable_kinds() -> list[str]:
    return [k for k in (*KIND_PREDICATES, "salute") if kind_predicate(k) is not None]


def person_states(observations: Sequence[FrameObservation]) -> list[list[PersonState]]:
    """Per frame, every person with the foot-point speed of its track (body heights per second).

    The speed is the rules' own (`PersonHistory.speed_bh_per_s`, a robust fit over the last
    second), so "walking" here is what d5.walk.01 sees.
    """
    from rules.checks import PersonHistory

    histories: dict[int, PersonHistory] = {}
    out = []
    for obs in observations:
        frame = []
        for p in obs.persons:
            h = histories.setdefault(int(p.track_id), PersonHistory(int(p.track_id)))
            h.add(obs.t, p)
            frame.append(PersonState(p, h.speed_bh_per_s()))
        out.append(frame)
    return out


def main_person(states: Sequence[PersonState]) -> PersonState | None:
    """The labelled subject of a frame when the label does not say `people:`: the tallest person."""
    return max(states, key=lambda s: s.person.height_px) if states else None


def predict_kind(
    observations: Sequence[FrameObservation],
    states: Sequence[Sequence[PersonState]],
    kind: str,
    end_t: float,
    any_person: bool,
) -> list[Interval]:
    """Predicted intervals of one kind: per-frame flags, then `frames_to_intervals` and `merge_intervals`."""
    test = kind_predicate(kind)
    if test is None:
        raise KeyError(f"no predictor for kind {kind!r}")
    flags = []
    for frame in states:
        if any_person:
            flags.append(any(test(s) for s in frame))
        else:
            subject = main_person(frame)
            flags.append(subject is not None and test(subject))
    return merge_intervals(frames_to_intervals([o.t for o in observations], flags, end_t))


def presence_intervals(observations: Sequence[FrameObservation], zone: Zone, end_t: float) -> list[Interval]:
    """When the zone is staffed, as the post rules see it: `rules.zones.ZoneMonitor.presence` on a
    one-zone camera (feet in the polygon, its entry debounce and exit grace; without an enrolled
    uniform anyone standing on a post counts as staff), then the common merge / drop rule."""
    from calibration.site import Camera, Site
    from rules.zones import ZoneMonitor

    camera = Camera(id="evaluate", source="evaluate", zones=[zone])
    monitor = ZoneMonitor(camera, Site(cameras=[camera]))
    for obs in observations:
        monitor.update(obs)
    monitor.finish(end_t)
    return merge_intervals(Interval(a, b) for a, b in monitor.presence(zone.name))


def clause_intervals(
    observations: Sequence[FrameObservation], clause: str
) -> tuple[list[Interval], str | None]:
    """Violations of one clause over a clip (default parameters, the clause's first role), and a
    note when the engine cannot run it (no rule implemented yet)."""
    from rules.catalogue import load_catalogue
    from rules.engine import RuleEngine

    role = load_catalogue().get(clause).roles[0]
    engine = RuleEngine("evaluate", role=role, clauses=[clause])
    if clause in engine.skipped:
        return [], f"{clause}: {engine.skipped[clause]}"
    for obs in observations:
        engine.update(obs)
    engine.finish()
    return [
        Interval(v.start_s, v.end_s if v.end_s is not None else v.start_s) for v in engine.violations
    ], None


# ================================================================================ photo attributes

# Label vocabulary -> the feature values that count as right. Where the labels say more than a
# feature can (a walking photo: a still has no speed), the nearest feature value stands in.
HANDS_MAP: dict[str, tuple[str, ...]] = {
    # Both hands together at the chest holding a phone is no hands clause value: "other", or the
    # hands-together-in-front reading that the hands feature gives it.
    "both_at_chest": ("other", "clasped_front"),
}
PHONE_MAP: dict[str, tuple[str, ...]] = {
    "looking_at_phone": ("looking",),
    "holding_not_looking": ("in_hand",),
    "at_ear": ("at_ear",),
    "none": ("none",),
}
POSTURE_MAP: dict[str, tuple[str, ...]] = {"walking": ("standing",)}
ATTRIBUTES = ("people", "hands", "phone", "posture", "tie", "object")

# `expect:` -> (the clause fires?, behaviours it must show, behaviours it must not show).
EXPECTATIONS: dict[str, tuple[bool, tuple[str, ...], tuple[str, ...]]] = {
    "violation": (True, (), ()),
    "no_violation": (False, (), ()),
    # d11.phone.01 forbids a phone in a guard's hand at all, looked at or not.
    "phone_in_hand_only": (True, (), ()),
    # d1.floor.11 covers reading as well as phone use: it fires, for reading and not for a phone.
    "reading_not_phone": (True, ("reading",), ("phone",)),
    # The tie clause is kept (a tie is worn); whether the camera reads as a phone is the phone label's.
    "tie_present_no_phone_call": (False, (), ()),
}
# A one-frame observation has no duration: every sustain of the clause is set to 0 so a photo
# shows whether the rule's per-frame check fires.
ONE_FRAME_KEYS = ("sustain_s", "work_zone_sustain_s", "max_call_s", "lying_on_desk_s")


def _expected_values(attr: str, value: Any) -> tuple[str, ...] | None:
    """The feature values that match a labelled attribute value; None when it cannot be scored."""
    from vision.observation import HANDS, PHONE_STATES, POSTURES

    text = str(value)
    if attr == "hands":
        return HANDS_MAP.get(text) or ((text,) if text in HANDS else None)
    if attr == "phone":
        return PHONE_MAP.get(text) or ((text,) if text in PHONE_STATES else None)
    if attr == "posture":
        return POSTURE_MAP.get(text) or ((text,) if text in POSTURES else None)
    return None


@dataclass
class AttributeResult:
    file: str
    attribute: str
    expected: str
    got: str
    right: bool | None  # None: labelled, but not scorable (the note says why)
    note: str = ""


def score_photo_attributes(
    name: str, label: Mapping[str, Any], obs: FrameObservation
) -> list[AttributeResult]:
    """Compare the labelled attributes of a photo with the features of its subject (the tallest
    person), and `people:` with the number of persons detected."""
    out: list[AttributeResult] = []
    persons = obs.persons
    subject = max(persons, key=lambda p: p.height_px) if persons else None
    note = str(label.get("note", ""))
    for attr in ATTRIBUTES:
        if attr not in label:
            continue
        value = label[attr]
        if attr == "people":
            out.append(
                AttributeResult(name, attr, str(value), str(len(persons)), len(persons) == int(value), note)
            )
            continue
        if subject is None:
            out.append(AttributeResult(name, attr, str(value), "no person", False, note))
            continue
        f = subject.features
        if attr == "tie":
            want = bool(value)
            conf = f.objects.get("tie", 0.0)
            out.append(
                AttributeResult(
                    name, attr, str(want).lower(), f"{conf > 0}".lower(), (conf > 0) == want, note
                )
            )
            continue
        if attr == "object":
            got = ", ".join(sorted(f.objects)) or "none"
            out.append(AttributeResult(name, attr, str(value), got, str(value) in f.objects, note))
            continue
        wanted = _expected_values(attr, value)
        if wanted is None:
            out.append(
                AttributeResult(
                    name, attr, str(value), "", None, f"label value {value!r} has no feature value"
                )
            )
            continue
        if attr == "phone" and "count" in label:  # several people do it: count them
            got_n = sum(getattr(p.features, attr).value in wanted for p in persons)
            want_n = int(label["count"])
            out.append(
                AttributeResult(
                    name, attr, f"{value} x{want_n}", f"{wanted[0]} x{got_n}", got_n == want_n, note
                )
            )
            continue
        got = getattr(f, attr).value
        out.append(AttributeResult(name, attr, str(value), got, got in wanted, note))
    return out


@dataclass
class ClauseResult:
    file: str
    clause: str
    expected: str
    fired: bool | None  # None: the engine cannot run the clause
    behaviours: list[str]
    right: bool | None
    note: str = ""


def score_photo_clause(name: str, label: Mapping[str, Any], obs: FrameObservation) -> ClauseResult | None:
    """Run the labelled clause on the one-frame observation (every sustain 0) and compare fired /
    not fired with `expect:`. The subject alone is judged, or every person when `count:` says
    several people do it. An `expect:` without a clause is about every implemented clause of the
    role (`role:`, default front_desk): `no_violation` means none of them fires. None when the
    label has no expectation."""
    from rules.catalogue import load_catalogue
    from rules.engine import RuleEngine

    expect = label.get("expect")
    if not expect:
        return None
    expect = str(expect)
    catalogue = load_catalogue()
    if label.get("clause"):
        clauses = [catalogue.get(str(label["clause"]))]
        role, key = clauses[0].roles[0], clauses[0].id
    else:
        role = str(label.get("role", "front_desk"))
        clauses = catalogue.for_role(role)
        key = f"all {role} clauses"
    if expect not in EXPECTATIONS:
        return ClauseResult(name, key, expect, None, [], None, f"expect {expect!r} is not machine-checkable")
    fires, must, must_not = EXPECTATIONS[expect]
    overrides = {c.id: {k: 0.0 for k in ONE_FRAME_KEYS if k in c.params} for c in clauses}
    engine = RuleEngine("evaluate", role=role, overrides=overrides, clauses=[c.id for c in clauses])
    if not engine.clauses:
        return ClauseResult(
            name, key, expect, None, [], None, "; ".join(sorted(set(engine.skipped.values())))
        )
    frame = _copy_frame(obs)
    if "count" not in label and frame.persons:
        frame.persons = [max(frame.persons, key=lambda p: p.height_px)]
    engine.update(frame)
    engine.finish()
    prefix = len(clauses) > 1  # name the clause of each behaviour when several can fire
    behaviours = sorted(
        {
            f"{v.clause}:{b}" if prefix else b
            for v in engine.violations
            for b in (v.details.get("behaviours") or {"violation": 1})
        }
    )
    fired = bool(engine.violations)
    right = fired == fires
    if fired and fires:
        right = all(b in behaviours for b in must) and not any(b in behaviours for b in must_not)
    return ClauseResult(name, key, expect, fired, behaviours, right, str(label.get("note", "")))


def _copy_frame(obs: FrameObservation) -> FrameObservation:
    from vision.observation import FrameObservation

    return FrameObservation(
        obs.camera, obs.t, obs.index, obs.width, obs.height, list(obs.persons), list(obs.objects)
    )


# ======================================================================================== running


@dataclass
class FileRecord:
    """What happened to one labelled file: evaluated, missing or broken, and its own figures."""

    name: str
    kind: str  # image | video
    status: str = "ok"  # ok | missing | error
    note: str = ""
    seconds: float = 0.0  # wall-clock time spent on it
    frames: int = 0
    duration_s: float | None = None
    kinds: dict[str, dict[str, Any]] = field(default_factory=dict)
    also_predicted: dict[str, list[list[float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "seconds": round(self.seconds, 2),
        }
        if self.note:
            out["note"] = self.note
        if self.kind == "video" and self.status == "ok":
            out.update(
                frames=self.frames,
                duration_s=_round(self.duration_s, 2),
                kinds=self.kinds,
                also_predicted=self.also_predicted,
            )
        if self.notes:
            out["notes"] = self.notes
        return out


def default_pipeline_factory(weights: str | None = None, video_weights: str | None = None) -> PipelineFactory:
    """Load the detector and pose models once; every file gets a fresh Pipeline (a fresh tracker)
    around them, as `service.analyze` builds one per source. `video_weights`: as `Detector`'s."""
    from vision.detect import Detector
    from vision.pipeline import Pipeline, PipelineOptions
    from vision.pose import PoseEstimator

    models: list[Any] = []

    def make(fps: float, track: bool) -> Pipeline:
        if not models:
            models.extend([Detector(weights, video_weights=video_weights), PoseEstimator()])
        return Pipeline(models[0], models[1], PipelineOptions(fps=fps), camera="evaluate", track=track)

    return make


def _selected(names: Iterable[str], only: Sequence[str] | None) -> list[str]:
    if not only:
        return list(names)
    return [n for n in names if any(n == pat or fnmatch.fnmatchcase(n, pat) for pat in only)]


def evaluate(
    labels_path: str | Path,
    media_dir: str | Path,
    *,
    fps: float = DEFAULT_FPS,
    only: Sequence[str] | None = None,
    pipeline_factory: PipelineFactory | None = None,
    weights: str | None = None,
    video_weights: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run the pipeline over every labelled file (or those `only` names: exact names or globs) and
    return the report as a JSON-ready dict. Missing and broken files are recorded, not raised.
    `weights`, `video_weights`: the default pipeline's detector (`vision.detect.Detector`); the
    report names the models where it chose them."""
    if fps <= 0:
        raise LabelsError(f"--fps must be > 0, got {fps:g}")
    labels = load_labels(labels_path)
    media = Path(media_dir)
    detector: dict[str, str] | None = None
    if pipeline_factory is None:
        from vision.detect import resolve_weights, video_weights_for

        resolved = resolve_weights(weights)
        chosen = video_weights_for(resolved, video_weights)
        detector = {"still": resolved, "video": chosen or resolved}
        # The choice made once: the models load what the report names, and "auto" warns once.
        weights, video_weights = resolved, chosen
    factory = pipeline_factory or default_pipeline_factory(weights, video_weights)
    say = progress or (lambda _msg: None)
    started = time.perf_counter()

    image_names = _selected(labels.images, only)
    video_names = _selected(labels.videos, only)
    notes: list[str] = []
    if only:
        unmatched = [p for p in only if not _selected([*labels.images, *labels.videos], [p])]
        notes += [f"--only {p!r} matches no labelled file" for p in unmatched]
    if not media.is_dir():
        notes.append(f"media folder {media} not found: every file is reported missing")

    records: list[FileRecord] = []
    attributes: list[AttributeResult] = []
    photo_clauses: list[ClauseResult] = []
    total = len(image_names) + len(video_names)
    for k, name in enumerate(image_names, 1):
        rec = FileRecord(name, "image")
        records.append(rec)
        t0 = time.perf_counter()
        obs = _run_file(rec, media / name, factory, fps=None)
        if obs is not None:
            try:
                found = score_photo_attributes(name, labels.images[name], obs[0])
                result = score_photo_clause(name, labels.images[name], obs[0])
            except Exception as exc:  # noqa: BLE001 - a rule failing on one photo is reported, not fatal
                rec.status, rec.note = "error", f"scoring failed: {type(exc).__name__}: {exc}"
            else:
                attributes += found
                photo_clauses += [result] if result is not None else []
        rec.seconds = time.perf_counter() - t0
        say(f"[{k}/{total}] {name}: {rec.status}{' - ' + rec.note if rec.note else ''} ({rec.seconds:.1f} s)")

    kind_scores: dict[str, EventScore] = {}
    clause_scores: dict[str, EventScore] = {}
    for k, name in enumerate(video_names, len(image_names) + 1):
        rec = FileRecord(name, "video")
        records.append(rec)
        t0 = time.perf_counter()
        obs = _run_file(rec, media / name, factory, fps=fps)
        if obs is not None:
            try:
                scored = _score_video(rec, labels.videos[name], obs)
            except Exception as exc:  # noqa: BLE001 - a rule failing on one clip is reported, not fatal
                rec.status, rec.note = "error", f"scoring failed: {type(exc).__name__}: {exc}"
                scored = []
            for item in scored:
                score = (clause_scores if item.is_clause else kind_scores).setdefault(item.key, EventScore())
                score.matchings.append(item.matching)
                score.notes += [item.note] if item.note else []
        rec.seconds = time.perf_counter() - t0
        say(f"[{k}/{total}] {name}: {rec.status}{' - ' + rec.note if rec.note else ''} ({rec.seconds:.1f} s)")

    if media.is_dir() and not only:
        from vision.sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

        known = set(labels.images) | set(labels.videos)
        unlabelled = sorted(
            p.name
            for p in media.iterdir()
            if p.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS and p.name not in known
        )
        if unlabelled:
            notes.append(f"{len(unlabelled)} media file(s) have no labels and were not evaluated")

    return {
        "date": date.today().isoformat(),
        "revision": _revision(),
        "labels": str(labels_path),
        "media": str(media_dir),
        "fps": fps,
        "only": list(only or []),
        "detector": detector,
        "seconds": round(time.perf_counter() - started, 1),
        "settings": {
            "merge_gap_s": MERGE_GAP_S,
            "min_event_s": MIN_EVENT_S,
            "min_overlap_share": MIN_OVERLAP_SHARE,
            "walk_bh_per_s": WALK_BH_PER_S,
        },
        "files": [r.to_dict() for r in records],
        "summary": {
            "files": len(records),
            "evaluated": sum(r.status == "ok" for r in records),
            "missing": sum(r.status == "missing" for r in records),
            "errors": sum(r.status == "error" for r in records),
        },
        "images": {
            "attributes": _attribute_table(attributes),
            "clauses": _clause_table(photo_clauses),
        },
        "videos": {
            "kinds": {k: s.to_dict() for k, s in sorted(kind_scores.items())},
            "clauses": {k: s.to_dict() for k, s in sorted(clause_scores.items())},
        },
        "notes": notes,
    }


def _revision() -> str | None:
    """The checkout's commit, and whether the working tree differs from it: figures from an
    uncommitted tree cannot be reproduced from the commit alone, so the report says so."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def _run_file(
    rec: FileRecord, path: Path, factory: PipelineFactory, fps: float | None
) -> list[FrameObservation] | None:
    """Observations of one file, or None with the record marked missing / error (never raises for
    a bad file: one broken clip must not cost the figures of the other forty)."""
    from vision.sources import SourceError, open_source

    if not path.exists():
        rec.status, rec.note = "missing", f"{path} not found"
        return None
    try:
        with open_source(str(path), camera="evaluate", fps=fps) as source:
            pipeline = factory(fps or DEFAULT_FPS, rec.kind == "video")
            if rec.kind == "image":
                observations = [pipeline.process(next(iter(source)))]
            else:
                observations = [pipeline.process(frame) for frame in source]
            rec.duration_s = source.info.duration_s
    except SourceError as exc:
        rec.status, rec.note = "error", str(exc)
        return None
    except Exception as exc:  # noqa: BLE001 - a decoder or model failure on one file is reported, not fatal
        rec.status, rec.note = "error", f"{type(exc).__name__}: {exc}"
        return None
    if not observations:
        rec.status, rec.note = "error", "no frame decoded"
        return None
    rec.frames = len(observations)
    return observations


def _end_time(rec: FileRecord, observations: Sequence[FrameObservation]) -> float:
    """The end of the clip: the container's duration when it is plausible, else one frame period
    past the last analysed frame."""
    times = [o.t for o in observations]
    step = statistics.median([b - a for a, b in zip(times, times[1:])]) if len(times) > 1 else 0.0
    guess = times[-1] + step
    if rec.duration_s and times[-1] <= rec.duration_s <= guess + 1.0:
        return float(rec.duration_s)
    return guess


def _zone(label: VideoLabel, name: str, observations: Sequence[FrameObservation]) -> tuple[Zone, str | None]:
    """The labelled zone as a post Zone, rescaled when the frames are not the size it was read in."""
    from calibration.site import Zone

    poly = label.zones[name]
    note = None
    if label.size is not None and observations:
        w, h = observations[0].width, observations[0].height
        sx, sy = w / label.size[0], h / label.size[1]
        if abs(sx - 1) > 1e-6 or abs(sy - 1) > 1e-6:
            poly = [(x * sx, y * sy) for x, y in poly]
            note = f"zone {name} rescaled from {label.size[0]:g}x{label.size[1]:g} to the {w}x{h} frames"
    return Zone(name=name, kind="post", polygon=poly, role="front_desk"), note


@dataclass
class Scored:
    """One kind (or clause) of one clip, matched: what `_score_video` hands back to be pooled."""

    key: str
    is_clause: bool
    matching: Matching
    note: str | None = None


def _score_video(rec: FileRecord, label: VideoLabel, observations: list[FrameObservation]) -> list[Scored]:
    """Match the clip's labelled events with the predictions; fills the record's per-clip detail.
    The caller pools the results only when the whole clip scored, so one failure cannot leave
    half a clip in the figures."""
    end_t = _end_time(rec, observations)
    rec.duration_s = end_t
    states = person_states(observations)
    groups: dict[tuple[str, str | None], list[VideoEvent]] = {}
    for ev in label.events:
        groups.setdefault((ev.key, ev.zone), []).append(ev)
        if ev.extra:
            rec.notes.append(
                f"{ev.kind} {ev.start:g}-{ev.end:g}: {', '.join(ev.extra)} not scored on video events"
            )

    out: list[Scored] = []
    for (key, zone_name), events in groups.items():
        truth = [ev.interval for ev in events]
        note: str | None = None
        is_clause = events[0].kind == "violation" and events[0].clause is not None
        if is_clause:
            pred, note = clause_intervals(observations, key)
        elif key in ZONE_KINDS:
            assert zone_name is not None
            zone, note = _zone(label, zone_name, observations)
            present = presence_intervals(observations, zone, end_t)
            pred = (
                present
                if key == "present"
                else merge_intervals(complement(present, observations[0].t, end_t))
            )
        elif kind_predicate(key) is not None:
            any_person = any(ev.people is not None for ev in events)
            pred = predict_kind(observations, states, key, end_t, any_person)
        else:
            pred, note = [], NO_DETECTOR.get(key, f"no predictor for kind {key!r} yet")
        matching = match_intervals(truth, pred)
        label_key = f"{key}@{zone_name}" if zone_name else key
        rec.kinds[label_key] = {
            "truth": [i.to_list() for i in sorted(truth)],
            "pred": [i.to_list() for i in pred],
        }
        rec.kinds[label_key].update(matching.to_dict())
        out.append(Scored(key, is_clause, matching, note))
        if note:
            rec.notes.append(note)

    labelled = {ev.key for ev in label.events}
    for kind in predictable_kinds():
        if kind not in labelled:
            pred = predict_kind(observations, states, kind, end_t, any_person=True)
            if pred:
                rec.also_predicted[kind] = [i.to_list() for i in pred]
    return out


def _attribute_table(results: list[AttributeResult]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for attr in ATTRIBUTES:
        rows = [r for r in results if r.attribute == attr]
        if not rows:
            continue
        scored = [r for r in rows if r.right is not None]
        right = sum(bool(r.right) for r in scored)
        out[attr] = {
            "n": len(scored),
            "right": right,
            "accuracy": _round(_ratio(right, len(scored))),
            "misses": [
                {"file": r.file, "expected": r.expected, "got": r.got, **({"note": r.note} if r.note else {})}
                for r in scored
                if not r.right
            ],
            "not_scored": [
                {"file": r.file, "expected": r.expected, "why": r.note} for r in rows if r.right is None
            ],
        }
    return out


def _clause_table(results: list[ClauseResult]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for clause in sorted({r.clause for r in results}):
        rows = [r for r in results if r.clause == clause]
        scored = [r for r in rows if r.right is not None]
        right = sum(bool(r.right) for r in scored)
        out[clause] = {
            "n": len(scored),
            "right": right,
            "accuracy": _round(_ratio(right, len(scored))),
            "misses": [
                {"file": r.file, "expected": r.expected, "fired": r.fired, "behaviours": r.behaviours}
                for r in scored
                if not r.right
            ],
            "not_scored": [
                {"file": r.file, "expected": r.expected, "why": r.note} for r in rows if r.right is None
            ],
        }
    return out


# ===================================================================================== formatting


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], markdown: bool) -> list[str]:
    cells = [[_fmt(c) for c in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        return lines + ["| " + " | ".join(row) + " |" for row in cells]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    return lines + ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]


def _iv(items: Sequence[Sequence[float]]) -> str:
    return ", ".join(f"{a:.1f}-{b:.1f}" for a, b in items) or "none"


def format_report(report: Mapping[str, Any], markdown: bool = False, command: str | None = None) -> str:
    """The report as a readable text table (or Markdown for docs/accuracy.md)."""
    h = (lambda level, text: f"{'#' * level} {text}") if markdown else (lambda _level, text: f"== {text} ==")
    s = report["summary"]
    out = [h(1, "postwatch accuracy on labelled media") if markdown else "postwatch evaluate", ""]
    out += [
        f"- date: {report['date']}" + (f", revision {report['revision']}" if report.get("revision") else ""),
        f"- labels: `{report['labels']}`, media: `{report['media']}`",
        f"- analysis rate: {report['fps']:g} fps; {s['evaluated']} of {s['files']} labelled files evaluated "
        f"({s['missing']} missing, {s['errors']} broken) in {report['seconds']:.0f} s",
    ]
    if report["only"]:
        out.append(f"- restricted to: {', '.join(report['only'])}")
    detector = report.get("detector")
    if detector:
        shown = {k: Path(v).name for k, v in detector.items()}
        if shown["video"] == shown["still"]:
            out.append(f"- detector: `{shown['still']}`")
        else:
            out.append(f"- detector: `{shown['still']}` for photos, `{shown['video']}` for clips (this CPU)")
    if command:
        also = "" if report["only"] else " (or `bench/accuracy.sh`)"
        out.append(f"- regenerate: `{command}`{also}")
    st = report["settings"]
    if markdown:
        out += [
            "- how to read it: P, R and F1 are event-level (one predicted interval per true one); `-` is "
            "undefined (nothing predicted, or nothing labelled). Only the kinds a clip's labels name are "
            "scored in that clip, and the labels do not list every interval of a kind (the chair clip "
            "labels one of its three standing spells and the absence after he leaves, not the one "
            "before he comes): such predictions count as false positives, so precision is a lower "
            "bound. Photos: the subject is the tallest person; `people` counts every person detected.",
        ]
    out += [
        f"- events: predicted intervals merged over gaps < {st['merge_gap_s']:g} s, shorter than "
        f"{st['min_event_s']:g} s dropped; a match overlaps by >= {st['min_overlap_share']:g} of the "
        f"shorter interval, one-to-one; walking = foot point > {st['walk_bh_per_s']:g} body heights/s",
        "",
    ]

    kinds = report["videos"]["kinds"]
    if kinds:
        out += [h(2, "Video events, per kind (event level)"), ""]
        out += _table(
            ["kind", "true", "pred", "TP", "P", "R", "F1", "onset med/worst s", "end med/worst s", "note"],
            [_event_row(k, v) for k, v in kinds.items()],
            markdown,
        )
        out.append("")
    clauses = report["videos"]["clauses"]
    if clauses:
        out += [h(2, "Video violations, per clause (event level)"), ""]
        out += _table(
            ["clause", "true", "pred", "TP", "P", "R", "F1", "onset med/worst s", "end med/worst s", "note"],
            [_event_row(k, v) for k, v in clauses.items()],
            markdown,
        )
        out.append("")

    attrs = report["images"]["attributes"]
    if attrs:
        out += [h(2, "Photos, per attribute (the subject's features; people = persons detected)"), ""]
        out += _table(
            ["attribute", "n", "right", "accuracy"],
            [[k, v["n"], v["right"], v["accuracy"]] for k, v in attrs.items()],
            markdown,
        )
        misses = [(k, m) for k, v in attrs.items() for m in v["misses"]]
        if misses:
            out += ["", "Misses:", ""]
            out += [f"- {k}: `{m['file']}` expected {m['expected']}, got {m['got']}" for k, m in misses]
        skipped = [(k, m) for k, v in attrs.items() for m in v["not_scored"]]
        out += [f"- {k}: `{m['file']}` {m['expected']} not scored ({m['why']})" for k, m in skipped]
        out.append("")
    pclauses = report["images"]["clauses"]
    if pclauses:
        out += [h(2, "Photos, per clause (rule on the one-frame observation, every sustain 0)"), ""]
        rows = []
        for k, v in pclauses.items():
            why = "; ".join(sorted({m["why"] for m in v["not_scored"]}))
            rows.append([k, v["n"], v["right"], v["accuracy"], why])
        out += _table(["clause", "n", "right", "accuracy", "not scored"], rows, markdown)
        misses = [(k, m) for k, v in pclauses.items() for m in v["misses"]]
        if misses:
            out += ["", "Misses:", ""]
            out += [
                f"- {k}: `{m['file']}` expected {m['expected']}, "
                + (
                    f"fired ({', '.join(m['behaviours']) or 'no behaviour'})"
                    if m["fired"]
                    else "did not fire"
                )
                for k, m in misses
            ]
        out.append("")

    videos = [f for f in report["files"] if f["kind"] == "video" and f["status"] == "ok"]
    if videos:
        out += [h(2, "Per clip"), ""]
        rows = []
        for f in videos:
            for key, v in f["kinds"].items():
                rows.append(
                    [f["name"], key, _iv(v["truth"]), _iv(v["pred"]), f"{v['tp']}/{v['fp']}/{v['fn']}"]
                )
        out += _table(["file", "kind", "truth", "predicted", "TP/FP/FN"], rows, markdown)
        also = [(f["name"], k, iv) for f in videos for k, iv in f["also_predicted"].items()]
        if also:
            out += ["", "Also predicted (kinds not labelled in that clip; not scored):", ""]
            out += [f"- `{name}` {k}: {_iv(iv)}" for name, k, iv in also]
        out.append("")

    problems = [f for f in report["files"] if f["status"] != "ok"]
    notes = list(report["notes"]) + [
        f"`{f['name']}`: {n}" for f in report["files"] for n in f.get("notes", [])
    ]
    if problems or notes:
        out += [h(2, "Skipped files and notes"), ""]
        out += [f"- `{f['name']}`: {f['status']} - {f.get('note', '')}" for f in problems]
        out += [f"- {n}" for n in dict.fromkeys(notes)]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _event_row(key: str, v: Mapping[str, Any]) -> list[Any]:
    on, end = v["onset_error"], v["end_error"]
    return [
        key,
        v["n_true"],
        v["n_pred"],
        v["tp"],
        v["precision"],
        v["recall"],
        v["f1"],
        f"{_fmt(on['median_s'], 1)} / {_fmt(on['worst_s'], 1)}",
        f"{_fmt(end['median_s'], 1)} / {_fmt(end['worst_s'], 1)}",
        "; ".join(v["notes"]),
    ]


# ============================================================================================ CLI

#: `--video-weights` of evaluate, analyze and serve (`vision.detect.video_weights_for`).
VIDEO_WEIGHTS_HELP = (
    "Detector for video frames: 'auto' (the int8 OpenVINO model `python -m vision.convert` makes, "
    "where the weights are the int8 TFLite export and this CPU lacks int8 dot products: about 0.6 "
    "of LiteRT's time there), 'same' (the --weights model), or a path. Still images keep --weights."
)


def evaluate_command(
    labels: Annotated[
        Path, typer.Option("--labels", help="Ground-truth YAML (see ../shared/media/labels.yaml).")
    ],
    media: Annotated[Path, typer.Option("--media", help="Folder holding the labelled files.")],
    fps: Annotated[float, typer.Option(help="Analysis rate for the clips, frames per second.")] = DEFAULT_FPS,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Evaluate only this file (name or glob); repeat for more."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the report as Markdown.")] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the JSON report to this file.")
    ] = None,
    weights: Annotated[
        str | None, typer.Option(help="Detector weights (see README for the search order).")
    ] = None,
    video_weights: Annotated[str, typer.Option(help=VIDEO_WEIGHTS_HELP)] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", help="No per-file progress on stderr.")] = False,
) -> None:
    """Run the pipeline over labelled media and score it: per-kind event P/R/F1 and timing on clips,
    per-attribute and per-clause accuracy on photos. Exits 0 whatever the score."""
    report = evaluate(
        labels,
        media,
        fps=fps,
        only=only,
        weights=weights,
        video_weights=video_weights,
        progress=None if quiet else (lambda msg: typer.echo(msg, err=True)),
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=1))
        return
    command = None
    if markdown:
        parts = [".venv/bin/python -m service.evaluate", f"--labels {labels}", f"--media {media}"]
        if fps != DEFAULT_FPS:
            parts.append(f"--fps {fps:g}")
        parts += [f"--only {o}" for o in only or []]
        if video_weights != "auto":
            parts.append(f"--video-weights {video_weights}")
        command = " ".join(parts) + " --markdown > docs/accuracy.md"
    typer.echo(format_report(report, markdown=markdown, command=command), nl=False)


def main() -> None:
    """`python -m service.evaluate`: the command on its own, before it is mounted in `postwatch`."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    from vision.detect import WeightsError

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(evaluate_command)
    try:
        app(standalone_mode=False)
    except (LabelsError, WeightsError) as exc:
        typer.echo(f"postwatch evaluate: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
