"""Per-clause checks: one pure function per rule, from one person in one frame to a per-frame state.

Why pure functions: a check sees one `PersonObservation` (features, landmarks, evidence),
a short `PersonHistory` of the same track (for motion: running, leg shaking) and the
clause's resolved parameters, and says whether this frame breaks the clause. It keeps
no state and never reads pixels, so it can be tested on hand-built or recorded
observations. Time (sustain, grace, cooldown) is the engine's and `rules.temporal`'s job.

A check returns `Check.state`:

* True - this frame breaks the clause (the `details["behaviours"]` say how),
* False - this frame keeps it,
* None - unknown: the features it needs are `unknown`, so it neither fires nor clears.

Checks that look at several behaviours (seated misconduct, private matters...) combine
them with three-valued logic (`combine`): any True fires; all False clears; otherwise
unknown. So an invisible pair of legs cannot clear a "crossed legs" violation.

The function names are the catalogue's `rule` names (`rules/clauses.yaml`), and `RULES`
maps each rule to the gates it feeds: usually one gate named after the clause, sometimes
a sub-gate with its own sustain (`d5.sit.01/desk`, `d1.floor.03/long`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rules.door import DOOR_FACING_KEY, door_facing_yaw, judge_door_angle
from rules.geometry import FLOOR_H_KEY, floor_distance_m, floor_homography, to_floor
from vision.observation import Measure, PersonObservation
from vision.pose import (
    L_ANKLE,
    L_EAR,
    L_HEEL,
    L_HIP,
    L_KNEE,
    L_SHOULDER,
    NOSE,
    R_ANKLE,
    R_EAR,
    R_HEEL,
    R_HIP,
    R_KNEE,
    R_SHOULDER,
)

# -- constants that are not (yet) clause parameters ------------------------------------------
# They live here, named, rather than in clauses.yaml because the catalogue does not list them;
# a site cannot override them until the catalogue grows the matching parameter.

VISIBLE = 0.5  # landmark visibility above which a landmark position is trusted (as in vision.features)
TRUNK_VISIBLE = 0.4  # shoulders/hips: the level vision.features uses for the trunk
ASSUMED_BODY_HEIGHT_M = 1.65  # turns metres into body heights until a floor scale exists
V_MIN_DEG, V_MAX_DEG = 30.0, 90.0  # a "V" between the feet (D11 asks for about 60 degrees)
# Defaults of d5.sit.01's recline_deg / desk_lean_deg / desk_pitch_deg (rules/clauses.yaml):
RECLINE_DEG = 25.0  # trunk leaning back further than this while seated is half lying (半躺半坐)
DESK_LEAN_DEG = 45.0  # trunk leaning forward further than this while seated: down on the desk
DESK_PITCH_DEG = 45.0  # head bowed further than this while seated: head down on the desk
BOWED_DEG = 20.0  # head bowed enough to be reading (vision.features uses 20 for looking at a phone)
SHAKE_WINDOW_S = 3.0  # leg shaking is judged over this much knee history
SHAKE_REVERSALS = 3  # direction reversals of the knee within the window that make a shake
SHAKE_SWING_BOX = 0.02  # a reversal counts only after a swing of this share of the box height
SHAKE_MIN_SPAN_S = 2.0  # less knee history than this cannot tell shaking from stillness
KNEE_ABOVE_HIP_TORSO = 0.15  # a knee this far (torso lengths) above the hip is a leg up
SPEED_WINDOW_S = 1.0  # walking and running speed: the foot point's robust velocity over this window
SPEED_MIN_SPAN_S = 0.6  # less track history than this gives no speed
WALK_BH_PER_S = 0.5  # above this the person is walking (about 0.8 m/s for 1.65 m)
WALK_MPS = 0.8  # the same, with a floor scale: above this (m/s) the person is walking
HEEL_VISIBLE = 0.5  # heels trusted for a metric heel gap (vision.features.feet uses 0.5 for the feet)
HISTORY_S = 5.0  # how much per-track history the engine keeps
WORK_ZONE_NOTE = "whole frame (no zones configured)"
# Site context the session puts in `person.evidence` (see service/session.py, CameraRules._with_role):
SITE_EVIDENCE_KEYS = (DOOR_FACING_KEY, FLOOR_H_KEY)

TRACKED_LANDMARKS = (L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE)


# -- results ---------------------------------------------------------------------------------


@dataclass
class Check:
    """One rule's verdict on one person in one frame.

    `score` ranks the frames of a run so the engine can pick the clearest one as the
    snapshot (higher = clearer); `details["behaviours"]` maps each behaviour key seen in
    this frame (e.g. "on_hips") to its English description.
    """

    state: bool | None
    confidence: float = 0.0
    score: float | None = None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def behaviours(self) -> dict[str, str]:
        return dict(self.details.get("behaviours") or {})


@dataclass(frozen=True)
class Finding:
    """One sub-behaviour's verdict (crossed legs, arms folded...) before `combine` merges them."""

    key: str  # behaviour key, e.g. "crossed_legs"
    state: bool | None
    confidence: float = 0.0
    text: str = ""  # English description; for a True finding it names the behaviour
    score: float | None = None  # defaults to the confidence


def combine(findings: Iterable[Finding], details: dict[str, Any] | None = None) -> Check:
    """Three-valued OR of the findings: any True fires, all False clears, otherwise unknown.

    Why not "ignore the unknown ones": a behaviour we cannot see may be the one still
    going on, and clearing on it would split or end a violation that is not over.
    """
    found = list(findings)
    out = dict(details or {})
    out["checked"] = {f.key: f.state for f in found}
    bad = [f for f in found if f.state is True]
    if bad:
        bad.sort(key=lambda f: -(f.score if f.score is not None else f.confidence))
        out["behaviours"] = {f.key: f.text for f in bad}
        best = bad[0]
        return Check(
            True,
            confidence=max(f.confidence for f in bad),
            score=best.score if best.score is not None else best.confidence,
            message="; ".join(f.text for f in bad),
            details=out,
        )
    unknown = [f.key for f in found if f.state is None]
    if unknown or not found:
        return Check(None, message=f"unknown: {', '.join(unknown) or 'nothing to check'}", details=out)
    return Check(False, confidence=min(f.confidence for f in found), message="ok", details=out)


def _margin_score(confidence: float, value: float, limit: float) -> float:
    """Confidence weighted by how far past the limit the value is: a deeper lean is a clearer snapshot."""
    margin = (value - limit) / limit if limit > 0 else 1.0
    return float(confidence) * (1.0 + min(1.0, max(0.0, margin)))


# -- per-track history -----------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """What a motion rule keeps of one frame: time, box, foot point and a few landmarks (pixels)."""

    t: float
    box: tuple[float, float, float, float]
    foot: tuple[float, float]
    landmarks: dict[int, tuple[float, float]]  # the TRACKED_LANDMARKS that were visible

    @property
    def height_px(self) -> float:
        return max(self.box[3] - self.box[1], 1.0)


@dataclass
class PersonHistory:
    """A short history of one track, so that rules can see motion without keeping state themselves.

    The engine adds the current frame before it runs the checks, so the last sample is
    "now". Frames where the person was not detected are simply absent.
    """

    track_id: int | None = None
    max_age_s: float = HISTORY_S
    samples: deque[Sample] = field(default_factory=deque)

    @property
    def last_t(self) -> float | None:
        return self.samples[-1].t if self.samples else None

    def add(self, t: float, person: PersonObservation) -> None:
        """Append the person's frame at `t` (a repeated time replaces, an older one is ignored)."""
        t = float(t)
        if self.samples and t < self.samples[-1].t - 1e-9:
            return
        if self.samples and abs(t - self.samples[-1].t) <= 1e-9:
            self.samples.pop()
        landmarks: dict[int, tuple[float, float]] = {}
        if person.keypoints is not None and person.visibility is not None:
            for i in TRACKED_LANDMARKS:
                if person.visibility[i] >= VISIBLE:
                    landmarks[i] = (float(person.keypoints[i, 0]), float(person.keypoints[i, 1]))
        box = tuple(float(v) for v in person.box)
        self.samples.append(Sample(t, box, person.foot_point, landmarks))  # type: ignore[arg-type]
        while self.samples and self.samples[0].t < t - self.max_age_s - 1e-9:
            self.samples.popleft()

    def window(self, seconds: float) -> list[Sample]:
        """The samples of the last `seconds` (inclusive), oldest first."""
        if not self.samples:
            return []
        since = self.samples[-1].t - seconds - 1e-9
        return [s for s in self.samples if s.t >= since]

    def speed_bh_per_s(
        self, window_s: float = SPEED_WINDOW_S, min_span_s: float = SPEED_MIN_SPAN_S
    ) -> float | None:
        """Foot-point speed in body heights per second, None with too little history.

        The foot point's velocity over the window by a robust line fit (`robust_speed`), not
        the end-to-end displacement nor the median of the frame-to-frame steps: one frame whose
        foot point jumps (BlazePose places the ankles of a person cut off by the frame's edge
        far below it, or a box jitters) spoils the two steps beside it, which at the start of a
        track are all the steps there are, and read as running.
        """
        samples = self._speed_window(window_s, min_span_s)
        if samples is None:
            return None
        height = float(np.median([s.height_px for s in samples]))
        speed = robust_speed([(s.t, s.foot) for s in samples])
        return None if speed is None else speed / height

    def speed_mps(
        self, floor_h: np.ndarray, window_s: float = SPEED_WINDOW_S, min_span_s: float = SPEED_MIN_SPAN_S
    ) -> float | None:
        """Foot-point speed on the floor in metres per second (image-to-floor homography `floor_h`).

        As `speed_bh_per_s` (robust fit, same window), but each foot point is projected to
        the floor first, so a person far from the camera is not slower than one near it.
        Foot points on the horizon (no floor position) are left out.
        """
        samples = self._speed_window(window_s, min_span_s)
        if samples is None:
            return None
        on_floor = [(s.t, xy) for s in samples if (xy := to_floor(floor_h, s.foot)) is not None]
        return robust_speed(on_floor)

    def _speed_window(self, window_s: float, min_span_s: float) -> list[Sample] | None:
        """The samples a speed is measured over, None when they are too few or span too little time."""
        samples = self.window(window_s)
        if len(samples) < 3 or samples[-1].t - samples[0].t < min_span_s - 1e-9:
            return None
        return samples

    def landmark_track(
        self, index: int, window_s: float, relative_to: int | None = None
    ) -> list[tuple[float, float]]:
        """(t, y) of one landmark over the window, where it was visible.

        With `relative_to`, y is measured from that landmark (e.g. the knee from the
        hip), which removes the body's own bobbing and the camera's shake.
        """
        out = []
        for s in self.window(window_s):
            if index not in s.landmarks:
                continue
            y = s.landmarks[index][1]
            if relative_to is not None:
                if relative_to not in s.landmarks:
                    continue
                y -= s.landmarks[relative_to][1]
            out.append((s.t, y))
        return out

    def median_height_px(self, window_s: float) -> float | None:
        samples = self.window(window_s)
        return float(np.median([s.height_px for s in samples])) if samples else None


def robust_speed(points: Sequence[tuple[float, tuple[float, float]]]) -> float | None:
    """Speed (units per second) of points (t, (x, y)) by the Theil-Sen estimator, None with
    fewer than three points.

    Each axis's velocity is the median of the slopes between every pair of points; the speed
    is the length of that velocity. Why Theil-Sen: it ignores up to about 29 % of outlying
    points, so one frame's jump (an outlier) does not move it, even over three frames, where
    the median of frame-to-frame steps is the jump's size.
    """
    if len(points) < 3:
        return None
    t = np.array([p[0] for p in points], dtype=float)
    xy = np.array([p[1] for p in points], dtype=float)
    i, j = np.triu_indices(len(points), 1)  # every pair, earlier point first
    dt = t[j] - t[i]
    keep = dt > 1e-9
    if int(keep.sum()) < 2:
        return None
    velocity = np.median((xy[j] - xy[i])[keep] / dt[keep, None], axis=0)
    return math.hypot(float(velocity[0]), float(velocity[1]))


def count_reversals(values: Iterable[float], swing: float) -> int:
    """Direction reversals of a series, ignoring wiggles smaller than `swing` (a zig-zag filter).

    Why hysteresis: landmark noise reverses direction every frame; only a move back of
    at least `swing` from the last extreme is a real change of direction.
    """
    it = iter(values)
    try:
        first = next(it)
    except StopIteration:
        return 0
    lo = hi = first
    direction = 0  # +1 rising, -1 falling, 0 not yet known
    extreme = first
    reversals = 0
    for v in it:
        if direction == 0:
            lo, hi = min(lo, v), max(hi, v)
            if v - lo >= swing:
                direction, extreme = 1, v
            elif hi - v >= swing:
                direction, extreme = -1, v
        elif direction > 0:
            if v > extreme:
                extreme = v
            elif extreme - v >= swing:
                reversals, direction, extreme = reversals + 1, -1, v
        else:
            if v < extreme:
                extreme = v
            elif v - extreme >= swing:
                reversals, direction, extreme = reversals + 1, 1, v
    return reversals


# -- geometry helpers ------------------------------------------------------------------------


def _seen(person: PersonObservation, *idx: int, level: float = VISIBLE) -> bool:
    vis = person.visibility
    return vis is not None and person.keypoints is not None and all(vis[i] >= level for i in idx)


def _torso_px(person: PersonObservation) -> float:
    """Shoulder-mid to hip-mid in pixels (the unit of vision.features), else a share of the box."""
    if _seen(person, L_SHOULDER, R_SHOULDER, L_HIP, R_HIP, level=TRUNK_VISIBLE):
        kp = person.keypoints
        assert kp is not None
        sh = (kp[L_SHOULDER] + kp[R_SHOULDER]) / 2
        hip = (kp[L_HIP] + kp[R_HIP]) / 2
        return float(max(np.linalg.norm(sh - hip), 1.0))
    return max(0.3 * person.height_px, 1.0)


def _facing_xz(person: PersonObservation) -> tuple[np.ndarray, str]:
    """The direction the person faces, as a unit (x, z) vector in world coordinates, and its source.

    A seated person's thighs point forward; failing that, the nose is in front of the
    ears; failing that we assume the person faces the camera (-z), which is how a desk
    camera is mounted.
    """
    w, vis = person.keypoints_world, person.visibility
    if w is not None and vis is not None:
        for hip, knee in ((L_HIP, L_KNEE), (R_HIP, R_KNEE)):
            if vis[hip] >= TRUNK_VISIBLE and vis[knee] >= VISIBLE:
                thigh = w[knee] - w[hip]
                flat = np.array([thigh[0], thigh[2]], dtype=float)
                if np.linalg.norm(flat) >= 0.4 * max(float(np.linalg.norm(thigh)), 1e-6):
                    return flat / np.linalg.norm(flat), "thighs"
        if vis[NOSE] >= VISIBLE and max(vis[L_EAR], vis[R_EAR]) >= 0.2:
            d = w[NOSE] - (w[L_EAR] + w[R_EAR]) / 2
            flat = np.array([d[0], d[2]], dtype=float)
            if np.linalg.norm(flat) > 1e-3:
                return flat / np.linalg.norm(flat), "face"
    return np.array([0.0, -1.0]), "camera"


def signed_trunk_lean(person: PersonObservation) -> tuple[float | None, str]:
    """Trunk angle from vertical in degrees, positive forward and negative backward, and how
    "forward" was found. None when the shoulders and hips are not visible in 3-D.

    `Features.trunk_lean_deg` is unsigned; reclining (back) and slumping onto the desk
    (forward) are different clauses' wording, so the seated rule needs the sign.
    """
    w = person.keypoints_world
    if w is None or not _seen(person, L_SHOULDER, R_SHOULDER, L_HIP, R_HIP, level=TRUNK_VISIBLE):
        return None, "none"
    trunk = (w[L_SHOULDER] + w[R_SHOULDER]) / 2 - (w[L_HIP] + w[R_HIP]) / 2
    forward, source = _facing_xz(person)
    ahead = float(trunk[0] * forward[0] + trunk[2] * forward[1])
    up = -float(trunk[1])  # world y points down
    return math.degrees(math.atan2(ahead, up)), source


# -- standing --------------------------------------------------------------------------------

FORBIDDEN_HANDS = {
    "on_hips": "hands on hips (叉腰)",
    "in_pockets": "hands in pockets (插兜)",
    "arms_folded": "arms folded on the chest (抱胸)",
}
ALLOWED_HANDS = {"clasped_front", "clasped_behind", "at_sides"}
_PER_HAND = {"on_hips": "on_hip", "in_pockets": "pocket"}  # evidence's per-hand names
_OFF_DUTY_POSTURES = ("sitting", "lying")  # the standing clauses do not apply
UNKNOWN_POSTURE_FACTOR = 0.8  # confidence discount when the posture could not be seen


def _not_standing(person: PersonObservation) -> Check | None:
    posture = person.features.posture
    if posture.value in _OFF_DUTY_POSTURES:
        return Check(None, message=f"posture {posture.value}: a standing clause does not apply")
    return None


def forbidden_hands(person: PersonObservation, history: PersonHistory, params: Mapping[str, float]) -> Check:
    """d5.stance.01: hands on hips, in pockets or arms folded while standing.

    An unknown posture counts as "could be standing": a half-body view has no knees to
    tell, and the forbidden hands are what the clause is about. Only a seen sitting or
    lying posture turns the rule off (unknown, not clear: the person is not standing).
    """
    off = _not_standing(person)
    if off is not None:
        return off
    f = person.features
    hands = f.hands
    details: dict[str, Any] = {"hands": hands.value, "posture": f.posture.value}
    per_hand = person.evidence.get("hands") if isinstance(person.evidence.get("hands"), dict) else None
    if per_hand:
        details["per_hand"] = dict(per_hand)
    if not hands.known:
        return Check(None, message="hands not visible", details=details)
    if hands.value not in FORBIDDEN_HANDS:
        allowed = "allowed" if hands.value in ALLOWED_HANDS else "not a forbidden stance"
        return Check(False, hands.confidence, message=f"hands {hands.value} ({allowed})", details=details)
    text = FORBIDDEN_HANDS[hands.value]
    if per_hand and hands.value in _PER_HAND:
        sides = [s for s in ("left", "right") if per_hand.get(s) == _PER_HAND[hands.value]]
        if len(sides) == 1:
            text = f"{text}, {sides[0]} hand"
    conf = hands.confidence * (1.0 if f.posture.known else UNKNOWN_POSTURE_FACTOR)
    details["behaviours"] = {hands.value: text}
    return Check(True, conf, score=conf, message=text, details=details)


def trunk_lean(person: PersonObservation, history: PersonHistory, params: Mapping[str, float]) -> Check:
    """d5.stance.02: slouching or leaning on a wall or counter, trunk_lean_deg > lean_deg while standing.

    Unlike the hands, a lean alone cannot tell standing from sitting: a cashier seated
    behind a counter (knees hidden, posture unknown) leans forward to write. So a lean
    over the limit fires only on a seen standing posture; under the limit it clears
    whatever the posture (upright either way).
    """
    off = _not_standing(person)
    if off is not None:
        return off
    f = person.features
    limit = float(params["lean_deg"])
    lean = f.trunk_lean_deg
    details: dict[str, Any] = {"posture": f.posture.value, "lean_deg": lean.value, "limit_deg": limit}
    if lean.value is None:
        return Check(None, message="trunk not visible", details=details)
    if lean.value <= limit:
        return Check(
            False, lean.confidence, message=f"trunk {lean.value:.0f} deg from vertical", details=details
        )
    if f.posture.value != "standing":
        return Check(None, message="trunk leaning but posture unknown (could be seated)", details=details)
    text = f"trunk leaning {lean.value:.0f} deg from vertical (limit {limit:g}; 站立端正)"
    details["behaviours"] = {"leaning": text}
    conf = min(lean.confidence, f.posture.confidence) if f.posture.confidence else lean.confidence
    return Check(True, conf, score=_margin_score(conf, lean.value, limit), message=text, details=details)


def heel_gap_limit_bh(params: Mapping[str, float]) -> float:
    """The heel-gap limit in body heights: `heel_gap_bh` if given, else heel_gap_m / 1.65 m.

    Why: `Features.heel_gap` is in body heights until a floor scale exists; 8 cm is
    about 0.05 of a 1.65 m person.
    """
    if "heel_gap_bh" in params:
        return float(params["heel_gap_bh"])
    return float(params["heel_gap_m"]) / ASSUMED_BODY_HEIGHT_M


def heel_gap_m(person: PersonObservation, floor_h: np.ndarray) -> tuple[float | None, float]:
    """The heel gap on the floor in metres, from both heels' image points projected with the
    floor homography, and its confidence (the heels' visibility); None when a heel is not seen.

    Why the heels' image points: the heel landmark sits where the foot meets the floor, so
    the homography (which assumes points on the floor) places it right; a raised foot reads
    a little long.
    """
    if not _seen(person, L_HEEL, R_HEEL, level=HEEL_VISIBLE):
        return None, 0.0
    kp, vis = person.keypoints, person.visibility
    assert kp is not None and vis is not None
    gap = floor_distance_m(floor_h, kp[L_HEEL], kp[R_HEEL])
    if gap is None:
        return None, 0.0
    return gap, float(min(vis[L_HEEL], vis[R_HEEL]))


def feet_v_shape(person: PersonObservation, history: PersonHistory, params: Mapping[str, float]) -> Check:
    """d5.stance.03: feet in a V (toe angle V_MIN..V_MAX deg) with the heels within 8 cm.

    With a floor scale (`person.evidence["floor_h"]`) the heel gap is measured in metres
    on the floor and compared with heel_gap_m: the "metric" check. Without one it is an
    angle-only / body-height check: the heel gap is compared in body heights (heel_gap_m /
    1.65 m), so it is only as good as the image plane view.
    """
    off = _not_standing(person)
    if off is not None:
        return off
    floor_h = floor_homography(person.evidence)
    if floor_h is not None:
        return _feet_v_shape_metric(person, floor_h, params)
    f = person.features
    limit = heel_gap_limit_bh(params)
    toe, gap = f.toe_angle_deg, f.heel_gap
    details: dict[str, Any] = {
        "toe_angle_deg": toe.value,
        "heel_gap_bh": gap.value,
        "heel_gap_limit_bh": round(limit, 4),
        "v_range_deg": [V_MIN_DEG, V_MAX_DEG],
        "scale": "angle-only / body heights (no floor scale)",
        "check": "body-height",
        "posture": f.posture.value,
    }
    findings = [_not_v(toe)]
    if gap.value is None:
        findings.append(Finding("heels_apart", None))
    else:
        bad = gap.value > limit
        text = (
            f"heels {gap.value:.3f} body heights apart (limit {limit:.3f} body heights = "
            f"{limit * ASSUMED_BODY_HEIGHT_M * 100:.0f} cm at {ASSUMED_BODY_HEIGHT_M:g} m; "
            "body-height check, 距离限8厘米内)"
        )
        score = _margin_score(gap.confidence, gap.value, limit) if bad else None
        findings.append(Finding("heels_apart", bad, gap.confidence, text if bad else "heels close", score))
    check = combine(findings, details)
    if check.state is True and not f.posture.known:
        check.confidence *= UNKNOWN_POSTURE_FACTOR
    return check


def _not_v(toe: Measure) -> Finding:
    """The toe-angle half of d5.stance.03 (the same with or without a floor scale)."""
    if toe.value is None:
        return Finding("not_v", None)
    bad = not V_MIN_DEG <= toe.value <= V_MAX_DEG
    text = f"feet not in a V (toe angle {toe.value:.0f} deg, expected {V_MIN_DEG:g}-{V_MAX_DEG:g}; 脚呈V字形)"
    return Finding("not_v", bad, toe.confidence, text if bad else "feet in a V")


def _feet_v_shape_metric(
    person: PersonObservation, floor_h: np.ndarray, params: Mapping[str, float]
) -> Check:
    """d5.stance.03 with a floor scale: the heel gap in metres against heel_gap_m (the clause's 8 cm)."""
    f = person.features
    limit = float(params["heel_gap_m"])
    gap, conf = heel_gap_m(person, floor_h)
    details: dict[str, Any] = {
        "toe_angle_deg": f.toe_angle_deg.value,
        "heel_gap_m": None if gap is None else round(gap, 4),
        "heel_gap_limit_m": limit,
        "v_range_deg": [V_MIN_DEG, V_MAX_DEG],
        "scale": "metres on the floor (floor scale)",
        "check": "metric",
        "posture": f.posture.value,
    }
    findings = [_not_v(f.toe_angle_deg)]
    if gap is None:
        findings.append(Finding("heels_apart", None))
    else:
        bad = gap > limit
        text = f"heels {gap * 100:.0f} cm apart (limit {limit * 100:g} cm; metric check, 距离限8厘米内)"
        score = _margin_score(conf, gap, limit) if bad else None
        findings.append(Finding("heels_apart", bad, conf, text if bad else "heels close", score))
    check = combine(findings, details)
    if check.state is True and not f.posture.known:
        check.confidence *= UNKNOWN_POSTURE_FACTOR
    return check


def door_angle(person: PersonObservation, history: PersonHistory, params: Mapping[str, float]) -> Check:
    """d1.reception.05: door-post staff stand at target_deg (45) ± tolerance_deg (20) to the door.

    The angle to the door is the wrapped difference between the body yaw and the door's
    facing yaw (`person.evidence["door_facing_yaw_deg"]`, the yaw of someone at the post
    squarely facing the door; see rules.door). No door for this camera, an unknown yaw or
    a seen sitting or lying posture -> unknown. As for the hands, an unknown posture counts
    as "could be standing" (a door camera often sees half a body), with its confidence
    discounted: the orientation is what the clause is about.
    """
    off = _not_standing(person)
    if off is not None:
        return off
    f = person.features
    facing = door_facing_yaw(person.evidence)
    yaw = f.body_yaw_deg
    details: dict[str, Any] = {
        "body_yaw_deg": None if yaw.value is None else round(yaw.value, 1),
        "door_facing_yaw_deg": facing,
        "target_deg": float(params["target_deg"]),
        "tolerance_deg": float(params["tolerance_deg"]),
        "posture": f.posture.value,
    }
    if facing is None:
        return Check(None, message=f"no door for this camera ({DOOR_FACING_KEY} not set)", details=details)
    if yaw.value is None:
        return Check(None, message="body orientation unknown", details=details)
    judged = judge_door_angle(yaw.value, facing, params["target_deg"], params["tolerance_deg"])
    details["angle_to_door_deg"] = round(judged.angle_deg, 1)
    if not judged.outside:
        return Check(
            False,
            yaw.confidence,
            message=f"standing at {judged.angle_deg:.0f} deg to the door (target {judged.target_deg:g})",
            details=details,
        )
    text = judged.describe()
    details["behaviours"] = {"door_angle": text}
    conf = yaw.confidence * (1.0 if f.posture.known else UNKNOWN_POSTURE_FACTOR)
    limit = max(judged.tolerance_deg, 1.0)
    return Check(True, conf, score=_margin_score(conf, judged.off_deg, limit), message=text, details=details)


# -- sitting ---------------------------------------------------------------------------------

SEATED_TEXT = {
    "crossed_legs": "crossed legs (跷二郎腿)",
    "arms_folded": "arms folded (双手抱胸)",
    "reclining": "reclining, half lying (半躺半坐)",
    "leg_shaking": "leg shaking (摇腿)",
    "on_desk": "head or upper body down on the desk (趴在工作台上)",
}


def _seated(person: PersonObservation) -> Check | None:
    """None when the person is seen sitting; otherwise the Check a seated rule returns."""
    posture = person.features.posture
    if posture.value == "sitting":
        return None
    if not posture.known:
        return Check(None, message="posture unknown", details={"posture": posture.value})
    return Check(
        False, posture.confidence, message=f"posture {posture.value}", details={"posture": posture.value}
    )


def leg_shaking(history: PersonHistory, window_s: float = SHAKE_WINDOW_S) -> Finding:
    """Periodic vertical knee motion: >= SHAKE_REVERSALS reversals of a knee's y (relative to its hip)
    with a swing > SHAKE_SWING_BOX of the box height, within `window_s`.

    At 5 fps only shaking slower than about 2.5 Hz can be seen; faster jiggling aliases.
    """
    height = history.median_height_px(window_s)
    if height is None:
        return Finding("leg_shaking", None)
    swing = SHAKE_SWING_BOX * height
    known = False
    best = 0
    for knee, hip in ((L_KNEE, L_HIP), (R_KNEE, R_HIP)):
        track = history.landmark_track(knee, window_s, relative_to=hip)
        if len(track) < 6 or track[-1][0] - track[0][0] < SHAKE_MIN_SPAN_S - 1e-9:
            continue
        known = True
        best = max(best, count_reversals((y for _, y in track), swing))
    if not known:
        return Finding("leg_shaking", None)
    shaking = best >= SHAKE_REVERSALS
    text = (
        f"{SEATED_TEXT['leg_shaking']}: {best} knee reversals in {window_s:g} s" if shaking else "legs still"
    )
    conf = min(1.0, 0.5 + 0.1 * best) if shaking else 0.6
    return Finding("leg_shaking", shaking, conf, text)


def seated_misconduct(
    person: PersonObservation, history: PersonHistory, params: Mapping[str, float]
) -> Check:
    """d5.sit.01 (main gate): seated with crossed legs, arms folded, reclining, or shaking a leg.

    Head or upper body down on the desk has its own, longer sustain (`lying_on_desk_s`)
    and is the `d5.sit.01/desk` gate (`lying_on_desk`).
    """
    off = _seated(person)
    if off is not None:
        return off
    f = person.features
    findings = []
    legs = f.legs
    if not legs.known:
        findings.append(Finding("crossed_legs", None))
    else:
        findings.append(
            Finding("crossed_legs", legs.value == "crossed", legs.confidence, SEATED_TEXT["crossed_legs"])
        )
    hands = f.hands
    if not hands.known:
        findings.append(Finding("arms_folded", None))
    else:
        findings.append(
            Finding("arms_folded", hands.value == "arms_folded", hands.confidence, SEATED_TEXT["arms_folded"])
        )
    lean, source = signed_trunk_lean(person)
    details: dict[str, Any] = {"posture": "sitting", "legs": legs.value, "hands": hands.value}
    if lean is not None:
        details["signed_lean_deg"] = round(lean, 1)
        details["forward_from"] = source
        recline = params.get("recline_deg", RECLINE_DEG)
        back = lean < -recline
        text = f"{SEATED_TEXT['reclining']}: trunk {-lean:.0f} deg back (limit {recline:g})"
        conf = f.trunk_lean_deg.confidence or 0.6
        findings.append(Finding("reclining", back, conf, text, _margin_score(conf, -lean, recline)))
    elif f.trunk_lean_deg.value is not None and f.trunk_lean_deg.value <= params.get(
        "recline_deg", RECLINE_DEG
    ):
        findings.append(Finding("reclining", False, f.trunk_lean_deg.confidence))
    else:
        findings.append(Finding("reclining", None))  # leaning, direction unknown
    findings.append(leg_shaking(history))
    return combine(findings, details)


def lying_on_desk(person: PersonObservation, history: PersonHistory, params: Mapping[str, float]) -> Check:
    """d5.sit.01/desk: seated with the trunk far forward (> 45 deg) or the head bowed > 45 deg.

    A separate gate because the clause allows a longer sustain (lying_on_desk_s): bending
    over paperwork for a few seconds is work, lying on the desk for half a minute is not.
    """
    off = _seated(person)
    if off is not None:
        return off
    f = person.features
    findings = []
    desk_lean = params.get("desk_lean_deg", DESK_LEAN_DEG)
    desk_pitch = params.get("desk_pitch_deg", DESK_PITCH_DEG)
    lean, source = signed_trunk_lean(person)
    details: dict[str, Any] = {"posture": "sitting", "head_pitch_deg": f.head_pitch_deg.value}
    if lean is not None:
        details["signed_lean_deg"] = round(lean, 1)
        details["forward_from"] = source
        down = lean > desk_lean
        conf = f.trunk_lean_deg.confidence or 0.6
        text = f"{SEATED_TEXT['on_desk']}: trunk {lean:.0f} deg forward"
        findings.append(Finding("on_desk", down, conf, text, _margin_score(conf, lean, desk_lean)))
    elif f.trunk_lean_deg.value is not None and f.trunk_lean_deg.value <= desk_lean:
        findings.append(Finding("on_desk", False, f.trunk_lean_deg.confidence))
    else:
        findings.append(Finding("on_desk", None))
    pitch = f.head_pitch_deg
    if pitch.value is None:
        findings.append(Finding("head_down", None))
    else:
        down = pitch.value > desk_pitch
        text = f"{SEATED_TEXT['on_desk']}: head bowed {pitch.value:.0f} deg"
        score = _margin_score(pitch.confidence, pitch.value, desk_pitch) if down else None
        findings.append(Finding("head_down", down, pitch.confidence, text, score))
    check = combine(findings, details)
    if check.state:  # one behaviour, however it was seen
        check.details["behaviours"] = {"on_desk": check.message}
    return check


def guard_leg_up(person: PersonObservation, history: PersonHistory, params: Mapping[str, float]) -> Check:
    """d11.sit.01: a seated guard with an ankle at or above hip height, or a knee well above the hip.

    Image y (down is larger): a leg on the desk or a chair arm lifts the ankle to the
    hip line, or the knee above it; a normal seated knee sits about level with the hip,
    hence the KNEE_ABOVE_HIP_TORSO margin.
    """
    posture = person.features.posture
    if posture.value in ("standing", "lying"):
        return Check(
            False, posture.confidence, message=f"posture {posture.value}", details={"posture": posture.value}
        )
    kp = person.keypoints
    if kp is None or person.visibility is None:
        return Check(None, message="no landmarks", details={"posture": posture.value})
    torso = _torso_px(person)
    margin = KNEE_ABOVE_HIP_TORSO * torso
    findings = []
    for side, hip, knee, ankle in (("left", L_HIP, L_KNEE, L_ANKLE), ("right", R_HIP, R_KNEE, R_ANKLE)):
        key = f"{side}_leg_up"
        if not _seen(person, hip, level=TRUNK_VISIBLE):
            findings.append(Finding(key, None))
            continue
        hip_y = float(kp[hip, 1])
        ankle_seen, knee_seen = _seen(person, ankle), _seen(person, knee)
        if ankle_seen and float(kp[ankle, 1]) <= hip_y:
            conf = float(min(person.visibility[ankle], person.visibility[hip]))
            findings.append(
                Finding(
                    key,
                    True,
                    conf,
                    f"{side} leg up: ankle at or above hip height (不得将腿搭在座椅扶手或桌面上)",
                )
            )
        elif knee_seen and float(kp[knee, 1]) < hip_y - margin:
            conf = float(min(person.visibility[knee], person.visibility[hip]))
            findings.append(
                Finding(key, True, conf, f"{side} leg up: knee above the hip (不得将腿搭在座椅扶手或桌面上)")
            )
        elif knee_seen and (ankle_seen or float(kp[knee, 1]) > hip_y):
            findings.append(Finding(key, False, float(person.visibility[knee])))
        else:
            findings.append(Finding(key, None))
    check = combine(findings, {"posture": posture.value})
    if check.state is True and posture.value != "sitting":
        check.confidence *= UNKNOWN_POSTURE_FACTOR
    return check


# -- phone and private matters ---------------------------------------------------------------

PHONE_IN_HAND = ("in_hand", "looking", "at_ear")
PHONE_TEXT = {
    "in_hand": "phone in hand",
    "looking": "looking at a phone",
    "at_ear": "phone held to the ear",
}


def in_work_zone(person: PersonObservation, params: Mapping[str, float]) -> bool:
    """Whether the person stands in a work zone. Until zones exist the whole frame is one."""
    return True


def _phone_details(person: PersonObservation) -> dict[str, Any]:
    out: dict[str, Any] = {"phone": person.features.phone.value}
    boxes = person.evidence.get("phone_boxes")
    if boxes:
        out["phone_boxes"] = boxes
    return out


def phone_call(person: PersonObservation, history: PersonHistory, params: Mapping[str, float]) -> Check:
    """d1.floor.03: phone held to the ear (a call). Both gates use it: the work-zone gate
    (sustain work_zone_sustain_s) and the long-call gate (sustain max_call_s)."""
    phone = person.features.phone
    details = _phone_details(person)
    details["work_zone"] = WORK_ZONE_NOTE
    if not phone.known:
        return Check(None, message="phone state unknown", details=details)
    if phone.value != "at_ear" or not in_work_zone(person, params):
        return Check(False, phone.confidence, message=f"phone {phone.value}", details=details)
    text = "private phone call (phone held to the ear)"
    details["behaviours"] = {"phone_call": text}
    return Check(True, phone.confidence, score=phone.confidence, message=text, details=details)


def guard_phone(person: PersonObservation, history: PersonHistory, params: Mapping[str, float]) -> Check:
    """d11.phone.01: a guard on duty with a phone in hand (held, looked at or at the ear)."""
    phone = person.features.phone
    details = _phone_details(person)
    if not phone.known:
        return Check(None, message="phone state unknown", details=details)
    if phone.value not in PHONE_IN_HAND:
        return Check(False, phone.confidence, message=f"phone {phone.value}", details=details)
    text = f"{PHONE_TEXT[phone.value]} on duty (不准携带个人手机)"
    details["behaviours"] = {f"phone_{phone.value}": text}
    return Check(True, phone.confidence, score=phone.confidence, message=text, details=details)


DRINKS = ("cup", "bottle", "wine glass")
PRIVATE_TEXT = {
    "phone": "using a phone (looking down at it)",
    "reading": "reading (看报)",
    "eating_drinking": "eating or drinking (吃东西/喝水)",
}


def private_matters(person: PersonObservation, history: PersonHistory, params: Mapping[str, float]) -> Check:
    """d1.floor.11: private matters at the desk - phone use, reading, eating or drinking.

    Reading needs a book at the hands *and* the head bowed or the hands in front (a
    book merely lying by the hand is not reading); drinking needs the hand at the mouth
    *and* a cup or bottle (a hand at the mouth alone is a cough or a yawn).
    """
    f = person.features
    findings = []
    if not f.phone.known:
        findings.append(Finding("phone", None))
    else:
        findings.append(
            Finding("phone", f.phone.value == "looking", f.phone.confidence, PRIVATE_TEXT["phone"])
        )

    book = float(f.objects.get("book", 0.0))
    if book <= 0:
        findings.append(Finding("reading", False, 0.5))
    else:
        pitch = f.head_pitch_deg
        bowed = None if pitch.value is None else pitch.value > BOWED_DEG
        front = None if not f.hands.known else f.hands.value in ("clasped_front", "other")
        per_hand = person.evidence.get("hands")
        if isinstance(per_hand, dict) and "front" in per_hand.values():
            front = True
        reading = True if (bowed or front) else (None if bowed is None or front is None else False)
        conf = book * (max(pitch.confidence, f.hands.confidence) or 0.5)
        findings.append(Finding("reading", reading, conf, PRIVATE_TEXT["reading"]))

    drinks = {k: v for k, v in f.objects.items() if k in DRINKS and v > 0}
    for entry in person.evidence.get("other_in_hand") or []:
        if isinstance(entry, (list, tuple)) and entry and entry[0] in DRINKS:
            drinks[str(entry[0])] = max(
                drinks.get(str(entry[0]), 0.0), float(entry[1]) if len(entry) > 1 else 0.5
            )
    if not drinks:
        findings.append(Finding("eating_drinking", False, 0.5))
    elif not f.hands.known:
        findings.append(Finding("eating_drinking", None))
    else:
        drinking = f.hands.value == "at_mouth"
        conf = min(f.hands.confidence, max(drinks.values()))
        findings.append(Finding("eating_drinking", drinking, conf, PRIVATE_TEXT["eating_drinking"]))

    check = combine(findings, {"phone": f.phone.value, "hands": f.hands.value, "objects": dict(f.objects)})
    if check.state:
        check.details["activity"] = next(iter(check.behaviours))
        check.details["activities"] = list(check.behaviours)
    return check


# -- walking ---------------------------------------------------------------------------------

WALK_TEXT = {
    "running": "running (奔跑)",
    "pockets_walking": "walking with hands in pockets (不要将手插进口袋)",
}


def running_or_hands_in_pockets(
    person: PersonObservation, history: PersonHistory, params: Mapping[str, float]
) -> Check:
    """d5.walk.01: running, or walking with the hands in the pockets.

    With a floor scale (`person.evidence["floor_h"]`) speed is the foot point's on the
    floor in m/s against max_speed_mps (the clause's 2.5 m/s): the "metric" check. Without
    one it is in body heights per second (box height); `max_speed_bh_per_s` is the
    catalogue's stand-in for 2.5 m/s, and running straight at the camera, which barely
    moves the foot point across the image, is missed. The foot point is between the
    ankles (a few cm above the floor) when they are seen: close enough for a speed.
    """
    f = person.features
    if f.posture.value in ("sitting", "lying"):
        return Check(
            False,
            f.posture.confidence,
            message=f"posture {f.posture.value}",
            details={"posture": f.posture.value},
        )
    floor_h = floor_homography(person.evidence)
    details: dict[str, Any] = {"hands": f.hands.value}
    if floor_h is not None:
        limit = float(params["max_speed_mps"])
        speed = history.speed_mps(floor_h)
        walking, unit = WALK_MPS, "m/s"
        details |= {
            "speed_mps": None if speed is None else round(speed, 3),
            "max_speed_mps": limit,
            "scale": "metres per second on the floor (floor scale)",
            "check": "metric",
        }
    else:
        limit = float(params["max_speed_bh_per_s"])
        speed = history.speed_bh_per_s()
        walking, unit = WALK_BH_PER_S, "body heights/s"
        details |= {
            "speed_bh_per_s": None if speed is None else round(speed, 3),
            "max_speed_bh_per_s": limit,
            "scale": "body heights per second (no floor scale)",
            "check": "body-height",
        }
    findings = []
    if speed is None:
        findings.append(Finding("running", None))
    else:
        text = f"{WALK_TEXT['running']}: {speed:.1f} {unit} (limit {limit:g})"
        conf = 0.7
        findings.append(Finding("running", speed > limit, conf, text, _margin_score(conf, speed, limit)))
    if speed is not None and speed <= walking:
        findings.append(Finding("pockets_walking", False, 0.6))
    elif not f.hands.known:
        findings.append(Finding("pockets_walking", None))
    elif f.hands.value != "in_pockets":
        findings.append(Finding("pockets_walking", False, f.hands.confidence))
    elif speed is None:
        findings.append(Finding("pockets_walking", None))
    else:
        text = f"{WALK_TEXT['pockets_walking']} at {speed:.1f} {unit}"
        findings.append(Finding("pockets_walking", True, f.hands.confidence, text))
    return combine(findings, details)


# -- registry --------------------------------------------------------------------------------

CheckFn = Callable[[PersonObservation, PersonHistory, Mapping[str, float]], Check]


@dataclass(frozen=True)
class GateSpec:
    """One gate a rule feeds: the clause's own (suffix "") or a sub-gate with its own sustain.

    `sustain_param` names the clause parameter used as this gate's sustain_s (e.g.
    `work_zone_sustain_s`); `default_sustain_s` applies when the clause has neither;
    `title` (formatted with the clause params) heads the message of a sub-gate's alert;
    `duration_key` copies the behaviour's duration into the violation's details.
    """

    check: CheckFn
    suffix: str = ""
    sustain_param: str | None = None
    default_sustain_s: float | None = None
    title: str | None = None
    duration_key: str | None = None

    def gate_id(self, clause_id: str) -> str:
        return clause_id + self.suffix


RULES: dict[str, tuple[GateSpec, ...]] = {
    "forbidden_hands": (GateSpec(forbidden_hands),),
    "trunk_lean": (GateSpec(trunk_lean),),
    "feet_v_shape": (GateSpec(feet_v_shape),),
    "door_angle": (GateSpec(door_angle),),
    "seated_misconduct": (
        GateSpec(seated_misconduct),
        GateSpec(lying_on_desk, suffix="/desk", sustain_param="lying_on_desk_s"),
    ),
    "guard_leg_up": (GateSpec(guard_leg_up),),
    "phone_call": (
        GateSpec(phone_call, sustain_param="work_zone_sustain_s", duration_key="call_duration_s"),
        GateSpec(
            phone_call,
            suffix="/long",
            sustain_param="max_call_s",
            title="phone call longer than {max_call_s:g} s",
            duration_key="call_duration_s",
        ),
    ),
    "guard_phone": (GateSpec(guard_phone),),
    "private_matters": (GateSpec(private_matters),),
    # The catalogue gives d5.walk.01 no sustain_s: a second of running is enough evidence.
    "running_or_hands_in_pockets": (GateSpec(running_or_hands_in_pockets),),
}
