"""Rules on real media from ../shared/media (labels.yaml): each fires where the clause is broken
and stays quiet where it is kept. A photo is a one-frame observation, so its rule gets sustain 0."""

from __future__ import annotations

from functools import lru_cache

import pytest
from conftest import make_pipeline, media_path, observe_image

from rules.engine import run_rules
from vision.sources import open_source

pytestmark = [pytest.mark.media, pytest.mark.model]


def photo_violations(name: str, clause: str, role: str = "front_desk") -> list:
    obs = observe_image(str(media_path(name)))
    subject = max(obs.persons, key=lambda p: p.height_px)
    obs.persons = [subject]  # the labelled person
    return run_rules([obs], role=role, overrides={clause: {"sustain_s": 0}}, clauses=[clause])


@pytest.mark.parametrize(
    "name",
    [
        "1_ootd_woman_one_hand_on_hip.jpg",
        "1_pidm_woman_hand_on_hip_purple_dress.jpg",
        "1_pidm_woman_hand_on_hip_yellow_bg.jpg",
        "1_stock_man_arms_crossed_street_watermarked.jpg",
        "1_ootd_woman_hand_in_trouser_pocket_a.jpg",
        "1_pidm_woman_both_hands_in_dress_pockets.jpg",
    ],
)
def test_forbidden_hands_fire(name: str):
    assert len(photo_violations(name, "d5.stance.01")) == 1


@pytest.mark.parametrize("name", ["C_sicong_op_pic_1.jpg", "C_sicong_op_pic_14.jpg"])
def test_clasped_hands_keep_the_clause(name: str):
    assert photo_violations(name, "d5.stance.01") == []


@pytest.mark.xfail(strict=True, reason="BlazePose folds his hidden legs into a crouch: posture reads sitting")
def test_bent_forward_on_a_frame_is_leaning():
    assert len(photo_violations("1_ppe_worker_leaning_on_frame.jpg", "d5.stance.02")) == 1


@pytest.mark.xfail(
    strict=True, reason="his trunk stays upright while his back rests on the wall: no lean to measure"
)
def test_leaning_back_on_a_wall():
    assert len(photo_violations("1_econ_man_leaning_on_wall_texting.jpg", "d5.stance.02")) == 1


def test_bent_over_the_railing_is_leaning():
    """The doorbell clip: he stands with his forearms on the porch railing at 4-12 s (labels.yaml),
    trunk near horizontal on straight legs (cut off by the frame's edge): standing, leaning, one
    alert. It runs on while he sinks to the floor (13-15 s), the trunk still leaning. Its start
    differs by a frame from host to host (at most 6.0 s on AVX-512 hosts, 6.2 s on an AVX2-only EPYC,
    whose kernels give slightly different landmarks)."""
    found = clip_violations(
        "5_doorbell_cam_man_arrives_leans_on_railing_collapses.mp4", 5.0, "d5.stance.02", "sustain_s", 2.0
    )
    assert len(found) == 1, found
    assert 3.5 <= found[0].start_s <= 6.4 and found[0].end_s >= 10.0


@pytest.mark.parametrize(
    "name",
    [
        "AC_intel_face-demographics-walking-and-pause.mp4",
        "A_effiscan_person_chair_sit_stand_leave_upright.mp4",
    ],
)
def test_walking_and_sitting_down_are_not_leaning(name: str):
    assert clip_violations(name, 5.0, "d5.stance.02", "sustain_s", 2.0) == []


def test_upright_standing_is_not_leaning():
    assert photo_violations("C_sicong_op_pic_14.jpg", "d5.stance.02") == []


def test_legs_crossed_on_the_sofa_is_seated_misconduct():
    assert len(photo_violations("4_stock_man_legs_crossed_on_sofa_watermarked.jpg", "d5.sit.01")) == 1


def test_typing_at_the_console_is_not_seated_misconduct():
    assert photo_violations("3_control_room_operator_hardhat_at_desk.jpg", "d5.sit.01") == []


@lru_cache(maxsize=8)
def clip_violations(name: str, fps: float, clause: str, sustain_key: str, sustain: float) -> list:
    pipeline = make_pipeline(fps=fps)
    with open_source(str(media_path(name)), fps=fps) as source:
        observations = [pipeline.process(frame) for frame in source]
    return run_rules(observations, overrides={clause: {sustain_key: sustain}}, clauses=[clause])


def test_phone_use_in_the_lookdown_clip():
    found = clip_violations("B_sicong_phone_lookdown_vid1.mp4", 10.0, "d1.floor.11", "sustain_s", 0.3)
    assert len(found) == 1
    v = found[0]
    assert v.start_s < 1.7 and v.end_s > 0.7  # overlaps the labelled 0.7-1.7 s


def test_no_phone_use_among_walking_people():
    assert (
        clip_violations(
            "AC_intel_face-demographics-walking-and-pause.mp4", 5.0, "d1.floor.11", "sustain_s", 0.3
        )
        == []
    )


@pytest.mark.parametrize(
    ("name", "fps"),
    [
        ("2_pexels4105024_woman_corridor_phone_call.mp4", 2.0),
        ("2_worker_hivis_hardhat_phone_call_warehouse.mp4", 2.0),
    ],
)
def test_phone_call_raises_one_work_zone_alert_with_its_duration(name: str, fps: float):
    found = [
        v
        for v in clip_violations(name, fps, "d1.floor.03", "work_zone_sustain_s", 2.0)
        if v.clause == "d1.floor.03" and "long" not in str(v.details.get("gate", ""))
    ]
    assert len(found) == 1, found
    assert found[0].duration() > 5.0
    assert any("call" in k for k in found[0].details), found[0].details


def test_drinking_raises_no_phone_call():
    found = clip_violations(
        "2_ntu_woman_drinking_hand_to_mouth_hardneg.avi", 5.0, "d1.floor.03", "work_zone_sustain_s", 2.0
    )
    assert found == []


def test_an_ankle_jump_in_the_walk_and_pause_clip_is_not_running():
    """The plain pipeline (every frame posed in full) places a clerk's ankles far below his box
    for one frame at 0.4 s on some CPUs; the median of frame-to-frame steps read that as 2.97
    body heights a second, a running alert. The robust speed does not; nobody in the clip runs."""
    from vision.pipeline import Pipeline, PipelineOptions

    plain = make_pipeline()
    pipeline = Pipeline(plain.detector, plain.pose, PipelineOptions.for_mode("plain", fps=5.0))
    with open_source(str(media_path("AC_intel_face-demographics-walking-and-pause.mp4")), fps=5.0) as source:
        observations = [pipeline.process(frame) for frame in source]
    found = run_rules(observations, overrides={"d5.walk.01": {"sustain_s": 0.0}}, clauses=["d5.walk.01"])
    assert [v for v in found if "running" in v.details.get("behaviours", {})] == [], found
