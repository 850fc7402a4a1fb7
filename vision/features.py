"""Per-person features from landmarks and nearby objects: what a rule can read.

Everything here is geometry on one person's landmarks, normalised by the
person's own torso so that it holds at any distance from the camera. A
feature whose landmarks are not visible enough is `unknown` rather than a
guess. The thresholds were read off the real photos and clips in
`../shared/media` (see tests/test_features_media.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vision.observation import UNKNOWN, Detection, Features, Label, Measure
from vision.pose import (
    L_ANKLE,
    L_EAR,
    L_ELBOW,
    L_FOOT,
    L_HEEL,
    L_HIP,
    L_INDEX,
    L_KNEE,
    L_MOUTH,
    L_SHOULDER,
    L_WRIST,
    NOSE,
    R_ANKLE,
    R_EAR,
    R_ELBOW,
    R_FOOT,
    R_HEEL,
    R_HIP,
    R_INDEX,
    R_KNEE,
    R_MOUTH,
    R_SHOULDER,
    R_WRIST,
)

VISIBLE = 0.5  # BlazePose visibility above which a landmark is trusted
HAND_PRIORITY = (
    "arms_folded",
    "on_hips",
    "in_pockets",
    "at_ear",
    "at_mouth",
    "clasped_behind",
    "clasped_front",
    "at_sides",
    "other",
)


@dataclass
class Body:
    """Landmarks of one person plus the torso frame every feature is measured in."""

    kp: np.ndarray  # (33, 2) pixels
    world: np.ndarray  # (33, 3) metres
    vis: np.ndarray  # (33,)

    def seen(self, *idx: int, level: float = VISIBLE) -> bool:
        return bool(all(self.vis[i] >= level for i in idx))

    @property
    def shoulder_mid(self) -> np.ndarray:
        return (self.kp[L_SHOULDER] + self.kp[R_SHOULDER]) / 2

    @property
    def hips_seen(self) -> bool:
        return self.seen(L_HIP, R_HIP, level=0.3)

    @property
    def hip_mid(self) -> np.ndarray:
        """Between the hips; in a close-up without hips, estimated one and a quarter
        shoulder widths straight down from the shoulders (an average torso)."""
        if self.hips_seen:
            return (self.kp[L_HIP] + self.kp[R_HIP]) / 2
        across = self.kp[L_SHOULDER] - self.kp[R_SHOULDER]
        down = np.array([-across[1], across[0]], dtype=float)
        if down[1] < 0:
            down = -down
        return self.shoulder_mid + 1.25 * down

    @property
    def torso(self) -> float:
        """Shoulder-to-hip length in pixels: the unit every distance is divided by."""
        return float(max(np.linalg.norm(self.hip_mid - self.shoulder_mid), 1.0))

    @property
    def shoulder_width(self) -> float:
        return float(max(np.linalg.norm(self.kp[L_SHOULDER] - self.kp[R_SHOULDER]), 1.0))

    def dist(self, a: int | np.ndarray, b: int | np.ndarray) -> float:
        """Image distance between two landmarks (or points) in torso lengths."""
        pa = self.kp[a] if isinstance(a, int) else a
        pb = self.kp[b] if isinstance(b, int) else b
        return float(np.linalg.norm(pa - pb) / self.torso)


def angle_at(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
    """The angle ABC in degrees (180 = straight)."""
    v1, v2 = a - b, c - b
    n = np.linalg.norm(v1) * np.linalg.norm(v2)
    if n == 0:
        return 180.0
    return float(np.degrees(np.arccos(np.clip(np.dot(v1, v2) / n, -1.0, 1.0))))


# --- single-hand geometry -------------------------------------------------------------------


def hand_pose(body: Body, side: str) -> tuple[str, float]:
    """Where one hand is: at_ear, at_mouth, behind, on_hip, at_sides, pocket, front, other.

    Measured in the torso frame: `down` is how far the wrist hangs below the
    shoulder line (0 = shoulders, 1 = hips), lateral offsets are from the
    body's midline, outward positive. `pocket` is a bent arm whose wrist rests
    at the hip line: a hand in a pocket, or one half of hands clasped in front
    (`classify_hands` tells the two apart by whether the fingertips meet).
    """
    sh, el, wr, hip, ear, idx = (
        (L_SHOULDER, L_ELBOW, L_WRIST, L_HIP, L_EAR, L_INDEX)
        if side == "left"
        else (R_SHOULDER, R_ELBOW, R_WRIST, R_HIP, R_EAR, R_INDEX)
    )
    if not body.seen(sh, el, level=0.3):
        return UNKNOWN, 0.0
    t = body.torso
    kp, world = body.kp, body.world
    elbow_angle = angle_at(kp[sh], kp[el], kp[wr])
    wrist_seen = body.vis[wr] >= VISIBLE
    down = float(np.dot(kp[wr] - body.shoulder_mid, _unit(body.hip_mid - body.shoulder_mid)) / t)
    axis = _unit(kp[sh] - body.shoulder_mid)
    out_elbow = float(np.dot(kp[el] - body.shoulder_mid, axis) / t)
    out_shoulder = float(np.dot(kp[sh] - body.shoulder_mid, axis) / t)
    out_hip = float(np.dot(kp[hip] - body.hip_mid, axis) / t)
    out_wrist = float(np.dot(kp[wr] - body.hip_mid, axis) / t)
    mouth = (kp[L_MOUTH] + kp[R_MOUTH]) / 2
    tip = kp[idx] if body.vis[idx] >= 0.3 else kp[wr]
    # Behind the body: world z grows away from the camera.
    behind = float(world[wr, 2] - (world[L_HIP, 2] + world[R_HIP, 2]) / 2)

    if -0.45 < down < 0.4 and body.seen(NOSE, level=0.3):
        head = min(body.dist(tip, ear), body.dist(tip, mouth), body.dist(wr, ear))
        if head < 0.5:
            # Beside the face is the ear; in front of it, the mouth (a cup, food, a cigarette).
            span = max(abs(float(kp[L_EAR, 0] - kp[R_EAR, 0])), 0.25 * body.shoulder_width)
            off = abs(float(tip[0] - kp[NOSE, 0])) / span
            return ("at_ear", 0.8) if off >= 0.45 else ("at_mouth", 0.7)
    if not body.seen(hip, level=0.3):
        return UNKNOWN, 0.0  # below the head, hands are judged against the hips
    if behind > 0.08 and 0.5 < down < 1.4 and abs(out_wrist) < out_shoulder + 0.2:
        return "behind", 0.7 if wrist_seen else 0.6
    if 0.45 < down < 1.15 and out_elbow > out_shoulder + 0.2 and elbow_angle < 125 and out_wrist > 0:
        return "on_hip", 0.75
    if (down >= 0.95 and elbow_angle >= 155) or (down >= 1.0 and elbow_angle >= 150):
        return "at_sides", 0.7
    bent_low = 0.6 < down < 1.3 and 95 < elbow_angle < 165
    straight_high = 0.6 < down < 0.95  # a hanging arm would reach lower: the hand rests on something
    if (bent_low or straight_high) and out_hip - 0.08 <= out_wrist <= out_hip + 0.45:
        return "pocket", 0.6
    if 0.15 < down < 1.3 and out_wrist < out_hip:
        return "front", 0.6
    return "other", 0.5


def classify_hands(body: Body) -> tuple[Label, dict[str, str]]:
    """Combine both hands into the clause vocabulary; keep each hand in the evidence."""
    left, lc = hand_pose(body, "left")
    right, rc = hand_pose(body, "right")
    per = {"left": left, "right": right}
    if left == UNKNOWN and right == UNKNOWN:
        return Label(), per
    both = {left, right}
    conf = min(lc, rc) if UNKNOWN not in both else max(lc, rc) * 0.7
    tips_meet = body.seen(L_INDEX, R_INDEX, level=0.3) and body.dist(L_INDEX, R_INDEX) < 0.35

    if _arms_folded(body):
        return Label("arms_folded", 0.8), per
    if "on_hip" in both:
        return Label("on_hips", lc if left == "on_hip" else rc), per
    if "at_ear" in both:
        return Label("at_ear", 0.8), per
    if "at_mouth" in both:
        return Label("at_mouth", 0.7), per
    if both <= {"pocket", "front"} and tips_meet:
        return Label("clasped_front", conf), per
    if "behind" in both and both <= {"behind", "pocket", UNKNOWN}:
        return Label("clasped_behind", conf), per
    if "pocket" in both:
        return Label("in_pockets", lc if left == "pocket" else rc), per
    if both <= {"at_sides", UNKNOWN}:
        return Label("at_sides", conf), per
    return Label("other", 0.5), per


def _arms_folded(body: Body) -> bool:
    """Both forearms across the chest: each wrist near the other arm's elbow, elbows bent."""
    if not body.seen(L_ELBOW, R_ELBOW, level=0.3):
        return False
    kp = body.kp
    bent = (
        angle_at(kp[L_SHOULDER], kp[L_ELBOW], kp[L_WRIST]) < 110
        and angle_at(kp[R_SHOULDER], kp[R_ELBOW], kp[R_WRIST]) < 110
    )
    crossed = body.dist(L_WRIST, R_ELBOW) < 0.4 and body.dist(R_WRIST, L_ELBOW) < 0.4
    axis = _unit(body.hip_mid - body.shoulder_mid)
    chest = all(
        0.15 < np.dot(kp[w] - body.shoulder_mid, axis) / body.torso < 0.85 for w in (L_WRIST, R_WRIST)
    )
    return bool(bent and crossed and chest)


# --- whole-body geometry --------------------------------------------------------------------


def trunk_lean(body: Body) -> Measure:
    """Trunk angle from vertical, from the metric landmarks (so a forward bend toward the camera counts)."""
    if not body.seen(L_SHOULDER, R_SHOULDER, L_HIP, R_HIP, level=0.4):
        return Measure()
    w = body.world
    v = (w[L_SHOULDER] + w[R_SHOULDER]) / 2 - (w[L_HIP] + w[R_HIP]) / 2
    lean3d = math.degrees(math.acos(float(np.clip(-v[1] / max(np.linalg.norm(v), 1e-6), -1, 1))))
    v2 = body.shoulder_mid - body.hip_mid
    lean2d = math.degrees(math.atan2(abs(float(v2[0])), max(-float(v2[1]), 1e-6)))
    conf = float(min(body.vis[[L_SHOULDER, R_SHOULDER, L_HIP, R_HIP]]))
    return Measure(max(lean3d, lean2d), conf)


def head_pitch(body: Body) -> Measure:
    """How far the head is bowed: the nose's drop below the ear line, relative to the ears' forward axis."""
    if not body.seen(NOSE, level=0.5) or not body.seen(L_EAR, R_EAR, level=0.2):
        return Measure()
    w = body.world
    ears = (w[L_EAR] + w[R_EAR]) / 2
    d = w[NOSE] - ears
    horiz = math.hypot(float(d[0]), float(d[2]))
    # A level gaze already puts the nose ~15 degrees below the ear line.
    pitch = math.degrees(math.atan2(float(d[1]), max(horiz, 1e-6))) - 15.0
    return Measure(pitch, float(min(body.vis[NOSE], max(body.vis[L_EAR], body.vis[R_EAR]))))


def body_yaw(body: Body) -> Measure:
    """Chest direction relative to the camera from the shoulders and hips (0 = facing it)."""
    if not body.seen(L_SHOULDER, R_SHOULDER, level=0.4):
        return Measure()
    w = body.world
    v = (w[L_SHOULDER] - w[R_SHOULDER]) + (w[L_HIP] - w[R_HIP])
    yaw = math.degrees(math.atan2(float(v[2]), float(v[0])))
    return Measure(yaw, float(min(body.vis[L_SHOULDER], body.vis[R_SHOULDER])))


def posture(body: Body) -> Label:
    """standing / sitting / lying from the trunk and the thighs."""
    if not body.seen(L_SHOULDER, R_SHOULDER, L_HIP, R_HIP, level=0.4):
        return Label()
    w = body.world
    trunk = (w[L_SHOULDER] + w[R_SHOULDER]) / 2 - (w[L_HIP] + w[R_HIP]) / 2
    trunk_img = body.shoulder_mid - body.hip_mid
    if abs(trunk_img[0]) > abs(trunk_img[1]) * 1.5 and abs(trunk[0]) > abs(trunk[1]):
        return Label("lying", 0.7)
    knees = [k for k, h in ((L_KNEE, L_HIP), (R_KNEE, R_HIP)) if body.vis[k] >= VISIBLE]
    if not knees:
        return Label()
    scores = []
    for k in knees:
        h = L_HIP if k == L_KNEE else R_HIP
        a = L_ANKLE if k == L_KNEE else R_ANKLE
        thigh = w[k] - w[h]
        thigh_deg = math.degrees(
            math.acos(float(np.clip(thigh[1] / max(np.linalg.norm(thigh), 1e-6), -1, 1)))
        )
        drop = float((body.kp[k, 1] - body.kp[h, 1]) / body.torso)  # image: how far the knee hangs below
        knee_deg = angle_at(body.kp[h], body.kp[k], body.kp[a]) if body.vis[a] >= 0.3 else 180.0
        sit = (thigh_deg > 35) + (drop < 0.6) + (knee_deg < 160)
        scores.append(sit)
    s = float(np.mean(scores))
    if s >= 1.5:
        return Label("sitting", min(0.9, 0.5 + s / 6))
    return Label("standing", min(0.9, 0.5 + (3 - s) / 6))


def legs(body: Body) -> Label:
    """crossed when the knees or ankles swap sides relative to the hips."""
    if not body.seen(L_HIP, R_HIP, L_KNEE, R_KNEE, level=0.4):
        return Label()
    hip_dir = np.sign(body.kp[L_HIP, 0] - body.kp[R_HIP, 0])
    knee_dir = np.sign(body.kp[L_KNEE, 0] - body.kp[R_KNEE, 0])
    ankle_seen = body.seen(L_ANKLE, R_ANKLE, level=0.4)
    ankle_dir = np.sign(body.kp[L_ANKLE, 0] - body.kp[R_ANKLE, 0]) if ankle_seen else hip_dir
    knee_gap = body.dist(L_KNEE, R_KNEE)
    if knee_dir != hip_dir or ankle_dir != hip_dir:
        return Label("crossed", 0.7)
    if ankle_seen and body.dist(L_ANKLE, R_ANKLE) < 0.25 and knee_gap < 0.3:
        return Label("together", 0.6)
    return Label("apart", 0.6)


def feet(body: Body, height_px: float) -> tuple[Measure, Measure]:
    """Heel gap (in body heights until a floor scale exists) and the angle between the feet (degrees)."""
    if not body.seen(L_HEEL, R_HEEL, L_FOOT, R_FOOT, level=0.5):
        return Measure(), Measure()
    gap = float(np.linalg.norm(body.kp[L_HEEL] - body.kp[R_HEEL]) / max(height_px, 1.0))
    w = body.world
    fl = (w[L_FOOT] - w[L_HEEL])[[0, 2]]
    fr = (w[R_FOOT] - w[R_HEEL])[[0, 2]]
    n = np.linalg.norm(fl) * np.linalg.norm(fr)
    toe = math.degrees(math.acos(float(np.clip(np.dot(fl, fr) / n, -1, 1)))) if n > 0 else 0.0
    conf = float(min(body.vis[[L_HEEL, R_HEEL, L_FOOT, R_FOOT]]))
    return Measure(gap, conf), Measure(toe, conf * 0.7)


# --- objects and phone ----------------------------------------------------------------------


def worn_tie(body: Body | None, box: np.ndarray, ties: list[Detection]) -> float:
    """Confidence that one of the tie boxes hangs on this person's chest.

    Judged on the torso when the pose is trusted, else on the box (a tie sits
    in the middle of the box, below its top). The caller offers each tie to
    the nearest person only, so one tie is never worn by two people.
    """
    best = 0.0
    x1, y1, x2, y2 = (float(v) for v in box)
    for tie in ties:
        cx, cy = (tie.box[0] + tie.box[2]) / 2, (tie.box[1] + tie.box[3]) / 2
        ok = x1 + 0.2 * (x2 - x1) < cx < x2 - 0.2 * (x2 - x1) and y1 + 0.1 * (y2 - y1) < cy < y2
        if not ok and body is not None and body.seen(L_SHOULDER, R_SHOULDER, L_HIP, R_HIP, level=0.5):
            mid = body.shoulder_mid
            ok = abs(cx - mid[0]) < 0.6 * body.shoulder_width and mid[1] - 0.2 * body.torso < cy
            ok = ok and cy < body.hip_mid[1] + 0.2 * body.torso
        if ok:
            best = max(best, tie.confidence)
    return best


def near_hands(body: Body, dets: list[Detection], reach: float = 0.5) -> list[tuple[Detection, str, float]]:
    """Objects within `reach` torso lengths of a wrist or fingertip: (detection, hand side, distance)."""
    out = []
    for d in dets:
        c = np.array([(d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2])
        half = max(d.box[2] - d.box[0], d.box[3] - d.box[1]) / 2 / body.torso
        best: tuple[str, float] | None = None
        for side, pts in (("left", (L_WRIST, L_INDEX)), ("right", (R_WRIST, R_INDEX))):
            dist = min(body.dist(p, c) for p in pts) - half
            if best is None or dist < best[1]:
                best = (side, dist)
        if best is not None and best[1] < reach:
            out.append((d, best[0], best[1]))
    return out


def phone_state(
    body: Body, per_hand: dict[str, str], pitch: Measure, held: list[Detection]
) -> tuple[Label, dict[str, object]]:
    """Fuse phone evidence: a phone box at a hand, where that hand is, and where the head points.

    A phone box near a hand at the ear is a call; near a hand in front of the
    chest with the head bowed (or both hands together) is looking at it; a
    phone at a hand otherwise is in hand. A hand held at the ear with no phone
    box seen (the hand hides it) is weaker evidence of a call. `remote` boxes
    count as weak phone evidence; a book or cup at the hand argues against.
    """
    phones = [(d, s, dist) for d, s, dist in near_hands(body, held) if d.label in ("cell phone", "remote")]
    others = [
        (d, s, dist)
        for d, s, dist in near_hands(body, held)
        if d.label in ("book", "cup", "bottle", "wine glass")
    ]
    evidence: dict[str, object] = {
        "phone_boxes": [[d.label, round(d.confidence, 2), side, d.source] for d, side, _ in phones],
        "other_in_hand": [[d.label, round(d.confidence, 2), side] for d, side, _ in others],
        "hands": per_hand,
        "head_pitch": None if pitch.value is None else round(pitch.value, 1),
    }
    if all(v == UNKNOWN for v in per_hand.values()):
        return Label(), evidence
    phone_conf = max(
        (d.confidence * (1.0 if d.label == "cell phone" else 0.6) for d, _, _ in phones), default=0.0
    )
    other_conf = max((d.confidence for d, _, _ in others), default=0.0)
    at_ear_sides = [s for s, v in per_hand.items() if v == "at_ear"]
    bowed = pitch.value is not None and pitch.value > 20
    hands_together = body.seen(L_WRIST, R_WRIST, level=0.3) and body.dist(L_WRIST, R_WRIST) < 0.5
    in_front = [s for s, v in per_hand.items() if v in ("front", "pocket", "other")]
    phone_sides = {s for _, s, _ in phones}

    if at_ear_sides:
        conf = 0.55 + 0.4 * phone_conf if phone_sides & set(at_ear_sides) else 0.55
        if other_conf > phone_conf:
            conf *= 0.5
        return Label("at_ear", conf), evidence
    if phone_conf > 0 and phone_conf >= other_conf * 0.8:
        # With a phone at the hand, a slight bow already means the eyes are on it (level gaze reads < 0).
        glancing = pitch.value is not None and pitch.value > 3
        if glancing or (hands_together and in_front):
            return Label("looking", min(0.95, 0.5 + phone_conf)), evidence
        return Label("in_hand", min(0.9, 0.4 + phone_conf)), evidence
    if bowed and hands_together and in_front and not others:
        return Label("looking", 0.4), evidence
    return Label("none", 0.6 if not others else 0.7), evidence


def phone_from_box(box: np.ndarray, held: list[Detection]) -> tuple[Label, dict[str, object]]:
    """Without landmarks (a close-up BlazePose cannot fit), a phone box still says something:
    one at head height inside the person's box is probably at the ear. Low confidence either way."""
    x1, y1, x2, y2 = (float(v) for v in box)
    phones = [d for d in held if d.label == "cell phone"]
    inside = [
        d for d in phones if x1 <= (d.box[0] + d.box[2]) / 2 <= x2 and y1 <= (d.box[1] + d.box[3]) / 2 <= y2
    ]
    if not inside:
        return Label(), {}
    evidence: dict[str, object] = {
        "phone_boxes": [[d.label, round(d.confidence, 2), "box", d.source] for d in inside]
    }
    head = [d for d in inside if (d.box[1] + d.box[3]) / 2 < y1 + 0.45 * (y2 - y1)]
    if head:
        return Label("at_ear", min(0.5, 0.2 + max(d.confidence for d in head))), evidence
    return Label("in_hand", min(0.4, 0.1 + max(d.confidence for d in inside))), evidence


def compute_features(
    kp: np.ndarray | None,
    world: np.ndarray | None,
    vis: np.ndarray | None,
    box: np.ndarray,
    held: list[Detection],
    ties: list[Detection],
) -> tuple[Features, dict[str, object]]:
    """All features of one person. Without landmarks only the worn tie can be judged."""
    height_px = float(box[3] - box[1])
    if kp is None or world is None or vis is None:
        tie = worn_tie(None, box, ties)
        phone, evidence = phone_from_box(box, held)
        return Features(phone=phone, objects={"tie": tie} if tie else {}), evidence
    body = Body(kp, world, vis)
    hands, per_hand = classify_hands(body)
    pitch = head_pitch(body)
    phone, evidence = phone_state(body, per_hand, pitch, held)
    objects: dict[str, float] = {}
    tie = worn_tie(body, box, ties)
    if tie:
        objects["tie"] = tie
    for d, _, _ in near_hands(body, held):
        name = "cup" if d.label == "wine glass" else d.label
        if name in ("book", "cup", "bottle"):
            objects[name] = max(objects.get(name, 0.0), d.confidence)
    heel_gap, toe = feet(body, height_px)
    return (
        Features(
            posture=posture(body),
            hands=hands,
            phone=phone,
            legs=legs(body),
            objects=objects,
            trunk_lean_deg=trunk_lean(body),
            head_pitch_deg=pitch,
            body_yaw_deg=body_yaw(body),
            heel_gap=heel_gap,
            toe_angle_deg=toe,
        ),
        evidence,
    )


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v
