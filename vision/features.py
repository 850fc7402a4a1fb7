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

SALUTE_ELBOW_DOWN = 0.33  # hand at the head, elbow less than this below the shoulders: a salute
VISIBLE = 0.5  # BlazePose visibility above which a landmark is trusted
HEAD_HAND_DOWN = 0.25  # a wrist higher than this (torso lengths below the shoulders) can be at the head
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
    trunk_down = _unit(body.hip_mid - body.shoulder_mid)
    down = float(np.dot(kp[wr] - body.shoulder_mid, trunk_down) / t)
    down_elbow = float(np.dot(kp[el] - body.shoulder_mid, trunk_down) / t)
    axis = _unit(kp[sh] - body.shoulder_mid)
    out_elbow = float(np.dot(kp[el] - body.shoulder_mid, axis) / t)
    out_shoulder = float(np.dot(kp[sh] - body.shoulder_mid, axis) / t)
    out_hip = float(np.dot(kp[hip] - body.hip_mid, axis) / t)
    out_wrist = float(np.dot(kp[wr] - body.hip_mid, axis) / t)
    mouth = (kp[L_MOUTH] + kp[R_MOUTH]) / 2
    tip = kp[idx] if body.vis[idx] >= 0.3 else kp[wr]
    # Behind the body: world z grows away from the camera.
    behind = float(world[wr, 2] - (world[L_HIP, 2] + world[R_HIP, 2]) / 2)

    # A hand at the ear or mouth lifts the wrist to the shoulder line (0.15 at most on the
    # call and drinking clips); one at the upper chest (0.3) holds a phone up to read it.
    if -0.45 < down < HEAD_HAND_DOWN and body.seen(NOSE, level=0.3):
        head = min(body.dist(tip, ear), body.dist(tip, mouth), body.dist(wr, ear))
        if head < 0.5 and down_elbow < SALUTE_ELBOW_DOWN:
            # The upper arm raised to shoulder height brings the hand to the brow: a salute,
            # not a call (a phone at the ear hangs the elbow: 0.45+ on the call clips, under
            # 0.3 for most salute frames of the Kinetics clip).
            return "other", 0.6
        if head < 0.5:
            # Beside the face is the ear; in front of it, the mouth (a cup, food, a cigarette).
            span = max(abs(float(kp[L_EAR, 0] - kp[R_EAR, 0])), 0.25 * body.shoulder_width)
            off = abs(float(tip[0] - kp[NOSE, 0])) / span
            return ("at_ear", 0.8) if off >= 0.45 else ("at_mouth", 0.7)
    if not body.seen(hip, level=0.3):
        return UNKNOWN, 0.0  # below the head, hands are judged against the hips
    if behind > 0.08 and 0.5 < down < 1.4 and abs(out_wrist) < out_shoulder + 0.2:
        return "behind", 0.7 if wrist_seen else 0.6
    # On the hip the wrist rests below its elbow; one above it is held up (a phone in both hands).
    elbow_out = out_elbow > out_shoulder + 0.2 and elbow_angle < 125
    if 0.45 < down < 1.15 and elbow_out and out_wrist > 0 and down > down_elbow:
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


def classify_hands(body: Body, holding: frozenset[str] = frozenset()) -> tuple[Label, dict[str, str]]:
    """Combine both hands into the clause vocabulary; keep each hand in the evidence.

    A hand in `holding` grips an object seen at the wrist, so where the geometry
    says "pocket" or "on_hip" it is holding that object in front (a book read at
    the waist, a phone held in both hands with the elbows out).
    """
    left, lc = hand_pose(body, "left")
    right, rc = hand_pose(body, "right")
    if "left" in holding and left in ("pocket", "on_hip"):
        left = "front"
    if "right" in holding and right in ("pocket", "on_hip"):
        right = "front"
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


#: BlazePose's metric landmarks tilt an upright trunk toward (or away from) the camera by up
#: to this much: camera pitch plus the model's own bias in close half-body crops (the upright
#: photos in ../shared/media read 15-31 degrees forward). A forward lean within it cannot be
#: told from an upright stance unless the legs show the camera's tilt.
DEPTH_ALLOWANCE_DEG = 20.0


def _depth_deg(v: np.ndarray) -> float:
    """Forward (negative, toward the camera) or backward tilt of an upward world vector, degrees."""
    return math.degrees(math.atan2(float(v[2]), max(-float(v[1]), 1e-6)))


def trunk_lean(body: Body) -> Measure:
    """Trunk angle from vertical: the in-image lean combined with a camera-corrected depth lean.

    The sideways part is read off the image, where it is measured directly. The
    toward-the-camera part only exists in the metric landmarks, and there it is
    mixed with the camera's tilt and BlazePose's bias (see DEPTH_ALLOWANCE_DEG), so
    it is corrected twice and the smaller reading kept: by the straight legs of a
    standing person (they tilt with the camera, not with the trunk), and by the
    allowance. Taking the larger of the raw 3-D and 2-D angles, as before, put
    upright people at 16-31 degrees and fired the 15-degree lean rule on them.
    """
    if not body.seen(L_SHOULDER, R_SHOULDER, L_HIP, R_HIP, level=0.4):
        return Measure()
    w = body.world
    trunk = (w[L_SHOULDER] + w[R_SHOULDER]) / 2 - (w[L_HIP] + w[R_HIP]) / 2
    raw = _depth_deg(trunk)
    depth = math.copysign(max(abs(raw) - DEPTH_ALLOWANCE_DEG, 0.0), raw)
    if body.seen(L_KNEE, R_KNEE, L_ANKLE, R_ANKLE, level=VISIBLE) and all(
        angle_at(body.kp[h], body.kp[k], body.kp[a]) >= 150
        for h, k, a in ((L_HIP, L_KNEE, L_ANKLE), (R_HIP, R_KNEE, R_ANKLE))
    ):
        legs = (w[L_HIP] + w[R_HIP]) / 2 - (w[L_ANKLE] + w[R_ANKLE]) / 2
        relative = raw - _depth_deg(legs)
        if abs(relative) < abs(depth):
            depth = relative
    v2 = body.shoulder_mid - body.hip_mid
    side = math.atan2(abs(float(v2[0])), max(-float(v2[1]), 1e-6))
    lean = math.degrees(math.atan(math.hypot(math.tan(min(side, 1.5)), math.tan(math.radians(depth)))))
    conf = float(min(body.vis[[L_SHOULDER, R_SHOULDER, L_HIP, R_HIP]]))
    return Measure(lean, conf)


#: Where the nose tip sits relative to the ear line, in ear-to-ear spans: ahead of it, and
#: below it at a level gaze (from the level-gaze photos: the drop reads 0.0-0.15 spans).
NOSE_AHEAD = 0.7
NOSE_BELOW_LEVEL = 0.1


def _image_pitch(body: Body) -> float | None:
    """Head bow from the image alone: how far the nose has dropped below the ear line.

    Bowing swings the nose (about NOSE_AHEAD spans in front of the ears) down, so
    the drop relative to the face's size gives the angle at any distance. A face
    turned sideways shortens the ear span; the nose's offset along the ear line
    says by how much, and a face turned past 50 degrees is not read at all.
    """
    if not body.seen(NOSE, L_EAR, R_EAR, level=0.5):
        return None
    kp = body.kp
    across = kp[L_EAR] - kp[R_EAR]
    span = float(np.linalg.norm(across))
    if span < 0.15 * body.shoulder_width or span < 2.0:
        return None
    along = across / span
    # Down the trunk rather than square to the ear line: a face turned and bowed at once
    # tilts the ear line in the image, and the drop read square to it shrinks.
    down = _unit(body.hip_mid - body.shoulder_mid)
    rel = kp[NOSE] - (kp[L_EAR] + kp[R_EAR]) / 2
    yaw = math.atan2(abs(float(np.dot(rel, along))), NOSE_AHEAD * span)
    if yaw > math.radians(50):
        return None
    drop = float(np.dot(rel, down)) * math.cos(yaw) / span
    return math.degrees(math.asin(float(np.clip((drop - NOSE_BELOW_LEVEL) / NOSE_AHEAD, -1.0, 1.0))))


def head_pitch(body: Body) -> Measure:
    """How far the head is bowed: the mean of the metric-landmark and the image estimates.

    The metric one (the nose's drop below the ear line against the ears' forward
    axis) reads a bowed head as level on some photos (3 degrees for the boy bent
    over his phone); the image one (see `_image_pitch`) is the direct reading of
    the same landmarks. Each alone when the other cannot be made.
    """
    world: float | None = None
    if body.seen(NOSE, level=0.5) and body.seen(L_EAR, R_EAR, level=0.2):
        w = body.world
        d = w[NOSE] - (w[L_EAR] + w[R_EAR]) / 2
        horiz = math.hypot(float(d[0]), float(d[2]))
        # A level gaze already puts the nose ~15 degrees below the ear line.
        world = math.degrees(math.atan2(float(d[1]), max(horiz, 1e-6))) - 15.0
    image = _image_pitch(body)
    if world is None and image is None:
        return Measure()
    values = [v for v in (world, image) if v is not None]
    return Measure(float(np.mean(values)), float(min(body.vis[NOSE], max(body.vis[L_EAR], body.vis[R_EAR]))))


def body_yaw(body: Body) -> Measure:
    """Chest direction relative to the camera from the shoulders and hips (0 = facing it)."""
    if not body.seen(L_SHOULDER, R_SHOULDER, level=0.4):
        return Measure()
    w = body.world
    v = (w[L_SHOULDER] - w[R_SHOULDER]) + (w[L_HIP] - w[R_HIP])
    yaw = math.degrees(math.atan2(float(v[2]), float(v[0])))
    return Measure(yaw, float(min(body.vis[L_SHOULDER], body.vis[R_SHOULDER])))


def _legs_upright(body: Body) -> bool:
    """A thigh hangs steeply down from the hip in the image, and its shin, where seen, too.

    Why: a horizontal trunk alone reads as lying, but a man bent over a railing or a counter,
    forearms resting on it (the doorbell clip, 4-12 s), has his trunk as flat as someone on the
    floor while he stands on straight legs (often cut off by the frame's bottom edge, so only
    the thighs show). Lying, or on hands and knees, the thighs or the shins are as flat as the trunk.

    "Steep" is more than 45 degrees below the horizontal: with his shins cut off by the frame,
    BlazePose tilts the bent-over man's thighs to 50-60 degrees, and how far it tilts them
    differs between CPUs (XNNPACK kernels); a lying person's thighs are within 30 degrees.
    """

    def steep(v: np.ndarray) -> bool:
        return bool(v[1] > abs(v[0]))

    for hip, knee, ankle in ((L_HIP, L_KNEE, L_ANKLE), (R_HIP, R_KNEE, R_ANKLE)):
        if not body.seen(hip, knee, level=VISIBLE):
            continue
        thigh = body.kp[knee] - body.kp[hip]
        if not steep(thigh) or float(np.hypot(*thigh)) < 0.5 * body.torso:
            continue
        if body.vis[ankle] < VISIBLE or steep(body.kp[ankle] - body.kp[knee]):
            return True
    return False


def posture(body: Body) -> Label:
    """standing / sitting / lying from the trunk and the thighs."""
    if not body.seen(L_SHOULDER, R_SHOULDER, L_HIP, R_HIP, level=0.4):
        return Label()
    w = body.world
    trunk = (w[L_SHOULDER] + w[R_SHOULDER]) / 2 - (w[L_HIP] + w[R_HIP]) / 2
    trunk_img = body.shoulder_mid - body.hip_mid
    flat = abs(trunk_img[0]) > abs(trunk_img[1]) * 1.5 and abs(trunk[0]) > abs(trunk[1])
    if flat:
        # Bent over on straight legs, or lying. Not the knee score below: it reads the
        # bent-over man's thighs, tilted by the pose model where his shins are out of the frame,
        # as a seated person's.
        return Label("standing", 0.6) if _legs_upright(body) else Label("lying", 0.7)
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


def near_hands(
    body: Body, dets: list[Detection], reach: float = 0.5, sides: tuple[str, ...] = ("left", "right")
) -> list[tuple[Detection, str, float]]:
    """Objects within `reach` torso lengths of a wrist or fingertip of one of `sides`:
    (detection, hand side, distance)."""
    out = []
    for d in dets:
        c = np.array([(d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2])
        half = max(d.box[2] - d.box[0], d.box[3] - d.box[1]) / 2 / body.torso
        best: tuple[str, float] | None = None
        for side, pts in (("left", (L_WRIST, L_INDEX)), ("right", (R_WRIST, R_INDEX))):
            if side not in sides:
                continue
            dist = min(body.dist(p, c) for p in pts) - half
            if best is None or dist < best[1]:
                best = (side, dist)
        if best is not None and best[1] < reach:
            out.append((d, best[0], best[1]))
    return out


PHONE_LABELS = ("cell phone", "remote")
OTHER_LABELS = ("book", "cup", "bottle", "wine glass")
#: A phone box's long side, in body scales (see `held_objects`): 0.2-0.64 on every phone in the
#: photos and clips, fingers included; the open paperback read at the waist is 0.95.
PHONE_MAX_SIDE = 0.75
GRIP_REACH = 0.15  # an object box this close to a wrist or fingertip (torso lengths) is gripped by it
GLANCE_DEG = 3.0  # with a phone in hand, a bow past this means the eyes are on it (level gaze reads < 3)
#: With no phone box (a phone hidden in the hand or too small to detect), a hand raised in front
#: of the chest and a head bowed past this is read as looking at a phone, at low confidence.
RAISED_BOW_DEG = 5.0
RAISED_WRIST_SEEN = 0.3  # see `raised_hand`


Held = tuple[Detection, str, float]


def held_objects(
    body: Body, per_hand: dict[str, str], held: list[Detection]
) -> tuple[list[Held], list[Held], list[Held]]:
    """What the hands hold: (phones, other objects, phone boxes re-read as books).

    Two corrections to the detector's labels. A hand behind the back holds
    nothing the camera sees, so boxes are matched to the hands in front only
    (else a book on the table beside a man with his hands behind him is "held").
    And a "phone" box too large for a phone at a hand below the face is a book or
    a sheet of paper: the detector calls an open paperback a cell phone (and its
    halves a remote and a cup), so the smaller boxes inside it go with it.
    """
    scale = max(body.shoulder_width, 0.6 * body.torso)  # a side view narrows the shoulders
    sides = tuple(s for s in ("left", "right") if per_hand.get(s) != "behind")
    found = near_hands(body, [d for d in held if d.label in PHONE_LABELS + OTHER_LABELS], sides=sides)
    reread: list[Held] = []
    kept: list[Held] = []
    for d, side, dist in found:
        long_side = max(d.box[2] - d.box[0], d.box[3] - d.box[1]) / scale
        if d.label in PHONE_LABELS and per_hand.get(side) != "at_ear" and long_side > PHONE_MAX_SIDE:
            reread.append((d, side, dist))
            d = Detection("book", d.confidence, d.box, d.source)
        kept.append((d, side, dist))
    books = [d.box for d, _, _ in kept if d.label == "book"]
    kept = [
        (d, s, dist) for d, s, dist in kept if d.label == "book" or not any(_inside(d.box, b) for b in books)
    ]
    phones = [h for h in kept if h[0].label in PHONE_LABELS]
    others = [h for h in kept if h[0].label in OTHER_LABELS]
    return phones, others, reread


def _inside(box: np.ndarray, outer: np.ndarray) -> bool:
    """The box's centre lies in `outer`, and the box is the smaller of the two."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    area = (box[2] - box[0]) * (box[3] - box[1])
    outer_area = (outer[2] - outer[0]) * (outer[3] - outer[1])
    return bool(outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3] and area < outer_area)


def gripping(body: Body, objects: list[Detection], per_hand: dict[str, str]) -> frozenset[str]:
    """The hands (in front of the body) whose wrist or fingertip is on one of the object boxes."""
    out = set()
    for side, pts in (("left", (L_WRIST, L_INDEX)), ("right", (R_WRIST, R_INDEX))):
        if per_hand.get(side) in (UNKNOWN, "behind"):
            continue
        for d in objects:
            x1, y1, x2, y2 = (float(v) for v in d.box)
            for i in pts:
                if body.vis[i] < 0.3:
                    continue
                gap = np.hypot(
                    max(x1 - body.kp[i, 0], 0.0, body.kp[i, 0] - x2),
                    max(y1 - body.kp[i, 1], 0.0, body.kp[i, 1] - y2),
                )
                if gap / body.torso < GRIP_REACH:
                    out.add(side)
    return frozenset(out)


def raised_hand(body: Body, side: str) -> bool:
    """A hand held up in front of the chest with the forearm raised: how a phone is held to read it.

    Wrist between the chin and the belly and above its elbow, elbow bent tight,
    wrist no further out than the shoulder (the readers in the photos and clips:
    elbow 18-69 degrees). A hand to the ear or mouth is higher; a hand in a
    pocket, on the hip or folded under the other arm hangs at or below its elbow.
    """
    sh, el, wr = (L_SHOULDER, L_ELBOW, L_WRIST) if side == "left" else (R_SHOULDER, R_ELBOW, R_WRIST)
    # The wrist at a lower level: a hand held in front of the chest is half hidden by the phone
    # and the other arm, and BlazePose marks it 0.3-0.5 visible while placing it well.
    if not body.seen(sh, el, level=VISIBLE) or not body.seen(wr, level=RAISED_WRIST_SEEN):
        return False
    kp, t = body.kp, body.torso
    axis = _unit(body.hip_mid - body.shoulder_mid)
    down_wrist = float(np.dot(kp[wr] - body.shoulder_mid, axis) / t)
    down_elbow = float(np.dot(kp[el] - body.shoulder_mid, axis) / t)
    out = _unit(kp[sh] - body.shoulder_mid)
    out_wrist = float(np.dot(kp[wr] - body.shoulder_mid, out) / t)
    out_shoulder = float(np.dot(kp[sh] - body.shoulder_mid, out) / t)
    return bool(
        HEAD_HAND_DOWN - 0.1 < down_wrist < 0.8
        and down_wrist < down_elbow
        and angle_at(kp[sh], kp[el], kp[wr]) < 75
        and out_wrist < out_shoulder + 0.1
    )


def phone_state(
    body: Body, per_hand: dict[str, str], pitch: Measure, held: list[Detection]
) -> tuple[Label, dict[str, object]]:
    """Fuse phone evidence: a phone box at a hand, where that hand is, and where the head points.

    A phone box near a hand at the ear is a call; at a hand with the head bowed
    (or, when the face cannot be read, both hands together in front) it is
    looked at; a phone at a hand otherwise is in hand. A hand held at the ear
    with no phone box seen (the hand hides it) is weaker evidence of a call, and
    so is a hand raised in front of the chest under a bowed head (the phone of a
    small or distant person is rarely detected at all). `remote` boxes count as
    weak phone evidence; a book or cup at the hand argues against.
    """
    phones, others, reread = held_objects(body, per_hand, held)
    raised = [s for s in ("left", "right") if raised_hand(body, s)]
    # A "remote" is only phone evidence where a phone would be: raised to read or at the ear
    # (not a Wii remote hanging at the side, nor a small thing in hands clasped at the waist).
    phones = [
        h for h in phones if h[0].label == "cell phone" or h[1] in raised or per_hand.get(h[1]) == "at_ear"
    ]
    evidence: dict[str, object] = {
        "phone_boxes": [[d.label, round(d.confidence, 2), side, d.source] for d, side, _ in phones],
        "other_in_hand": [[d.label, round(d.confidence, 2), side] for d, side, _ in others],
        "hands": per_hand,
        "head_pitch": None if pitch.value is None else round(pitch.value, 1),
    }
    if reread:
        evidence["too_large_for_a_phone"] = [[d.label, round(d.confidence, 2), side] for d, side, _ in reread]
    if all(v == UNKNOWN for v in per_hand.values()):
        return Label(), evidence
    phone_conf = max(
        (d.confidence * (1.0 if d.label == "cell phone" else 0.6) for d, _, _ in phones), default=0.0
    )
    other_conf = max((d.confidence for d, _, _ in others), default=0.0)
    at_ear_sides = [s for s, v in per_hand.items() if v == "at_ear"]
    hands_together = body.seen(L_WRIST, R_WRIST, level=0.3) and body.dist(L_WRIST, R_WRIST) < 0.5
    in_front = [s for s, v in per_hand.items() if v in ("front", "pocket", "other")]
    phone_sides = {s for _, s, _ in phones}

    if at_ear_sides:
        conf = 0.55 + 0.4 * phone_conf if phone_sides & set(at_ear_sides) else 0.55
        if other_conf > phone_conf:
            conf *= 0.5
        return Label("at_ear", conf), evidence
    if phone_conf > 0 and phone_conf >= other_conf * 0.8:
        if pitch.value is not None:
            looking = pitch.value > GLANCE_DEG
        else:  # the face is not seen (from behind): the hands say it
            looking = bool(hands_together and in_front)
        if looking:
            return Label("looking", min(0.95, 0.5 + phone_conf)), evidence
        return Label("in_hand", min(0.9, 0.4 + phone_conf)), evidence
    if not others and pitch.value is not None:
        if raised and pitch.value > RAISED_BOW_DEG:
            evidence["raised_hand"] = raised
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
    first = {side: hand_pose(body, side)[0] for side in ("left", "right")}
    phones, others, _ = held_objects(body, first, held)
    holding = gripping(body, [d for d, _, _ in phones + others], first)
    hands, per_hand = classify_hands(body, holding)
    pitch = head_pitch(body)
    phone, evidence = phone_state(body, per_hand, pitch, held)
    objects: dict[str, float] = {}
    tie = worn_tie(body, box, ties)
    if tie:
        objects["tie"] = tie
    for d, _, _ in held_objects(body, per_hand, held)[1]:
        name = "cup" if d.label == "wine glass" else d.label
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
