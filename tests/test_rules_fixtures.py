"""The temporal layer through the engine, on observations the pipeline recorded from real clips.

Fixtures (tests/fixtures/*.observations.jsonl) were written by the pipeline from
../shared/media at the time of recording, so these tests need no model and no
media: corridor_call = 2_pexels4105024_woman_corridor_phone_call.mp4 at 5 fps
(phone at the ear throughout), phone_lookdown_vid1 = B_sicong_phone_lookdown_vid1.mp4
at 10 fps (looks down at a phone about 0.7-1.7 s). Re-record with
tests/fixtures/record.py.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from rules.engine import run_rules
from vision.observation import FrameObservation, read_jsonl

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> list[FrameObservation]:
    return read_jsonl(str(FIXTURES / f"{name}.observations.jsonl"))


def calls(observations, **params) -> list:
    found = run_rules(
        observations, camera="fixture", overrides={"d1.floor.03": params}, clauses=["d1.floor.03"]
    )
    return [v for v in found if v.details.get("gate") == "d1.floor.03"]


def without_person(observations, indices) -> list[FrameObservation]:
    out = copy.deepcopy(observations)
    for i in indices:
        out[i].persons = []
    return out


def test_fixture_is_a_call_throughout():
    obs = load("corridor_call")
    assert len(obs) >= 60
    assert sum(o.persons[0].features.phone.value == "at_ear" for o in obs if o.persons) >= 0.9 * len(obs)


def test_sustain_opens_after_the_work_zone_threshold_and_start_is_the_behaviour_start():
    found = calls(load("corridor_call"), work_zone_sustain_s=10.0)
    assert len(found) == 1
    v = found[0]
    assert v.start_s == pytest.approx(0.0, abs=0.01)
    assert v.end_s == pytest.approx(load("corridor_call")[-1].t, abs=0.01)
    assert v.details["call_duration_s"] == pytest.approx(v.end_s - v.start_s, abs=0.01)


def test_shorter_than_sustain_raises_nothing():
    obs = [o for o in load("corridor_call") if o.t <= 8.0]
    assert calls(obs, work_zone_sustain_s=10.0) == []


def test_grace_bridges_a_two_frame_dropout():
    obs = without_person(load("corridor_call"), [30, 31])  # 6.0 and 6.2 s: the detector missed her
    found = calls(obs, work_zone_sustain_s=2.0)
    assert len(found) == 1 and found[0].start_s == pytest.approx(0.0, abs=0.01)


def test_a_long_gap_ends_the_call_at_its_last_frame_and_cooldown_holds_the_next():
    obs = without_person(load("corridor_call"), range(25, 40))  # 5.0-7.8 s out of view
    found = calls(obs, work_zone_sustain_s=2.0, cooldown_s=60.0)
    assert len(found) == 1
    assert found[0].end_s == pytest.approx(obs[24].t, abs=0.01)


def test_without_cooldown_the_second_call_is_a_second_alert():
    obs = without_person(load("corridor_call"), range(25, 40))
    found = calls(obs, work_zone_sustain_s=2.0, cooldown_s=0.0)
    assert len(found) == 2
    assert found[1].start_s == pytest.approx(obs[40].t, abs=0.01)


def test_end_time_is_the_last_frame_of_the_behaviour():
    obs = [o for o in load("corridor_call") if o.t <= 8.0]
    found = calls(obs, work_zone_sustain_s=2.0)
    assert len(found) == 1 and found[0].end_s == pytest.approx(obs[-1].t, abs=0.01)


def test_long_call_alert_only_past_its_threshold():
    obs = load("corridor_call")
    long_calls = [
        v
        for v in run_rules(obs, overrides={"d1.floor.03": {"max_call_s": 10.0}}, clauses=["d1.floor.03"])
        if v.details.get("gate") == "d1.floor.03/long"
    ]
    assert len(long_calls) == 1 and long_calls[0].details["call_duration_s"] > 10.0
    none = [
        v
        for v in run_rules(obs, clauses=["d1.floor.03"])  # default 120 s: a 12 s call is not long
        if v.details.get("gate") == "d1.floor.03/long"
    ]
    assert none == []


def test_phone_use_interval_in_the_lookdown_clip():
    found = run_rules(
        load("phone_lookdown_vid1"), overrides={"d1.floor.11": {"sustain_s": 0.3}}, clauses=["d1.floor.11"]
    )
    assert len(found) == 1
    v = found[0]
    assert 0.5 <= v.start_s <= 1.0 and 1.4 <= v.end_s <= 2.0
    assert v.details.get("activity") == "phone" or "phone" in v.message
