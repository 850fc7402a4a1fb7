"""Guard rules (D11 第11篇 7.1-7.5): post stances, the salute and traffic-direction signals.

Two kinds of output, because the catalogue has two kinds of clause:

* The stances (`d11.stance.01/02/03`, kind `alert`) are per-frame checks shaped exactly like
  `rules.checks` (person, history, params -> `Check`) and listed in `GUARD_RULES` like
  `rules.checks.RULES`, so the engine's gates give them sustain, grace and cooldown. Each
  check judges the body part by part (hands, feet, heels, toes, legs, arms) and its
  `Check` names the part that is wrong, because "stance wrong" tells a guard nothing.
* The salute (`d11.salute.01`) and the traffic signals (`d11.traffic.01`, kind `report`)
  are movements, not states: a salute is raised, held and lowered, a signal is held for a
  moment. They are recognised per frame (`salute_pose`, `classify_traffic_gesture`) and
  turned into `GestureEvent`s (started / ended) by per-track detectors (`SaluteDetector`,
  `TrafficGestureDetector`) that run over the `FrameObservation` stream. They are reports:
  nobody is alerted for saluting; a manager reads how well it was done (form score 0-100).

Geometry is measured as `vision.features` does, in the person's own torso lengths and
shoulder widths so it holds at any distance. Directions that the image flattens (an arm
pointing at the camera, the angle of the upper arm above the horizontal) come from the
metric world landmarks, read in the body's own frame (left, up, forward), so a guard who
is turned away from the camera is still judged against his own shoulders.

A landmark below the visibility levels is not guessed: the part it belongs to is unknown
(`None`) and, as in `rules.checks.combine`, an unknown part can neither clear a stance nor
end a gesture.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rules.checks import Check, Finding, GateSpec, PersonHistory, combine, count_reversals
from vision.features import Body, angle_at
from vision.observation import FrameObservation, PersonObservation
from vision.pose import (
    L_ANKLE,
    L_ELBOW,
    L_HIP,
    L_INDEX,
    L_KNEE,
    L_SHOULDER,
    L_WRIST,
    NOSE,
    R_ANKLE,
    R_EAR,
    R_ELBOW,
    R_EYE,
    R_HIP,
    R_INDEX,
    R_KNEE,
    R_SHOULDER,
    R_WRIST,
)

# -- constants that are not (yet) clause parameters ------------------------------------------
# As in rules.checks: named here, read through `params.get(name, DEFAULT)`, so a clause that
# grows the parameter in rules/clauses.yaml lets a site override it without a code change.

VISIBLE = 0.5  # a landmark position is trusted above this visibility (as vision.features)
ARM_VISIBLE = 0.3  # elbows: BlazePose reports raised or crossed elbows at 0.3-0.5
HAND_VISIBLE = 0.15  # wrist/fingertip beside the face: BlazePose reports 0.2-0.4 for a real salute hand
FEET_MIN_SW, FEET_MAX_SW = 0.7, 1.4  # d11.stance.01 ankle gap in shoulder widths (与肩同宽或比肩略宽)
HEEL_GAP_BH = 0.06  # heels together: heel landmarks within 0.06 body heights (about 10 cm at 1.65 m)
TOE_MIN_DEG, TOE_MAX_DEG = 40.0, 80.0  # d11.stance.02 两脚尖分开约60度
KNEE_STRAIGHT_DEG = 165.0  # 两腿挺直: hip-knee-ankle angle in the image
ELBOW_STRAIGHT_DEG = 160.0  # 手臂下垂自然伸直: shoulder-elbow-wrist angle in the image
RECEPTION_DUTY = 0.0  # d11.stance.03: 0 = ceremonial post (hands behind), 1 = reception duty (front allowed)

BROW_RECOGNISE_TORSO = 0.45  # fingertip within this of the brow (torso lengths) can be a salute
UPPER_ARM_RECOGNISE_DEG = 45.0  # upper arm within this of horizontal; lower is a hand at the ear (phone)
HAND_ABOVE_SHOULDER_TORSO = 0.1  # the fingertip is above the right shoulder (a hand at the chin is lower)
SALUTE_MIN_FRAMES = 2  # frames of the pose before a salute is reported (one frame is a scratch)
SALUTE_GRACE_S = 0.35  # a dropout shorter than this does not split one salute
# Form score weights (sum 1): the clause's own order of importance for a camera.
SALUTE_WEIGHTS = {"brow": 0.35, "upper_arm": 0.30, "wrist": 0.20, "in_line": 0.15}

STRAIGHT_ARM_DEG = 140.0  # a signalling arm is "straight" from this elbow angle (Arm.straightness_deg)
RAISED_ELEVATION_DEG = 55.0  # stop: the arm is this far above horizontal...
HAND_ABOVE_NOSE_TORSO = 0.2  # ...and the hand this far above the nose
LEVEL_ARM_DEG = 25.0  # proceed / stop (forward): arm within this of horizontal (平伸)
BROW_ARM_MIN_DEG, BROW_ARM_MAX_DEG = 5.0, 45.0  # pull over / turn: wrist at brow height (手腕与眉同高)
TURNED_DEG = 30.0  # turn left/right: chest turned this far toward the signalling arm
FACING_CAMERA_DEG = 35.0  # a chest within this of the camera axis lets the image cap an arm's depth
ARM_TORSO = 1.2  # shoulder to wrist of a straight arm, in torso lengths (the image foreshortens it)
TRAFFIC_MIN_HOLD_S = 0.5  # a traffic signal is reported once held this long
TRAFFIC_GRACE_S = 0.4
SWING_TORSO = 0.1  # a swing of the other hand counts from a tenth of a torso length

SALUTE_CLAUSE = "d11.salute.01"
TRAFFIC_CLAUSE = "d11.traffic.01"
TRAFFIC_LABELS = ("stop", "proceed", "pull_over", "turn_left", "turn_right")
TRAFFIC_TEXT = {
    "stop": "stop signal (示意停车)",
    "proceed": "proceed signal (指挥车辆通行)",
    "pull_over": "pull-over signal (示意车辆靠边停车)",
    "turn_left": "turn-left signal (示意车辆左转弯)",
    "turn_right": "turn-right signal (示意车辆右转弯)",
}
_OFF_DUTY_POSTURES = ("sitting", "lying")


# -- small geometry helpers ------------------------------------------------------------------


def _body(person: PersonObservation) -> Body | None:
    if person.keypoints is None or person.keypoints_world is None or person.visibility is None:
        return None
    return Body(person.keypoints, person.keypoints_world, person.visibility)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else v


def _ramp(value: float, full: float, zero: float) -> float:
    """100 at `full`, 0 at `zero`, linear between (either direction), clipped."""
    if full == zero:
        return 100.0 if value == full else 0.0
    return float(np.clip((value - zero) / (full - zero), 0.0, 1.0) * 100.0)


def _elevation(v: np.ndarray) -> float:
    """Degrees above the horizontal of a vector with y down (image or world)."""
    n = float(np.linalg.norm(v))
    return 0.0 if n < 1e-9 else math.degrees(math.asin(float(np.clip(-v[1] / n, -1.0, 1.0))))


def _seen(person: PersonObservation, *idx: int, level: float = VISIBLE) -> bool:
    vis = person.visibility
    return vis is not None and person.keypoints is not None and all(vis[i] >= level for i in idx)


def _over(confidence: float, excess: float, limit: float) -> float:
    """Confidence weighted by how far past the limit: the clearest frame makes the snapshot."""
    return float(confidence) * (1.0 + min(1.0, max(0.0, excess / limit if limit > 0 else 1.0)))


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = float(np.clip(np.dot(p - a, ab) / max(float(np.dot(ab, ab)), 1e-9), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


def body_axes(body: Body) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The body's own (left, up, forward) unit axes in world coordinates, None without shoulders.

    Why: "an arm to the side" and "an arm forward" are about the guard's body, not the
    camera. `left` is the shoulder line made horizontal, `up` is against world y (down),
    `forward` = left x up, which for a person facing the camera points at it (-z).
    """
    if not body.seen(L_SHOULDER, R_SHOULDER, level=0.4):
        return None
    w = body.world
    left = w[L_SHOULDER] - w[R_SHOULDER]
    left = np.array([left[0], 0.0, left[2]], dtype=float)
    if float(np.linalg.norm(left)) < 1e-6:
        return None
    left = _unit(left)
    up = np.array([0.0, -1.0, 0.0])
    forward = _unit(np.cross(left, up))
    return left, up, forward


# -- stances (d11.stance.01/02/03): alert-type checks ---------------------------------------


def _not_standing(person: PersonObservation) -> Check | None:
    posture = person.features.posture
    if posture.value in _OFF_DUTY_POSTURES:
        return Check(None, message=f"posture {posture.value}: a standing clause does not apply")
    return None


def hands_part(person: PersonObservation, allowed: Sequence[str], expected: str) -> Finding:
    """The hands, from `Features.hands`: one of `allowed`, else wrong (the text names what they do)."""
    hands = person.features.hands
    if not hands.known:
        return Finding("hands", None)
    ok = hands.value in allowed
    text = f"hands: {hands.value.replace('_', ' ')}, expected {expected}"
    return Finding("hands", not ok, hands.confidence, text if not ok else f"hands {hands.value}")


def feet_width_part(person: PersonObservation, lo: float, hi: float) -> tuple[Finding, float | None]:
    """Feet about shoulder width apart: ankle gap / shoulder width (both image pixels) in [lo, hi].

    Shoulder width, not body height, because the clause says 与肩同宽 and both shrink alike
    when the guard turns from the camera.
    """
    if not _seen(person, L_ANKLE, R_ANKLE, L_SHOULDER, R_SHOULDER):
        return Finding("feet", None), None
    kp, vis = person.keypoints, person.visibility
    assert kp is not None and vis is not None
    shoulders = float(np.linalg.norm(kp[L_SHOULDER] - kp[R_SHOULDER]))
    if shoulders < 1.0:
        return Finding("feet", None), None
    ratio = float(np.linalg.norm(kp[L_ANKLE] - kp[R_ANKLE])) / shoulders
    conf = float(min(vis[[L_ANKLE, R_ANKLE, L_SHOULDER, R_SHOULDER]]))
    if ratio < lo:
        text = (
            f"feet: {ratio:.2f} shoulder widths apart, too close (expected {lo:g}-{hi:g}; 双脚分开,与肩同宽)"
        )
        return Finding("feet", True, conf, text, _over(conf, lo - ratio, lo)), ratio
    if ratio > hi:
        text = (
            f"feet: {ratio:.2f} shoulder widths apart, too wide (expected {lo:g}-{hi:g}; 与肩同宽或比肩略宽)"
        )
        return Finding("feet", True, conf, text, _over(conf, ratio - hi, hi)), ratio
    return Finding("feet", False, conf, "feet shoulder width apart"), ratio


def heels_part(person: PersonObservation, limit_bh: float) -> Finding:
    """Heels together: `Features.heel_gap` (body heights) within `limit_bh`."""
    gap = person.features.heel_gap
    if gap.value is None:
        return Finding("heels", None)
    bad = gap.value > limit_bh
    text = f"heels: {gap.value:.3f} body heights apart, not together (limit {limit_bh:g}; 两脚跟并拢)"
    score = _over(gap.confidence, gap.value - limit_bh, limit_bh) if bad else None
    return Finding("heels", bad, gap.confidence, text if bad else "heels together", score)


def toes_part(person: PersonObservation, lo: float, hi: float) -> Finding:
    """Toes about 60 degrees apart: `Features.toe_angle_deg` in [lo, hi]."""
    toe = person.features.toe_angle_deg
    if toe.value is None:
        return Finding("toes", None)
    bad = not lo <= toe.value <= hi
    how = "too narrow" if toe.value < lo else "too wide"
    text = f"toes: {toe.value:.0f} deg apart, {how} (expected {lo:g}-{hi:g}; 两脚尖分开约60度)"
    return Finding("toes", bad, toe.confidence, text if bad else "toes about 60 deg apart")


def knee_angles(person: PersonObservation) -> dict[str, float | None]:
    """Hip-knee-ankle angle per leg in the image (180 = straight), None where a joint is hidden.

    The image angle, not the world one: BlazePose's metric landmarks bend a straight
    standing leg to 145-160 degrees (measured on the real photos), the image keeps it at 175-180.
    """
    out: dict[str, float | None] = {}
    for side, (h, k, a) in (("left", (L_HIP, L_KNEE, L_ANKLE)), ("right", (R_HIP, R_KNEE, R_ANKLE))):
        if _seen(person, h, k, a):
            kp = person.keypoints
            assert kp is not None
            out[side] = angle_at(kp[h], kp[k], kp[a])
        else:
            out[side] = None
    return out


def legs_part(person: PersonObservation, min_deg: float) -> tuple[Finding, dict[str, float | None]]:
    """Legs straight (两腿挺直): each knee angle above `min_deg`."""
    knees = knee_angles(person)
    bent = {s: a for s, a in knees.items() if a is not None and a < min_deg}
    vis = person.visibility
    conf = 0.0 if vis is None else float(min(vis[[L_KNEE, R_KNEE]]))
    if bent:
        side, angle = min(bent.items(), key=lambda kv: kv[1])
        text = f"legs: {side} knee bent to {angle:.0f} deg (expected straight > {min_deg:g}; 两腿挺直)"
        return Finding("legs", True, conf, text, _over(conf, min_deg - angle, 30.0)), knees
    if any(a is None for a in knees.values()):
        return Finding("legs", None), knees
    return Finding("legs", False, conf, "legs straight"), knees


def elbow_angles(person: PersonObservation) -> dict[str, float | None]:
    """Shoulder-elbow-wrist angle per arm in the image (180 = straight), None where hidden."""
    out: dict[str, float | None] = {}
    for side, (s, e, w) in (
        ("left", (L_SHOULDER, L_ELBOW, L_WRIST)),
        ("right", (R_SHOULDER, R_ELBOW, R_WRIST)),
    ):
        if _seen(person, s, level=VISIBLE) and _seen(person, e, w, level=ARM_VISIBLE):
            kp = person.keypoints
            assert kp is not None
            out[side] = angle_at(kp[s], kp[e], kp[w])
        else:
            out[side] = None
    return out


def arms_down_part(person: PersonObservation, min_elbow: float) -> tuple[Finding, dict[str, float | None]]:
    """Arms hanging straight at the sides (手臂下垂自然伸直): hands `at_sides` and elbows straight."""
    hands = person.features.hands
    elbows = elbow_angles(person)
    if not hands.known:
        return Finding("arms", None), elbows
    if hands.value != "at_sides":
        text = f"arms: hands {hands.value.replace('_', ' ')}, not hanging at the sides (手臂下垂)"
        return Finding("arms", True, hands.confidence, text), elbows
    bent = {s: a for s, a in elbows.items() if a is not None and a < min_elbow}
    if bent:
        side, angle = min(bent.items(), key=lambda kv: kv[1])
        text = f"arms: {side} elbow bent to {angle:.0f} deg (expected straight > {min_elbow:g}; 自然伸直)"
        return Finding(
            "arms", True, hands.confidence, text, _over(hands.confidence, min_elbow - angle, 30.0)
        ), elbows
    if any(a is None for a in elbows.values()):
        return Finding("arms", None), elbows
    return Finding("arms", False, hands.confidence, "arms straight at the sides"), elbows


def _finish(check: Check, person: PersonObservation) -> Check:
    """Name the wrong parts in `details["parts"]` and discount a fire on an unseen posture."""
    check.details["parts"] = dict(check.details.get("checked") or {})
    check.details["wrong_parts"] = [k for k, v in check.details["parts"].items() if v is True]
    if check.state is True and not person.features.posture.known:
        check.confidence *= 0.8
    return check


def guard_stance_ceremonial(
    person: PersonObservation, history: PersonHistory, params: Mapping[str, float]
) -> Check:
    """d11.stance.01 (D11 7.1.1, male ceremonial post): hands clasped behind the back and feet
    about shoulder width apart (ankle gap 0.7-1.4 shoulder widths)."""
    off = _not_standing(person)
    if off is not None:
        return off
    lo = float(params.get("feet_min_sw", FEET_MIN_SW))
    hi = float(params.get("feet_max_sw", FEET_MAX_SW))
    feet, ratio = feet_width_part(person, lo, hi)
    details: dict[str, Any] = {
        "hands": person.features.hands.value,
        "feet_apart_sw": None if ratio is None else round(ratio, 3),
        "feet_range_sw": [lo, hi],
        "posture": person.features.posture.value,
    }
    findings = [hands_part(person, ("clasped_behind",), "clasped behind the back (两手自然交叉于背后)"), feet]
    return _finish(combine(findings, details), person)


def guard_stance_fixed(
    person: PersonObservation, history: PersonHistory, params: Mapping[str, float]
) -> Check:
    """d11.stance.02 (D11 7.1.2, male fixed duty): heels together, toes about 60 degrees apart,
    legs straight, arms hanging straight at the sides."""
    off = _not_standing(person)
    if off is not None:
        return off
    f = person.features
    heel_limit = float(params.get("heel_gap_bh", HEEL_GAP_BH))
    toe_lo = float(params.get("toe_min_deg", TOE_MIN_DEG))
    toe_hi = float(params.get("toe_max_deg", TOE_MAX_DEG))
    legs, knees = legs_part(person, float(params.get("knee_min_deg", KNEE_STRAIGHT_DEG)))
    arms, elbows = arms_down_part(person, float(params.get("elbow_min_deg", ELBOW_STRAIGHT_DEG)))
    details: dict[str, Any] = {
        "heel_gap_bh": f.heel_gap.value,
        "heel_gap_limit_bh": heel_limit,
        "toe_angle_deg": f.toe_angle_deg.value,
        "toe_range_deg": [toe_lo, toe_hi],
        "knee_deg": {k: None if v is None else round(v, 1) for k, v in knees.items()},
        "elbow_deg": {k: None if v is None else round(v, 1) for k, v in elbows.items()},
        "hands": f.hands.value,
        "scale": "heel gap in body heights (no floor scale)",
        "posture": f.posture.value,
    }
    findings = [heels_part(person, heel_limit), toes_part(person, toe_lo, toe_hi), legs, arms]
    return _finish(combine(findings, details), person)


def guard_stance_female(
    person: PersonObservation, history: PersonHistory, params: Mapping[str, float]
) -> Check:
    """d11.stance.03 (D11 7.2.1 / 7.2.2, female guard): hands clasped behind the back on a
    ceremonial post; on reception duty (`reception_duty` = 1) clasped in front is allowed too.

    Why a parameter: the clause is one text for two duties, and which one a camera watches
    is the camera's role (guard_ceremonial or guard_reception), which the engine knows and
    a check does not; the engine (or the site file) sets `reception_duty` per role.
    """
    off = _not_standing(person)
    if off is not None:
        return off
    # The duty comes from the role of the post the guard stands on (guard_reception = reception
    # duty), which service.session.CameraRules puts in the evidence; a param can force it.
    default = 1.0 if person.evidence.get("role") == "guard_reception" else RECEPTION_DUTY
    reception = float(params.get("reception_duty", default)) >= 0.5
    if reception:
        allowed: tuple[str, ...] = ("clasped_behind", "clasped_front")
        expected = "clasped behind the back or in front of the abdomen (双手可自然交叉于腹前)"
    else:
        allowed, expected = ("clasped_behind",), "clasped behind the back (两手自然交叉于背后)"
    details = {
        "hands": person.features.hands.value,
        "duty": "reception" if reception else "ceremonial",
        "posture": person.features.posture.value,
    }
    return _finish(combine([hands_part(person, allowed, expected)], details), person)


def guard_stance_female_ceremonial(
    person: PersonObservation, history: PersonHistory, params: Mapping[str, float]
) -> Check:
    """d11.stance.03 on a ceremonial post (7.2.1): hands behind the back only."""
    return guard_stance_female(person, history, {**params, "reception_duty": 0.0})


def guard_stance_female_reception(
    person: PersonObservation, history: PersonHistory, params: Mapping[str, float]
) -> Check:
    """d11.stance.03 on reception duty (7.2.2): hands behind the back or clasped in front."""
    return guard_stance_female(person, history, {**params, "reception_duty": 1.0})


#: The alert-type guard clauses, keyed by the catalogue's `rule` names (rules/clauses.yaml),
#: shaped like `rules.checks.RULES` so the engine can merge the two dicts.
GUARD_RULES: dict[str, tuple[GateSpec, ...]] = {
    "guard_stance_ceremonial": (GateSpec(guard_stance_ceremonial),),
    "guard_stance_fixed": (GateSpec(guard_stance_fixed),),
    "guard_stance_female": (GateSpec(guard_stance_female),),
}


# -- arms in the body frame (shared by the salute and the traffic signals) -------------------


@dataclass(frozen=True)
class Arm:
    """One arm of one frame, measured for gestures.

    `elevation_deg` is shoulder->wrist above the horizontal; `out`, `up`, `forward` are the
    components of that unit direction in the body's own frame (out = toward the arm's own
    side). World landmarks when the shoulders allow, else the image (forward then 0).
    `hand_above_nose` and `wrist_down` / `wrist_across` are image measures in torso lengths:
    how high the hand is, and where the wrist sits on the torso (0 = shoulder line, 1 = hips;
    across = from the midline toward the arm's own side).
    """

    side: str
    confidence: float
    elbow_deg: float
    elbow_world_deg: float
    elevation_deg: float
    out: float
    up: float
    forward: float
    hand_above_nose: float | None
    wrist_down: float
    wrist_across: float
    reach: float = 0.0  # shoulder to wrist in the image, torso lengths
    depth: str = "world"  # where the forward component came from: "world" or "image" (capped)

    @property
    def straightness_deg(self) -> float:
        """The straighter of the image and world elbow angles: an arm pointing at the camera is
        foreshortened to a meaningless image angle, and the world angle is noisy (10-30 deg
        short of straight on straight arms in the real photos); either one being straight is."""
        return max(self.elbow_deg, self.elbow_world_deg)

    @property
    def straight(self) -> bool:
        return self.straightness_deg >= STRAIGHT_ARM_DEG

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (round(v, 3) if isinstance(v, float) else v)
            for k, v in self.__dict__.items()
            if not k.startswith("_")
        }


_ARM_IDX = {
    "left": (L_SHOULDER, L_ELBOW, L_WRIST, L_INDEX),
    "right": (R_SHOULDER, R_ELBOW, R_WRIST, R_INDEX),
}


def measure_arm(body: Body, side: str) -> Arm | None:
    """The arm's geometry, None when its shoulder, elbow or wrist is not seen.

    The direction comes from the world landmarks, but depth is BlazePose's weakest axis
    (its world knees and elbows bend straight limbs by 10-35 degrees on the real photos).
    So when the body faces the camera, the image caps how far forward the arm can point
    (`ARM_TORSO`: a straight arm is about 1.2 torso lengths, and one seen at full length
    cannot point at the camera); past the cap the in-plane part of the direction is taken
    from the image and `depth` says so.
    """
    s, e, w, i = _ARM_IDX[side]
    if not body.seen(s, level=VISIBLE) or not body.seen(e, w, level=ARM_VISIBLE):
        return None
    kp, world, vis = body.kp, body.world, body.vis
    sign = 1.0 if side == "left" else -1.0
    axes = body_axes(body)
    reach = float(np.linalg.norm(kp[w] - kp[s]) / body.torso)
    depth = "world"
    d2 = _unit(kp[w] - kp[s])
    across = _unit(kp[L_SHOULDER] - kp[R_SHOULDER]) if body.seen(L_SHOULDER, R_SHOULDER, level=0.4) else None
    if axes is not None:
        left, up, forward = axes
        d = _unit(world[w] - world[s])
        out, upc, fwd = sign * float(d @ left), float(d @ up), float(d @ forward)
        facing_camera = float(-forward[2]) >= math.cos(math.radians(FACING_CAMERA_DEG))
        max_fwd = math.sqrt(max(0.0, 1.0 - min(1.0, reach / ARM_TORSO) ** 2))
        if facing_camera and abs(fwd) > max_fwd + 0.2 and across is not None:
            depth = "image"
            in_plane = math.sqrt(1.0 - max_fwd**2)
            out, upc = sign * float(d2 @ across) * in_plane, -float(d2[1]) * in_plane
            fwd = math.copysign(max_fwd, fwd)
        elevation = math.degrees(math.asin(float(np.clip(upc, -1.0, 1.0))))
    else:
        out = sign * float(d2 @ across) if across is not None else 0.0
        upc, fwd = -float(d2[1]), 0.0
        elevation = _elevation(kp[w] - kp[s])
        depth = "image"
    # A raised arm reads more surely in the image (world z is BlazePose's weakest axis).
    elevation = max(elevation, _elevation(kp[w] - kp[s])) if elevation > 30 else elevation
    tips = [kp[w]] + ([kp[i]] if vis[i] >= HAND_VISIBLE else [])
    hand_above = (
        float(max(kp[NOSE, 1] - p[1] for p in tips) / body.torso) if body.seen(NOSE, level=0.3) else None
    )
    axis_down = _unit(body.hip_mid - body.shoulder_mid)
    axis_out = sign * _unit(kp[L_SHOULDER] - kp[R_SHOULDER])
    rel = kp[w] - body.shoulder_mid
    return Arm(
        side=side,
        confidence=float(min(vis[s], vis[e], vis[w])),
        elbow_deg=angle_at(kp[s], kp[e], kp[w]),
        elbow_world_deg=angle_at(world[s], world[e], world[w]),
        elevation_deg=elevation,
        out=out,
        up=upc,
        forward=fwd,
        hand_above_nose=hand_above,
        wrist_down=float(rel @ axis_down / body.torso),
        wrist_across=float(rel @ axis_out / body.torso),
        reach=reach,
        depth=depth,
    )


# -- the salute (d11.salute.01) --------------------------------------------------------------


@dataclass(frozen=True)
class SalutePose:
    """One frame's reading of the right-hand salute.

    `state`: True the pose is a salute, False it is not, None the right arm or the face is
    not seen. `score` (0-100) and `parts` grade the form of a True frame; `measures` are the
    raw numbers the grades come from.
    """

    state: bool | None
    confidence: float = 0.0
    score: float | None = None
    parts: dict[str, float] = field(default_factory=dict)
    measures: dict[str, float] = field(default_factory=dict)
    reason: str = ""


def salute_pose(person: PersonObservation) -> SalutePose:
    """Is this frame a right-hand salute (D11 7.5.5.2), and how good is its form?

    Recognised when the right fingertip is at the brow (within BROW_RECOGNISE_TORSO of the
    right eye-to-ear line), above the shoulder, with the upper arm raised within
    UPPER_ARM_RECOGNISE_DEG of horizontal - a hand at the ear with the elbow hanging is a
    phone call, not a salute. The form score then grades the clause's points a camera can
    see: fingertip at the brow (中指微接眉尖), upper arm level (右大臂略平), wrist straight
    (手腕不得弯曲), upper arm in line with the shoulders (与两肩略成一线).
    """
    body = _body(person)
    if body is None:
        return SalutePose(None, reason="no landmarks")
    kp, world, vis = body.kp, body.world, body.vis
    if not body.seen(R_EYE, R_EAR, level=0.3):
        return SalutePose(None, reason="face not seen")
    if not body.seen(R_SHOULDER, level=VISIBLE):
        return SalutePose(None, reason="right shoulder not seen")
    tip_idx = R_INDEX if vis[R_INDEX] >= HAND_VISIBLE else R_WRIST
    if vis[tip_idx] < HAND_VISIBLE:
        # A hand at the brow is as visible as the face beside it: a face seen clearly without
        # the hand means the hand is elsewhere (behind the back, out of view), not saluting.
        if body.seen(R_EYE, R_EAR, level=VISIBLE):
            return SalutePose(False, 0.5, reason="right hand not seen beside the face")
        return SalutePose(None, reason="right hand not seen")
    if vis[R_ELBOW] < ARM_VISIBLE:
        return SalutePose(None, reason="right elbow not seen")
    torso = body.torso
    tip = kp[tip_idx]
    brow = _segment_distance(tip, kp[R_EYE], kp[R_EAR]) / torso
    above_shoulder = float(kp[R_SHOULDER, 1] - tip[1]) / torso
    upper = world[R_ELBOW] - world[R_SHOULDER]
    upper_elev = _elevation(upper)
    wrist_deg = angle_at(kp[R_ELBOW], kp[R_WRIST], kp[R_INDEX]) if vis[R_INDEX] >= HAND_VISIBLE else None
    axes = body_axes(body)
    in_line = None
    if axes is not None:
        left, _, forward = axes
        flat = np.array([-float(upper @ left), float(upper @ forward)])  # (outward, forward)
        if float(np.linalg.norm(flat)) > 1e-6:
            in_line = abs(math.degrees(math.atan2(flat[1], flat[0])))
    measures = {
        "brow_torso": round(brow, 3),
        "hand_above_shoulder_torso": round(above_shoulder, 3),
        "upper_arm_elevation_deg": round(upper_elev, 1),
    }
    if wrist_deg is not None:
        measures["wrist_deg"] = round(wrist_deg, 1)
    if in_line is not None:
        measures["upper_arm_from_shoulder_line_deg"] = round(in_line, 1)
    conf = float(min(vis[R_SHOULDER], max(vis[R_ELBOW], 0.5), max(vis[tip_idx], 0.4) + 0.2))
    if brow > BROW_RECOGNISE_TORSO:
        return SalutePose(False, conf, measures=measures, reason="hand not at the brow")
    if above_shoulder < HAND_ABOVE_SHOULDER_TORSO:
        return SalutePose(False, conf, measures=measures, reason="hand not raised")
    if abs(upper_elev) > UPPER_ARM_RECOGNISE_DEG:
        why = "elbow hanging (hand at the ear, not a salute)" if upper_elev < 0 else "upper arm raised high"
        return SalutePose(False, conf, measures=measures, reason=why)
    parts = {
        "brow": _ramp(brow, 0.15, 0.5),
        "upper_arm": _ramp(abs(upper_elev), 10.0, 50.0),
    }
    if wrist_deg is not None:
        parts["wrist"] = _ramp(wrist_deg, 165.0, 125.0)
    if in_line is not None:
        parts["in_line"] = _ramp(in_line, 20.0, 80.0)
    return SalutePose(True, conf, form_score(parts), {k: round(v, 1) for k, v in parts.items()}, measures)


def form_score(parts: Mapping[str, float]) -> float:
    """Weighted mean of the graded parts (SALUTE_WEIGHTS), over the parts that could be seen."""
    weights = {k: w for k, w in SALUTE_WEIGHTS.items() if k in parts}
    total = sum(weights.values())
    return round(sum(parts[k] * w for k, w in weights.items()) / total, 1) if total else 0.0


# -- traffic-direction signals (d11.traffic.01) ----------------------------------------------


def _at_chest(arm: Arm | None) -> bool:
    """The forearm across the chest, hand between the 2nd-3rd button and the belt (衣扣2-3口之间)."""
    return (
        arm is not None and 0.1 <= arm.wrist_down <= 1.0 and arm.wrist_across <= 0.45 and arm.elbow_deg < 150
    )


def classify_traffic_gesture(person: PersonObservation) -> tuple[str | None, float]:
    """The D11 7.5.5-7.5.8 traffic signal this single frame shows, and a confidence.

    What one frame can tell (the swing and the waving need time; see TrafficGestureDetector):

    * stop: an arm raised straight up, hand above the head (the traffic-police stop signal,
      left arm in the standard; the photos in labels.yaml), or - D11 7.5.6.1's own wording -
      the right arm held straight forward at shoulder height;
    * proceed (7.5.5.1): an arm held straight out to its side, level (平伸);
    * pull over (7.5.7.1): the left arm straight forward with the wrist at brow height and the
      right hand in front of the chest;
    * turn left / right (7.5.8.1): the body turned to that side with that arm straight forward
      at brow height. "Turned" is measured against the camera, so a camera must face the
      guard's own post direction for turns to read as turns (else they read as pull over /
      proceed).

    Returns (None, confidence-that-it-is-none) when no signal is shown, (None, 0.0) when the
    arms cannot be seen. `traffic_gesture` also returns the measurements.
    """
    label, conf, _ = traffic_gesture(person)
    return label, conf


def traffic_gesture(person: PersonObservation) -> tuple[str | None, float, dict[str, Any]]:
    """`classify_traffic_gesture` with its measurements (which arm, the arm geometry, the yaw)."""
    body = _body(person)
    if body is None:
        return None, 0.0, {"reason": "no landmarks"}
    arms = {side: measure_arm(body, side) for side in ("left", "right")}
    details: dict[str, Any] = {"arms": {s: (a.to_dict() if a is not None else None) for s, a in arms.items()}}
    if all(a is None for a in arms.values()):
        return None, 0.0, {**details, "reason": "arms not seen"}
    yaw = person.features.body_yaw_deg.value
    details["body_yaw_deg"] = yaw
    candidates: list[tuple[float, str, str, str | None]] = []  # (confidence, label, arm, variant)
    for side, arm in arms.items():
        if arm is None:
            continue
        other = arms["right" if side == "left" else "left"]
        base = arm.confidence
        # stop (raised): the arm straight up, the hand over the head.
        if (
            arm.elevation_deg >= RAISED_ELEVATION_DEG
            and arm.straightness_deg >= STRAIGHT_ARM_DEG - 10
            and arm.hand_above_nose is not None
            and arm.hand_above_nose >= HAND_ABOVE_NOSE_TORSO
        ):
            conf = base * (
                0.55 + 0.25 * min(1.0, (arm.elevation_deg - 45) / 35) + (0.2 if side == "left" else 0.0)
            )
            candidates.append((conf, "stop", side, "raised"))
            continue
        if not arm.straight or arm.elevation_deg < -LEVEL_ARM_DEG:
            continue
        sideways = arm.out >= abs(arm.forward)
        turned = yaw is not None and (yaw if side == "left" else -yaw) >= TURNED_DEG
        if sideways and abs(arm.elevation_deg) <= LEVEL_ARM_DEG and not turned:
            conf = base * (0.6 + (0.25 if _at_chest(other) else 0.0) + 0.15 * min(1.0, arm.out))
            candidates.append((conf, "proceed", side, None))
        elif turned and BROW_ARM_MIN_DEG - 10 <= arm.elevation_deg <= BROW_ARM_MAX_DEG:
            conf = base * (0.55 + (0.25 if _at_chest(other) else 0.0))
            candidates.append((conf, f"turn_{side}", side, None))
        elif not sideways and side == "left" and BROW_ARM_MIN_DEG <= arm.elevation_deg <= BROW_ARM_MAX_DEG:
            conf = base * (0.5 + (0.35 if _at_chest(other) else 0.0))
            candidates.append((conf, "pull_over", side, None))
        elif not sideways and side == "right" and abs(arm.elevation_deg) <= LEVEL_ARM_DEG:
            conf = base * 0.55
            candidates.append((conf, "stop", side, "forward (D11 7.5.6.1)"))
    if not candidates:
        seen = [a.confidence for a in arms.values() if a is not None]
        return None, round(float(min(seen)) * 0.8, 3), details
    conf, label, side, variant = max(candidates, key=lambda c: c[0])
    details["arm"] = side
    details["variant"] = variant
    return label, round(float(min(conf, 1.0)), 3), details


# -- events over time ------------------------------------------------------------------------


@dataclass
class GestureEvent:
    """A recognised movement of one track: "started" once it is sure, "ended" when lowered.

    A report, not a violation: `score` (salutes) grades the form 0-100 and `parts` the
    graded points; `details` keeps the medians of the measures and, for signals, which arm.
    `lowered` is False when the track was lost or the stream ended while it was still held.
    """

    kind: str  # "started" | "ended"
    clause: str
    label: str  # "salute" or one of TRAFFIC_LABELS
    track_id: int
    start_s: float
    end_s: float | None
    frames: int
    confidence: float
    score: float | None = None
    parts: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    lowered: bool = False

    @property
    def duration_s(self) -> float:
        return 0.0 if self.end_s is None else self.end_s - self.start_s

    @property
    def message(self) -> str:
        what = "salute (行右手军礼)" if self.label == "salute" else TRAFFIC_TEXT.get(self.label, self.label)
        when = (
            f"{self.start_s:.1f}-{self.end_s:.1f} s"
            if self.end_s is not None
            else f"from {self.start_s:.1f} s"
        )
        form = f", form {self.score:.0f}/100" if self.score is not None else ""
        return f"{what}, track {self.track_id}, {when}{form}"


@dataclass
class _Frame:
    t: float
    confidence: float
    score: float | None
    parts: Mapping[str, float]
    measures: Mapping[str, Any]


@dataclass
class _Run:
    label: str
    start_s: float
    last_s: float
    frames: list[_Frame] = field(default_factory=list)
    trace: list[float] = field(default_factory=list)  # a value per frame whose swings are counted
    announced: bool = False


class HeldGesture:
    """One track's held-pose state machine, shared by the salute and the traffic signals.

    Per frame the caller gives a label (the gesture seen), "" (known: no gesture) or None
    (cannot tell). A run of one label starts at its first frame; it is announced
    ("started") once it has `min_frames` frames spanning `min_hold_s`; it ends ("ended",
    end = its last frame) at the first known frame `grace_s` after its last one, at a
    different label, or when nothing was seen for `stale_s`. A run that ends unannounced
    was a flicker and is dropped without an event.
    """

    def __init__(
        self,
        clause: str,
        track_id: int,
        min_frames: int,
        min_hold_s: float,
        grace_s: float,
        stale_s: float = 1.5,
    ) -> None:
        self.clause = clause
        self.track_id = track_id
        self.min_frames = min_frames
        self.min_hold_s = min_hold_s
        self.grace_s = grace_s
        self.stale_s = stale_s
        self.run: _Run | None = None
        self.last_t: float | None = None

    def update(
        self, t: float, label: str | None, frame: _Frame | None = None, trace: float | None = None
    ) -> list[GestureEvent]:
        events: list[GestureEvent] = []
        if self.last_t is not None and t < self.last_t:
            t = self.last_t  # time never goes backwards
        self.last_t = t
        run = self.run
        if run is not None and t - run.last_s >= self.stale_s - 1e-9:
            events += self._close(lowered=False)
            run = None
        if label:
            if run is not None and run.label != label:
                events += self._close(lowered=True)
                run = None
            if run is None:
                run = self.run = _Run(label, t, t)
            run.last_s = t
            if frame is not None:
                run.frames.append(frame)
            if trace is not None:
                run.trace.append(trace)
            held = len(run.frames) >= self.min_frames and t - run.start_s >= self.min_hold_s - 1e-9
            if held and not run.announced:
                run.announced = True
                events.append(self._event("started", run, None, lowered=False))
        elif label == "" and run is not None and t - run.last_s >= self.grace_s - 1e-9:
            events += self._close(lowered=True)
        return events

    def finish(self) -> list[GestureEvent]:
        """The stream ended: end a held gesture at its last frame (not lowered)."""
        return self._close(lowered=False)

    def _close(self, lowered: bool) -> list[GestureEvent]:
        run, self.run = self.run, None
        if run is None or not run.announced:
            return []
        return [self._event("ended", run, run.last_s, lowered)]

    def _event(self, kind: str, run: _Run, end_s: float | None, lowered: bool) -> GestureEvent:
        frames = run.frames
        scores = [f.score for f in frames if f.score is not None]
        parts: dict[str, float] = {}
        for key in sorted({k for f in frames for k in f.parts}):
            parts[key] = round(statistics.median(f.parts[key] for f in frames if key in f.parts), 1)
        measures: dict[str, Any] = {}
        for key in sorted({k for f in frames for k in f.measures}):
            values = [f.measures[key] for f in frames if key in f.measures]
            numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if numbers and len(numbers) == len(values):
                measures[key] = round(float(statistics.median(numbers)), 3)
            elif values:
                measures[key] = max(set(map(str, values)), key=[str(v) for v in values].count)
        if len(run.trace) >= 3:
            measures["swings"] = count_reversals(run.trace, SWING_TORSO)
        return GestureEvent(
            kind=kind,
            clause=self.clause,
            label=run.label,
            track_id=self.track_id,
            start_s=run.start_s,
            end_s=end_s,
            frames=len(frames),
            confidence=round(float(np.mean([f.confidence for f in frames])) if frames else 0.0, 3),
            score=round(float(statistics.median(scores)), 1) if scores else None,
            parts=parts,
            details=measures,
            lowered=lowered,
        )


class _TrackDetector:
    """Runs one `HeldGesture` per track over the FrameObservation stream."""

    clause = ""

    def __init__(self, min_frames: int, min_hold_s: float, grace_s: float, stale_s: float, forget_s: float):
        self.min_frames = min_frames
        self.min_hold_s = min_hold_s
        self.grace_s = grace_s
        self.stale_s = stale_s
        self.forget_s = forget_s
        self.tracks: dict[int, HeldGesture] = {}
        self.events: list[GestureEvent] = []

    def read(self, person: PersonObservation, t: float) -> tuple[str | None, _Frame | None, float | None]:
        """(label, frame, trace value) of one person: label "" for no gesture, None for unknown."""
        raise NotImplementedError

    def update(self, obs: FrameObservation) -> list[GestureEvent]:
        """Feed one frame; returns the events it produced (also kept in `events`)."""
        t = float(obs.t)
        out: list[GestureEvent] = []
        seen: set[int] = set()
        for person in obs.persons:
            track = int(person.track_id)
            if track in seen:
                continue
            seen.add(track)
            held = self.tracks.get(track)
            if held is None:
                held = self.tracks[track] = HeldGesture(
                    self.clause, track, self.min_frames, self.min_hold_s, self.grace_s, self.stale_s
                )
            label, frame, trace = self.read(person, t)
            out += held.update(t, label, frame, trace)
        for track, held in list(self.tracks.items()):
            if track in seen or held.last_t is None:
                continue
            if held.run is not None and t - held.run.last_s >= self.stale_s - 1e-9:
                out += held.update(t, None)  # a lost track ends its gesture (not lowered)
            if t - held.last_t >= self.forget_s - 1e-9:
                out += held.finish()
                del self.tracks[track]
        self.events += out
        return out

    def finish(self) -> list[GestureEvent]:
        """The stream ended: end every held gesture."""
        out = [e for held in self.tracks.values() for e in held.finish()]
        self.tracks.clear()
        self.events += out
        return out

    def ended(self) -> list[GestureEvent]:
        """The completed gestures so far (one "ended" event each)."""
        return [e for e in self.events if e.kind == "ended"]


class SaluteDetector(_TrackDetector):
    """d11.salute.01 as a report: salutes per track, with start, end and form score 0-100.

    A salute needs `min_frames` frames of the pose (one frame of a hand at the brow is a
    scratch or a wave); a dropout shorter than `grace_s` (motion blur, a hand BlazePose
    loses for a frame) does not split it. At 5 fps a quick 0.3 s salute gives one or two
    frames, so run the detector at 8-10 fps where salutes matter.
    """

    clause = SALUTE_CLAUSE

    def __init__(
        self,
        min_frames: int = SALUTE_MIN_FRAMES,
        grace_s: float = SALUTE_GRACE_S,
        stale_s: float = 1.0,
        forget_s: float = 5.0,
    ) -> None:
        super().__init__(min_frames, 0.0, grace_s, stale_s, forget_s)

    def read(self, person: PersonObservation, t: float) -> tuple[str | None, _Frame | None, float | None]:
        pose = salute_pose(person)
        if pose.state is None:
            return None, None, None
        if not pose.state:
            return "", None, None
        return "salute", _Frame(t, pose.confidence, pose.score, pose.parts, pose.measures), None


class TrafficGestureDetector(_TrackDetector):
    """d11.traffic.01 as a report: a traffic signal per track once held `min_hold_s` (0.5 s).

    Over time it also counts the swings of the other hand (the proceed signal's 回臂 and the
    pull-over signal's 连续挥动三次) as `details["swings"]`: reversals of that wrist's
    sideways position of at least a tenth of a torso length.
    """

    clause = TRAFFIC_CLAUSE

    def __init__(
        self,
        min_hold_s: float = TRAFFIC_MIN_HOLD_S,
        grace_s: float = TRAFFIC_GRACE_S,
        stale_s: float = 1.5,
        forget_s: float = 5.0,
        min_frames: int = 2,
    ) -> None:
        super().__init__(min_frames, min_hold_s, grace_s, stale_s, forget_s)

    def read(self, person: PersonObservation, t: float) -> tuple[str | None, _Frame | None, float | None]:
        label, conf, details = traffic_gesture(person)
        if label is None:
            return ("" if conf > 0 else None), None, None
        measures: dict[str, Any] = {"arm": details.get("arm"), "variant": details.get("variant")}
        arm = (details.get("arms") or {}).get(details.get("arm") or "")
        if arm:
            measures["elevation_deg"] = arm["elevation_deg"]
            measures["elbow_deg"] = arm["elbow_deg"]
        trace = None
        other = (details.get("arms") or {}).get("right" if details.get("arm") == "left" else "left")
        if other:
            trace = float(other["wrist_across"])  # the other hand's sideways position, torso lengths
        frame = _Frame(t, conf, None, {}, {k: v for k, v in measures.items() if v is not None})
        return label, frame, trace
