"""Guard rules (rules/guard.py): stances, the salute and traffic signals, on real skeletons and media.

Three kinds of evidence, named in the test names:

* real media from ../shared/media (labels.yaml), run through the pipeline (skipped without
  ../shared or the models): the stop-signal photos, the CTPGesture mosaic, the salute clip;
* the pipeline's recorded output of the same media (tests/fixtures/guard_*, written by
  tests/fixtures/guard_record.py), so the same checks run without models;
* where no footage exists (guard stances, the other traffic signals, a held salute of known
  form): a real BlazePose skeleton from a photo, with joints moved into the pose (arms
  placed bone by bone with the skeleton's own bone lengths, feet spread or turned, the body
  turned), its features recomputed by vision.features.compute_features. Image pixels and
  world metres are moved together so both views of the skeleton agree.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from conftest import make_pipeline, media_path, observe_image

import rules.engine as engine_module
from rules.checks import RULES, PersonHistory
from rules.engine import RuleEngine
from rules.guard import (
    GUARD_RULES,
    GestureEvent,
    SaluteDetector,
    TrafficGestureDetector,
    classify_traffic_gesture,
    guard_stance_ceremonial,
    guard_stance_female,
    guard_stance_female_ceremonial,
    guard_stance_female_reception,
    guard_stance_fixed,
    salute_pose,
    traffic_gesture,
)
from vision.features import compute_features
from vision.observation import FrameObservation, Label, PersonObservation, read_jsonl
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
    L_PINKY,
    L_SHOULDER,
    L_THUMB,
    L_WRIST,
    R_ANKLE,
    R_EAR,
    R_ELBOW,
    R_EYE,
    R_FOOT,
    R_HEEL,
    R_HIP,
    R_INDEX,
    R_KNEE,
    R_PINKY,
    R_SHOULDER,
    R_THUMB,
    R_WRIST,
)
from vision.sources import open_source

FIXTURES = Path(__file__).parent / "fixtures"
NO_HISTORY = PersonHistory()
FPS = 10.0
DT = 1.0 / FPS

# -- real skeletons and how they are moved ---------------------------------------------------


def load_skeleton(name: str) -> PersonObservation:
    """A real skeleton saved by tests/fixtures/guard_record.py (features as the pipeline computed them)."""
    data = json.loads((FIXTURES / f"guard_{name}.skeleton.json").read_text())
    return PersonObservation.from_dict(data["person"])


_ARM = {
    "left": (L_SHOULDER, L_ELBOW, L_WRIST, L_INDEX, L_PINKY, L_THUMB),
    "right": (R_SHOULDER, R_ELBOW, R_WRIST, R_INDEX, R_PINKY, R_THUMB),
}
_LEG = {"left": (L_HIP, L_KNEE, L_ANKLE, L_HEEL, L_FOOT), "right": (R_HIP, R_KNEE, R_ANKLE, R_HEEL, R_FOOT)}


class Skeleton:
    """A real BlazePose skeleton that a test moves joint by joint.

    Every move sets a joint's world position (metres) and derives its image position from an
    already placed joint, at the skeleton's own pixels-per-metre (torso in pixels / torso in
    metres), so the image and the world landmarks keep agreeing. Directions are given in the
    body's terms for a person facing the camera, as (out, up, forward): out = toward that
    arm's own side, forward = toward the camera.
    """

    def __init__(self, person: PersonObservation) -> None:
        assert person.keypoints is not None and person.keypoints_world is not None
        assert person.visibility is not None
        self.kp = person.keypoints.copy()
        self.world = person.keypoints_world.copy()
        self.vis = person.visibility.copy()
        self.box = person.box.copy()
        self.track_id = person.track_id
        w, kp = self.world, self.kp
        torso_m = np.linalg.norm(((w[L_SHOULDER] + w[R_SHOULDER]) / 2 - (w[L_HIP] + w[R_HIP]) / 2)[:2])
        torso_px = np.linalg.norm((kp[L_SHOULDER] + kp[R_SHOULDER]) / 2 - (kp[L_HIP] + kp[R_HIP]) / 2)
        self.scale = float(torso_px / torso_m)

    def copy(self) -> Skeleton:
        return copy.deepcopy(self)

    @staticmethod
    def direction(side: str, out: float, up: float, forward: float) -> np.ndarray:
        x = out if side == "left" else -out
        v = np.array([x, -up, -forward], dtype=float)
        return v / np.linalg.norm(v)

    def put(self, idx: int, point: np.ndarray, anchor: int, visibility: float = 0.95) -> None:
        self.kp[idx] = self.kp[anchor] + self.scale * (point - self.world[anchor])[:2]
        self.world[idx] = point
        self.vis[idx] = max(self.vis[idx], visibility)

    def length(self, a: int, b: int) -> float:
        return float(np.linalg.norm(self.world[b] - self.world[a]))

    def arm(
        self,
        side: str,
        upper: Sequence[float],
        fore: Sequence[float],
        hand: Sequence[float] | None = None,
    ) -> Skeleton:
        """Place elbow, wrist and hand along (out, up, forward) directions, bone lengths kept."""
        s, e, w, i, p, t = _ARM[side]
        lu, lf = self.length(s, e), self.length(e, w)
        lh = max(self.length(w, i), 0.07)
        self.put(e, self.world[s] + lu * self.direction(side, *upper), s)
        self.put(w, self.world[e] + lf * self.direction(side, *fore), e)
        d = self.direction(side, *(hand or fore))
        for idx, k in ((i, 1.0), (p, 0.85), (t, 0.6)):
            self.put(idx, self.world[w] + k * lh * d, w)
        return self

    def arms_down(self) -> Skeleton:
        """Both arms hanging straight, a little out from the hips (立正)."""
        for side in ("left", "right"):
            self.arm(side, (0.1, -1.0, 0.0), (0.05, -1.0, 0.0))
        return self

    def hand_to(self, side: str, target: np.ndarray, upper: Sequence[float], wrist_bend_deg: float = 0.0):
        """Upper arm along `upper`; the fingertip on `target` (world), the wrist on the line from
        the elbow (straight wrist) or bent by `wrist_bend_deg` in the image plane."""
        s, e, w, i, p, t = _ARM[side]
        lu = self.length(s, e)
        lh = max(self.length(w, i), 0.07)
        self.put(e, self.world[s] + lu * self.direction(side, *upper), s)
        d = target - self.world[e]
        d = d / np.linalg.norm(d)
        if wrist_bend_deg:
            c, sn = math.cos(math.radians(wrist_bend_deg)), math.sin(math.radians(wrist_bend_deg))
            hand = np.array([c * d[0] - sn * d[1], sn * d[0] + c * d[1], d[2]])
        else:
            hand = d
        wrist = target - lh * hand
        self.put(w, wrist, e)
        for idx, k in ((i, 1.0), (p, 0.85), (t, 0.6)):
            self.put(idx, wrist + k * lh * hand, w)
        return self

    def brow(self, side: str = "right") -> np.ndarray:
        """The outer end of the eyebrow (眉尖): between eye and ear, a little above."""
        eye, ear = (R_EYE, R_EAR) if side == "right" else (L_EYE, L_EAR)
        return (self.world[eye] + self.world[ear]) / 2 + np.array([0.0, -0.03, 0.0])

    def shift_leg(self, side: str, dx_m: float) -> Skeleton:
        """Move a foot sideways by dx_m (world x), the knee by the share that keeps the leg straight."""
        hip, knee, ankle, heel, foot = _LEG[side]
        share = (self.world[knee, 1] - self.world[hip, 1]) / (self.world[ankle, 1] - self.world[hip, 1])
        for idx, k in ((knee, share), (ankle, 1.0), (heel, 1.0), (foot, 1.0)):
            self.world[idx, 0] += k * dx_m
            self.kp[idx, 0] += k * dx_m * self.scale
        return self

    def ankle_gap_sw(self) -> float:
        return float(np.linalg.norm(self.kp[L_ANKLE] - self.kp[R_ANKLE]) / self.shoulder_px())

    def shoulder_px(self) -> float:
        return float(np.linalg.norm(self.kp[L_SHOULDER] - self.kp[R_SHOULDER]))

    def feet_apart(self, shoulder_widths: float) -> Skeleton:
        """Ankles `shoulder_widths` shoulder widths apart (image), symmetric about their middle."""
        gap_px = np.linalg.norm(self.kp[L_ANKLE] - self.kp[R_ANKLE])
        d = (shoulder_widths * self.shoulder_px() - gap_px) / 2 / self.scale
        sign = 1.0 if self.kp[L_ANKLE, 0] > self.kp[R_ANKLE, 0] else -1.0
        return self.shift_leg("left", sign * d).shift_leg("right", -sign * d)

    def heels_apart(self, body_heights: float) -> Skeleton:
        """Heel landmarks `body_heights` box heights apart (image)."""
        height = float(self.box[3] - self.box[1])
        gap_px = np.linalg.norm(self.kp[L_HEEL] - self.kp[R_HEEL])
        d = (body_heights * height - gap_px) / 2 / self.scale
        sign = 1.0 if self.kp[L_HEEL, 0] > self.kp[R_HEEL, 0] else -1.0
        return self.shift_leg("left", sign * d).shift_leg("right", -sign * d)

    def toes(self, angle_deg: float) -> Skeleton:
        """Turn each foot about its heel so the feet make `angle_deg`, symmetric about forward."""
        half = math.radians(angle_deg / 2)
        for side, heel, foot in (("left", L_HEEL, L_FOOT), ("right", R_HEEL, R_FOOT)):
            v = self.world[foot] - self.world[heel]
            flat = float(np.hypot(v[0], v[2]))
            x = flat * math.sin(half) * (1 if side == "left" else -1)
            self.put(foot, self.world[heel] + np.array([x, v[1], -flat * math.cos(half)]), heel)
        return self

    def bend_knee(self, side: str, out_m: float = 0.07) -> Skeleton:
        """Push one knee sideways out of the hip-ankle line (a bent, not a straight, leg in the image)."""
        _, knee, *_ = _LEG[side]
        sign = 1.0 if side == "left" else -1.0
        self.world[knee, 0] += sign * out_m
        self.kp[knee, 0] += sign * out_m * self.scale
        return self

    def turn(self, yaw_deg: float) -> Skeleton:
        """Turn the whole body about the vertical through the hips, positive to the person's left
        (as Features.body_yaw_deg); the image is re-projected from the turned world landmarks."""
        a = math.radians(yaw_deg)
        rot = np.array([[math.cos(a), 0.0, -math.sin(a)], [0.0, 1.0, 0.0], [math.sin(a), 0.0, math.cos(a)]])
        centre_w = (self.world[L_HIP] + self.world[R_HIP]) / 2
        centre_px = (self.kp[L_HIP] + self.kp[R_HIP]) / 2
        self.world = (self.world - centre_w) @ rot.T + centre_w
        self.kp = centre_px + self.scale * (self.world - centre_w)[:, :2]
        return self

    def hide(self, *idx: int) -> Skeleton:
        for i in idx:
            self.vis[i] = 0.05
        return self

    def person(self, track_id: int | None = None) -> PersonObservation:
        """The moved skeleton as the pipeline would observe it (features recomputed)."""
        features, evidence = compute_features(self.kp, self.world, self.vis, self.box, [], [])
        return PersonObservation(
            self.track_id if track_id is None else track_id,
            self.box.copy(),
            0.9,
            self.kp.copy(),
            self.world.copy(),
            self.vis.copy(),
            features,
            [],
            evidence,
        )


def sicong() -> Skeleton:
    """C_sicong_op_pic_1.jpg: frontal, full body, hands clasped behind, feet close."""
    return Skeleton(load_skeleton("sicong_pic1_hands_behind"))


def fixed_duty(s: Skeleton) -> Skeleton:
    """D11 7.1.2 done right: heels together, toes 60 deg apart, legs straight, arms down."""
    return s.arms_down().heels_apart(0.03).toes(60.0)


def frames(people: Sequence[PersonObservation], t0: float = 0.0) -> list[FrameObservation]:
    """One frame per person at 10 fps (one person per frame)."""
    return [FrameObservation("test", t0 + k * DT, k, 1080, 2356, [p]) for k, p in enumerate(people)]


def run(detector, observations: Sequence[FrameObservation]) -> list[GestureEvent]:
    for obs in observations:
        detector.update(obs)
    detector.finish()
    return detector.ended()


# -- stances: d11.stance.01 ceremonial post ---------------------------------------------------


def test_ceremonial_stance_on_the_real_hands_behind_skeleton_names_the_feet():
    """The real photo: hands behind (kept), feet together (broken: he should stand shoulder width)."""
    check = guard_stance_ceremonial(load_skeleton("sicong_pic1_hands_behind"), NO_HISTORY, {})
    assert check.state is True
    assert check.details["wrong_parts"] == ["feet"]
    assert check.details["parts"] == {"hands": False, "feet": True}
    assert "feet" in check.message and "too close" in check.message
    assert check.details["feet_apart_sw"] < 0.7


def test_ceremonial_stance_from_moved_real_skeleton_feet_shoulder_width_is_kept():
    s = sicong().feet_apart(1.0)
    assert s.ankle_gap_sw() == pytest.approx(1.0, abs=0.01)
    check = guard_stance_ceremonial(s.person(), NO_HISTORY, {})
    assert check.state is False, check.message
    assert check.details["parts"] == {"hands": False, "feet": False}


def test_ceremonial_stance_from_moved_real_skeleton_feet_too_wide():
    check = guard_stance_ceremonial(sicong().feet_apart(1.8).person(), NO_HISTORY, {})
    assert check.state is True
    assert check.details["wrong_parts"] == ["feet"]
    assert "too wide" in check.message


def test_ceremonial_stance_from_moved_real_skeleton_arms_down_names_the_hands():
    person = sicong().feet_apart(1.0).arms_down().person()
    assert person.features.hands.value == "at_sides"
    check = guard_stance_ceremonial(person, NO_HISTORY, {})
    assert check.state is True
    assert check.details["wrong_parts"] == ["hands"]
    assert check.message.startswith("hands: at sides, expected clasped behind")


def test_ceremonial_stance_with_hidden_ankles_is_unknown_for_the_feet():
    """Ankles out of view: the feet are unknown, so the stance cannot be cleared - but a wrong
    pair of hands still fires."""
    hidden = sicong().hide(L_ANKLE, R_ANKLE)
    check = guard_stance_ceremonial(hidden.person(), NO_HISTORY, {})
    assert check.state is None
    assert check.details["parts"] == {"hands": False, "feet": None}
    wrong_hands = guard_stance_ceremonial(hidden.arms_down().person(), NO_HISTORY, {})
    assert wrong_hands.state is True
    assert wrong_hands.details["parts"] == {"hands": True, "feet": None}


def test_ceremonial_stance_does_not_apply_to_a_seated_person():
    person = sicong().person()
    person.features.posture = Label("sitting", 0.8)
    assert guard_stance_ceremonial(person, NO_HISTORY, {}).state is None


# -- stances: d11.stance.02 fixed duty --------------------------------------------------------


def test_fixed_duty_stance_from_moved_real_skeleton_done_right_stays_quiet():
    person = fixed_duty(sicong()).person()
    f = person.features
    assert f.hands.value == "at_sides"
    assert f.heel_gap.value == pytest.approx(0.03, abs=0.005)
    assert f.toe_angle_deg.value == pytest.approx(60.0, abs=2.0)
    check = guard_stance_fixed(person, NO_HISTORY, {})
    assert check.state is False, check.message
    assert check.details["parts"] == {"heels": False, "toes": False, "legs": False, "arms": False}


def test_the_real_hands_behind_skeleton_breaks_fixed_duty_on_arms_and_toes():
    """As photographed (hands behind, feet parallel 34 deg) he is not at fixed-duty attention."""
    check = guard_stance_fixed(load_skeleton("sicong_pic1_hands_behind"), NO_HISTORY, {})
    assert check.state is True
    assert set(check.details["wrong_parts"]) == {"arms", "toes", "heels"}
    assert "arms: hands clasped behind" in check.message


@pytest.mark.parametrize(
    ("name", "move", "part", "words"),
    [
        ("toes_parallel", lambda s: s.toes(15.0), "toes", "too narrow"),
        ("toes_splayed", lambda s: s.toes(110.0), "toes", "too wide"),
        ("heels_apart", lambda s: s.heels_apart(0.12), "heels", "not together"),
        ("knee_bent", lambda s: s.bend_knee("left"), "legs", "left knee bent"),
        (
            "elbow_bent",
            lambda s: s.arm("right", (0.1, -1.0, 0.0), (0.5, -0.87, 0.0)),
            "arms",
            "right elbow bent",
        ),
        ("hands_behind", lambda s: Skeleton(load_skeleton("sicong_pic1_hands_behind")), "arms", "behind"),
    ],
)
def test_fixed_duty_stance_from_moved_real_skeleton_names_the_wrong_part(name, move, part, words):
    s = move(fixed_duty(sicong()))
    if name == "hands_behind":
        s.heels_apart(0.03).toes(60.0)
    check = guard_stance_fixed(s.person(), NO_HISTORY, {})
    assert check.state is True, name
    assert check.details["wrong_parts"] == [part], check.message
    assert check.message.startswith(f"{part}:") and words in check.message


def test_fixed_duty_stance_on_the_real_casual_skeleton():
    """CD_coco_000241 (three-quarter view, standing at ease): legs straight, but the feet are
    parallel and a little apart and the hanging left arm is bent at the elbow."""
    check = guard_stance_fixed(load_skeleton("coco241_arms_at_sides"), NO_HISTORY, {})
    assert check.state is True
    assert set(check.details["wrong_parts"]) == {"toes", "heels", "arms"}
    assert check.details["parts"]["legs"] is False
    assert "arms: left elbow bent" in check.message


# -- stances: d11.stance.03 female guard ------------------------------------------------------


def clasped_front(s: Skeleton) -> Skeleton:
    """Hands crossed in front of the abdomen (双手交叉于腹前): forearms in, fingertips meeting."""
    for side in ("left", "right"):
        s.arm(side, (0.15, -0.95, 0.25), (-0.85, 0.05, 0.55), hand=(-0.9, -0.1, 0.3))
    return s


def test_female_stance_from_moved_real_skeleton_depends_on_the_duty():
    front = clasped_front(sicong()).person()
    behind = sicong().person()
    down = sicong().arms_down().person()
    assert front.features.hands.value == "clasped_front"
    # Ceremonial post (7.2.1): only behind the back.
    assert guard_stance_female(behind, NO_HISTORY, {}).state is False
    ceremonial = guard_stance_female(front, NO_HISTORY, {})
    assert ceremonial.state is True and ceremonial.details["wrong_parts"] == ["hands"]
    assert "clasped front" in ceremonial.message
    assert guard_stance_female_ceremonial(front, NO_HISTORY, {}).state is True
    # Reception duty (7.2.2): in front is allowed too, hanging arms are not.
    assert guard_stance_female(front, NO_HISTORY, {"reception_duty": 1.0}).state is False
    assert guard_stance_female_reception(front, NO_HISTORY, {}).state is False
    assert guard_stance_female_reception(behind, NO_HISTORY, {}).state is False
    reception = guard_stance_female_reception(down, NO_HISTORY, {})
    assert reception.state is True and reception.details["duty"] == "reception"


def test_guard_rules_registry_mirrors_the_checks_registry():
    assert set(GUARD_RULES) == {"guard_stance_ceremonial", "guard_stance_fixed", "guard_stance_female"}
    assert not set(GUARD_RULES) & set(RULES)  # no name shadows a person-level rule
    assert set(GUARD_RULES) <= set(engine_module.ALL_RULES)  # and the engine runs them
    for specs in GUARD_RULES.values():
        assert specs and all(callable(spec.check) for spec in specs)


def test_guard_rules_wired_into_the_engine_from_moved_real_skeletons():
    """Through the engine: a fixed-duty guard whose toes are parallel for 12 s gets one
    d11.stance.02 alert naming the toes."""
    wrong = fixed_duty(sicong()).toes(10.0).person(track_id=1)
    right = fixed_duty(sicong()).person(track_id=1)
    engine = RuleEngine("gate", role="guard_fixed", clauses=["d11.stance.02"])
    assert engine.gates == ["d11.stance.02"]
    for k in range(150):
        person = wrong if k < 120 else right
        engine.update(FrameObservation("gate", k * DT, k, 1080, 2356, [person]))
    engine.finish()
    [violation] = engine.violations
    assert violation.clause == "d11.stance.02"
    assert violation.start_s == pytest.approx(0.0)
    assert violation.end_s == pytest.approx(11.9, abs=0.05)
    assert violation.message.startswith("toes:")
    assert violation.details["wrong_parts"] == ["toes"]


# -- the salute (d11.salute.01) ---------------------------------------------------------------


def salute(s: Skeleton, upper=(0.8, 0.0, 0.6), wrist_bend_deg: float = 0.0, brow_drop_m: float = 0.0):
    """Right-hand salute on a real skeleton: upper arm along `upper`, fingertip at the brow."""
    return s.hand_to("right", s.brow() + np.array([0.0, brow_drop_m, 0.0]), upper, wrist_bend_deg)


@pytest.mark.parametrize(("name", "min_score"), [("salute_closeup", 70.0), ("salute_wide", 90.0)])
def test_salute_pose_on_real_salute_frames(name: str, min_score: float):
    pose = salute_pose(load_skeleton(name))
    assert pose.state is True, pose.reason
    assert pose.score is not None and pose.score >= min_score
    assert set(pose.parts) == {"brow", "upper_arm", "wrist", "in_line"}


def test_hand_on_the_head_with_the_elbow_down_is_not_a_salute_real_frame():
    pose = salute_pose(load_skeleton("head_scratch"))
    assert pose.state is False
    assert "elbow hanging" in pose.reason


def test_salute_from_moved_real_skeleton_is_held_then_lowered_with_good_form():
    rest = sicong().person()
    good = salute(sicong()).person()
    pose = salute_pose(good)
    assert pose.state is True and pose.score >= 90, (pose.parts, pose.measures)
    events = run(SaluteDetector(), frames([rest] * 5 + [good] * 10 + [rest] * 5))
    [event] = events
    assert event.label == "salute" and event.clause == "d11.salute.01"
    assert event.start_s == pytest.approx(0.5) and event.end_s == pytest.approx(1.4)
    assert event.lowered is True
    assert event.frames == 10
    assert event.score >= 90
    assert "form" in event.message


def test_salute_from_moved_real_skeleton_with_poor_form_scores_lower_and_says_why():
    """Upper arm dropped 35 deg and the wrist bent 40 deg: still a salute, but a poor one."""
    poor = salute(sicong(), upper=(0.6, -0.57, 0.55), wrist_bend_deg=40.0).person()
    pose = salute_pose(poor)
    assert pose.state is True, pose.reason
    assert pose.parts["upper_arm"] < 50 and pose.parts["wrist"] < 50
    [event] = run(SaluteDetector(), frames([sicong().person()] * 3 + [poor] * 8 + [sicong().person()] * 3))
    good = salute_pose(salute(sicong()).person())
    assert event.score < good.score - 25
    assert event.parts["upper_arm"] < 50


def test_hand_at_the_ear_with_the_elbow_hanging_from_moved_real_skeleton_is_no_salute():
    """A phone call pose: fingertip beside the ear, upper arm hanging 60 deg below horizontal."""
    s = sicong()
    phone = s.hand_to("right", (s.world[R_EAR] + np.array([0.0, 0.04, 0.0])), (0.3, -0.87, 0.4)).person()
    assert salute_pose(phone).state is False
    assert run(SaluteDetector(), frames([phone] * 10)) == []


def test_salute_needs_two_frames_and_survives_a_short_dropout_moved_real_skeleton():
    rest, good = sicong().person(), salute(sicong()).person()
    assert run(SaluteDetector(), frames([rest, rest, good, rest, rest, rest])) == []  # one frame: a scratch
    hidden = salute(sicong()).hide(R_SHOULDER).person()  # unknown: neither continues nor ends it
    seq = [rest] * 2 + [good] * 4 + [rest] + [hidden] * 2 + [good] * 4 + [rest] * 4
    [event] = run(SaluteDetector(), frames(seq))
    assert event.start_s == pytest.approx(0.2) and event.end_s == pytest.approx(1.2)


def test_salute_detector_keeps_tracks_apart_moved_real_skeleton():
    rest, good = sicong(), salute(sicong())
    observations = []
    for k in range(20):
        a = (good if 2 <= k < 8 else rest).person(track_id=1)
        b = (good if 10 <= k < 16 else rest).person(track_id=2)
        observations.append(FrameObservation("test", k * DT, k, 1080, 2356, [a, b]))
    events = run(SaluteDetector(), observations)
    assert sorted((e.track_id, round(e.start_s, 1), round(e.end_s, 1)) for e in events) == [
        (1, 0.2, 0.7),
        (2, 1.0, 1.5),
    ]


SALUTE_LABELS = [(3.2, 3.6), (3.8, 4.1), (4.4, 4.6), (4.7, 7.8)]  # labels.yaml, +-0.5 s


def overlapped(events: Sequence[GestureEvent], start: float, end: float, slack: float = 0.5) -> bool:
    return any(e.start_s <= end + slack and e.end_s >= start - slack for e in events)


def salutes_in(observations: Sequence[FrameObservation]) -> list[GestureEvent]:
    return run(SaluteDetector(), observations)


def check_salute_clip(events: Sequence[GestureEvent], at_least: int = 4) -> None:
    found = [interval for interval in SALUTE_LABELS if overlapped(events, *interval, slack=0.1)]
    assert len(found) >= at_least, [e.message for e in events]
    assert not [e for e in events if e.start_s < 2.2]
    assert all(e.score is not None and 0 <= e.score <= 100 for e in events)


def test_salutes_in_the_recorded_kinetics_clip():
    """The pipeline's recorded observations of 3_kinetics_saluting_three_men.mp4 (10 fps, 0-8 s)."""
    check_salute_clip(salutes_in(read_jsonl(str(FIXTURES / "guard_kinetics_saluting.observations.jsonl"))))


@pytest.mark.xfail(
    strict=True,
    reason="labels.yaml misses a real salute: the man in glasses salutes at 2.3-2.6 s (close-up after "
    "the first cut), which the detector finds; the label file starts at 3.2 s",
)
def test_no_salute_in_the_first_3_s_of_the_recorded_kinetics_clip():
    events = salutes_in(read_jsonl(str(FIXTURES / "guard_kinetics_saluting.observations.jsonl")))
    assert not [e for e in events if e.start_s < 3.0]


@lru_cache(maxsize=1)
def kinetics_observations() -> tuple[FrameObservation, ...]:
    pipeline = make_pipeline(fps=FPS)
    out = []
    with open_source(str(media_path("3_kinetics_saluting_three_men.mp4")), fps=FPS) as source:
        for frame in source:
            if frame.t > 8.0 + 1e-6:
                break
            out.append(pipeline.process(frame))
    return tuple(out)


@pytest.mark.media
@pytest.mark.model
def test_salutes_in_the_kinetics_clip_real_media():
    """Live, three of the four labelled salutes at least: BlazePose's landmarks differ by a few
    % of body height between CPUs (XNNPACK's kernels), and the first, shortest salute (0.4 s)
    is found on some machines and not on others. The recording above pins all four."""
    check_salute_clip(salutes_in(kinetics_observations()), at_least=3)


# -- traffic signals (d11.traffic.01) ---------------------------------------------------------


@pytest.mark.parametrize("name", ["stop_hivis_man", "stop_police_vest_woman"])
def test_stop_signal_on_recorded_real_skeletons(name: str):
    label, conf, details = traffic_gesture(load_skeleton(name))
    assert (label, details["arm"], details["variant"]) == ("stop", "left", "raised")
    assert conf >= 0.5


def at_chest(s: Skeleton, side: str) -> Skeleton:
    """The forearm across the chest at the 2nd-3rd button (衣扣2-3口之间), palm down."""
    return s.arm(side, (0.25, -0.9, 0.35), (-0.9, 0.15, 0.4))


STRAIGHT_UP, LEVEL_OUT = (0.05, 1.0, 0.1), (1.0, 0.02, 0.1)
FORWARD_LEVEL, FORWARD_BROW = (0.05, 0.05, 1.0), (0.1, 0.45, 1.0)  # brow height: about 25 deg up


def signal(arm: str, direction: Sequence[float], chest: str | None = None, turn: float = 0.0) -> Skeleton:
    """A real skeleton standing to attention with one arm held straight along `direction`,
    optionally the other forearm across the chest and the body turned `turn` degrees."""
    s = sicong().arms_down().arm(arm, direction, direction)
    if chest:
        at_chest(s, chest)
    return s.turn(turn) if turn else s


TRAFFIC_POSES = {
    "stop": lambda: signal("left", STRAIGHT_UP),  # traffic-police stop: left arm straight up
    "stop_forward": lambda: signal("right", FORWARD_LEVEL),  # D11 7.5.6.1: right arm forward, level
    "proceed": lambda: signal("right", LEVEL_OUT, chest="left"),  # 7.5.5.1: level to the side
    "pull_over": lambda: signal("left", FORWARD_BROW, chest="right"),  # 7.5.7.1
    "turn_left": lambda: signal("left", FORWARD_BROW, chest="right", turn=45.0),  # 7.5.8.1
    "turn_right": lambda: signal("right", FORWARD_BROW, chest="left", turn=-45.0),
}


@pytest.mark.parametrize(
    ("pose", "label", "arm"),
    [
        ("stop", "stop", "left"),
        ("stop_forward", "stop", "right"),
        ("proceed", "proceed", "right"),
        ("pull_over", "pull_over", "left"),
        ("turn_left", "turn_left", "left"),
        ("turn_right", "turn_right", "right"),
    ],
)
def test_traffic_signal_from_moved_real_skeleton(pose: str, label: str, arm: str):
    person = TRAFFIC_POSES[pose]().person()
    got, conf, details = traffic_gesture(person)
    assert (got, details.get("arm")) == (label, arm), details
    assert conf > 0.3
    assert classify_traffic_gesture(person) == (got, conf)


@pytest.mark.parametrize(
    "pose",
    ["hands_behind", "arms_down", "clasped_front", "salute", "phone"],
)
def test_no_traffic_signal_from_still_real_skeletons(pose: str):
    s = sicong()
    moved = {
        "hands_behind": s,
        "arms_down": sicong().arms_down(),
        "clasped_front": clasped_front(sicong()),
        "salute": salute(sicong()),
        "phone": sicong().hand_to("right", s.world[R_EAR], (0.3, -0.87, 0.4)),
    }[pose]
    label, conf = classify_traffic_gesture(moved.person())
    assert label is None


def test_traffic_signal_is_reported_once_held_half_a_second_moved_real_skeleton():
    rest, stop = sicong().arms_down().person(), TRAFFIC_POSES["stop"]().person()
    detector = TrafficGestureDetector()
    started = []
    for obs in frames([rest] * 3 + [stop] * 9 + [rest] * 6):
        started += [e for e in detector.update(obs) if e.kind == "started"]
    detector.finish()
    [event] = detector.ended()
    assert [e.label for e in started] == ["stop"]
    assert started[0].start_s == pytest.approx(0.3) and started[0].end_s is None
    assert event.start_s == pytest.approx(0.3) and event.end_s == pytest.approx(1.1)
    assert event.details["arm"] == "left" and event.details["variant"] == "raised"
    assert run(TrafficGestureDetector(), frames([rest] * 3 + [stop] * 4 + [rest] * 6)) == []  # 0.3 s


def test_pull_over_waving_is_counted_moved_real_skeleton():
    """The right hand waves in front of the chest (连续挥动三次) while the left arm holds."""
    people = []
    for k in range(14):
        s = signal("left", FORWARD_BROW)
        lean = (-0.9, 0.15, 0.4) if k % 4 < 2 else (-0.3, 0.15, 0.9)  # the forearm swings in and out
        people.append(s.arm("right", (0.25, -0.9, 0.35), lean).person())
    [event] = run(TrafficGestureDetector(), frames(people))
    assert event.label == "pull_over"
    assert event.details["swings"] >= 3


# -- traffic signals on real media --------------------------------------------------------------


@pytest.mark.media
@pytest.mark.model
@pytest.mark.parametrize(
    "name",
    ["3_traffic_police_stop_signal_hivis_man.png", "3_traffic_police_stop_signal_woman_police_vest.png"],
)
def test_stop_signal_on_the_traffic_police_photos(name: str):
    obs = observe_image(str(media_path(name)))
    subject = max(obs.persons, key=lambda p: p.height_px)
    assert classify_traffic_gesture(subject)[0] == "stop"


@pytest.mark.media
@pytest.mark.model
@pytest.mark.xfail(
    strict=True,
    reason="half-body close-up: the raised hand lies above the person box and BlazePose puts her "
    "left wrist at the hip (visibility 0.2), so no arm is raised to recognise",
)
def test_stop_signal_on_the_sunglasses_close_up_photo():
    obs = observe_image(str(media_path("3_traffic_police_stop_signal_woman_hivis_sunglasses.jpg")))
    subject = max(obs.persons, key=lambda p: p.height_px)
    assert classify_traffic_gesture(subject)[0] == "stop"


@pytest.mark.media
@pytest.mark.model
def test_stop_signal_on_the_ctpgesture_mosaic(record_property):
    """20 tiles of CTPGesture v1; by eye, tiles 1, 3 and 4 (numbered left to right as the
    pipeline does) show the stop signal with the left arm straight up."""
    obs = observe_image(str(media_path("3_ctpgesture_v1_traffic_police_gestures_mosaic.jpg")))
    labels = {p.track_id: traffic_gesture(p) for p in obs.persons}
    stops = sorted(t for t, (label, _, d) in labels.items() if label == "stop" and d["variant"] == "raised")
    counts: dict[str, int] = {}
    for label, _, _ in labels.values():
        counts[str(label)] = counts.get(str(label), 0) + 1
    record_property("persons", len(obs.persons))
    record_property("labels", counts)
    record_property("raised_stop_tracks", stops)
    assert len(stops) >= 1
    assert {1, 3, 4} <= set(stops)


@pytest.mark.media
@pytest.mark.model
@pytest.mark.parametrize("name", ["sicong_pic1_hands_behind", "stop_hivis_man", "stop_police_vest_woman"])
def test_skeleton_fixtures_match_the_photos(name: str):
    """The saved skeletons are what the pipeline sees in the photos today (re-record if not).

    Typically within 2 % of the body's height, every landmark within 5 %: BlazePose's numbers
    differ by a few % between CPUs (XNNPACK's kernels), most on a hand half hidden."""
    data = json.loads((FIXTURES / f"guard_{name}.skeleton.json").read_text())
    obs = observe_image(str(media_path(data["source"])))
    subject = max(obs.persons, key=lambda p: p.height_px)
    saved = PersonObservation.from_dict(data["person"])
    assert subject.keypoints is not None and saved.keypoints is not None
    err = np.linalg.norm(subject.keypoints - saved.keypoints, axis=1) / subject.height_px
    assert float(np.median(err)) < 0.02 and float(err.max()) < 0.05, (np.median(err), err.max())
