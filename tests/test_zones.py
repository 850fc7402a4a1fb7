"""Post duty over time (rules/zones.py): membership, abandonment, handover, approved leave, opening
hours, lateness at shift start, staff-only intruders, guards on standby.

tests/fixtures/chair_clip.observations.jsonl is the vision pipeline's output (5 fps, tracking on)
for ../shared/media/A_effiscan_person_chair_sit_stand_leave_upright.mp4, a derived artefact of the
shared media, so these tests run without models. Regenerate it after a vision change with

    .venv/bin/python tests/test_zones.py --write-fixture

(it runs `conftest.make_pipeline(fps=5)` over the clip and writes one JSON line per frame).
The built sequences take the fixture's real person and move them (box and landmarks together,
so the foot point stays the ankles') to chosen floor points of a built camera.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, make_pipeline, media_path

from calibration.site import Approval, Camera, Shift, Site, Zone, load_site
from rules.catalogue import ParamError
from rules.engine import ViolationEvent
from rules.zones import (
    ABANDONED,
    GUARDS_OUT,
    INTRUDER,
    LATE,
    STANDBY_LEFT,
    ZoneMonitor,
    ZoneTiming,
)
from vision.observation import FrameObservation, PersonObservation, read_jsonl

CLIP = "A_effiscan_person_chair_sit_stand_leave_upright.mp4"
FIXTURE = ROOT / "tests" / "fixtures" / "chair_clip.observations.jsonl"
CHAIR_SITE = ROOT / "examples" / "chair_clip.yaml"

# The built camera: the chair clip's frame and post, plus a desk (staff only) and a standby area.
POST = [(100.0, 560.0), (380.0, 560.0), (400.0, 848.0), (80.0, 848.0)]
DESK = [(20.0, 300.0), (200.0, 300.0), (200.0, 500.0), (20.0, 500.0)]
STANDBY = [(260.0, 300.0), (460.0, 300.0), (460.0, 500.0), (260.0, 500.0)]
IN_POST = (240.0, 760.0)
IN_DESK = (110.0, 400.0)
IN_STANDBY = (360.0, 400.0)
AWAY = (240.0, 530.0)  # in view, on no zone
Where = Callable[[float], Mapping[int, tuple[float, float]]]


# -- the fixture and built sequences ---------------------------------------------------------------


@lru_cache(maxsize=1)
def recorded() -> tuple[FrameObservation, ...]:
    return tuple(read_jsonl(str(FIXTURE)))


def fresh_recording() -> list[FrameObservation]:
    """A copy of the fixture's frames that a test may edit."""
    return copy.deepcopy(list(recorded()))


@lru_cache(maxsize=1)
def template() -> PersonObservation:
    """The fixture's person standing on the post at 5.0 s (both ankles visible)."""
    obs = next(o for o in recorded() if abs(o.t - 5.0) < 1e-6)
    return obs.persons[0]


@lru_cache(maxsize=256)
def placed(track_id: int, foot: tuple[float, float]) -> PersonObservation:
    """The template person moved so that their feet stand at `foot` (image pixels)."""
    p = copy.deepcopy(template())
    d = np.subtract(foot, p.foot_point)
    p.box = p.box + np.tile(d, 2)
    if p.keypoints is not None:
        p.keypoints = p.keypoints + d
    p.track_id = track_id
    return p


def scene(duration_s: float, where: Where, fps: float = 2.0) -> list[FrameObservation]:
    """Frames at `fps` over [0, duration_s]; `where(t)` gives each person in view: track -> feet."""
    frames = []
    for i in range(int(round(duration_s * fps)) + 1):
        t = i / fps
        persons = [placed(track, (float(x), float(y))) for track, (x, y) in where(t).items()]
        frames.append(FrameObservation("built", t, i, 480, 848, persons))
    return frames


def built_camera(**kwargs: Any) -> Camera:
    zones = [
        Zone(name="desk-post", kind="post", role="front_desk", polygon=POST),
        Zone(name="behind-desk", kind="staff_only", role="front_desk", polygon=DESK),
        Zone(name="standby", kind="standby", role="guard_standby", polygon=STANDBY),
    ]
    return Camera(id="built", source="built.mp4", frame_size=(480, 848), zones=zones, **kwargs)


def run(
    frames: Iterable[FrameObservation],
    camera: Camera | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    is_staff: Callable[[PersonObservation, Zone], bool | None] | None = None,
    approvals: Sequence[Approval] = (),
    approve: Sequence[tuple[str, float, float, str]] = (),
    timing: ZoneTiming | None = None,
    site: Site | None = None,
) -> tuple[ZoneMonitor, list[ViolationEvent]]:
    camera = camera or built_camera()
    site = site or Site(cameras=[camera], approvals=list(approvals))
    monitor = ZoneMonitor(camera, site, overrides, is_staff, timing)
    for leave in approve:
        monitor.approve(*leave)
    events: list[ViolationEvent] = []
    for obs in frames:
        events.extend(monitor.update(obs))
    events.extend(monitor.finish())
    return monitor, events


def opened(events: list[ViolationEvent], clause: str) -> list[ViolationEvent]:
    return [e for e in events if e.kind == "opened" and e.violation.clause == clause]


def closed(events: list[ViolationEvent], clause: str) -> list[ViolationEvent]:
    return [e for e in events if e.kind == "closed" and e.violation.clause == clause]


EMPTY_5 = {ABANDONED: {"empty_s": 5.0}}


# -- the chair clip: real observations --------------------------------------------------------------


def chair_monitor(frames: Iterable[FrameObservation]) -> tuple[ZoneMonitor, list[ViolationEvent]]:
    site = load_site(CHAIR_SITE)  # sets d1.reception.02 empty_s 0.5
    return run(frames, camera=site.camera("chair"), site=site)


def check_chair(monitor: ZoneMonitor, events: list[ViolationEvent]) -> None:
    """He steps on the post at ~1.8 s, sits and stands there 3-9 s, walks out at ~9.9 s."""
    stays = monitor.presence("desk-post")
    assert len(stays) == 1, stays
    assert stays[0][0] == pytest.approx(1.8, abs=0.6)
    assert stays[0][1] == pytest.approx(9.9, abs=0.6)
    alerts = opened(events, ABANDONED)
    assert len(alerts) == 1, [e.violation.message for e in alerts]
    alert = alerts[0]
    assert alert.violation.start_s == pytest.approx(9.9, abs=0.6)
    assert alert.t == pytest.approx(alert.violation.start_s + 0.5, abs=0.25)
    assert alert.violation.track_id is None
    assert alert.violation.details["zone"] == "desk-post"
    assert alert.violation.details["left_by"] is not None
    assert "站门客服岗位不可以随意离开" in alert.violation.message
    assert all(e.violation.start_s > 9.0 for e in events)  # nothing while he sits and stands on post
    (end,) = closed(events, ABANDONED)  # closed by the end of the clip, with the absence's length
    assert end.violation.details["absence_s"] == pytest.approx(end.violation.end_s - end.violation.start_s)


def test_fixture_is_small_and_valid():
    assert FIXTURE.stat().st_size < 300_000
    frames = recorded()
    assert len(frames) > 50 and frames[-1].t == pytest.approx(10.8, abs=0.2)
    persons = [p for o in frames for p in o.persons]
    assert persons and all(np.isfinite(p.foot_point).all() for p in persons)
    assert all(p.keypoints is None or p.keypoints.shape == (33, 2) for p in persons)


def test_chair_clip_from_the_fixture():
    check_chair(*chair_monitor(recorded()))


@pytest.mark.media
@pytest.mark.model
def test_chair_clip_through_the_pipeline():
    observations = observe_clip()
    monitor, events = chair_monitor(observations)
    check_chair(monitor, events)
    recorded_stays = chair_monitor(recorded())[0].presence("desk-post")
    live_stays = monitor.presence("desk-post")
    assert np.allclose(live_stays, recorded_stays, atol=0.4), (live_stays, recorded_stays)


def observe_clip() -> list[FrameObservation]:
    from vision.sources import open_source

    pipeline = make_pipeline(fps=5)
    with open_source(str(media_path(CLIP)), fps=5) as source:
        return [pipeline.process(frame) for frame in source]


def test_detector_misses_within_the_exit_grace_are_no_absence():
    frames = fresh_recording()
    for obs in frames:
        if 5.0 <= obs.t <= 6.0:  # five frames lost (1.2 s without him)
            obs.persons = []
    monitor, events = chair_monitor(frames)
    assert len(monitor.presence("desk-post")) == 1
    assert len(opened(events, ABANDONED)) == 1  # only the real walk-out


def test_a_longer_dropout_is_an_absence():
    frames = fresh_recording()
    for obs in frames:
        if 5.0 <= obs.t <= 7.6:  # 2.8 s unseen: longer than the 2 s exit grace
            obs.persons = []
    monitor, events = chair_monitor(frames)
    assert len(monitor.presence("desk-post")) == 2
    first = monitor.violations[0]
    assert first.clause == ABANDONED
    assert first.start_s == pytest.approx(5.0)  # dated from the first frame without him
    assert opened(events, ABANDONED)[0].t == pytest.approx(6.8)  # known once the 2 s exit grace ran out
    assert first.end_s == pytest.approx(7.8)  # back on post


def test_crossing_a_corner_of_the_post_is_no_stay():
    monitor, events = run(
        scene(20, lambda t: {1: IN_POST if 5 <= t < 5.3 else AWAY}, fps=5), overrides=EMPTY_5
    )
    assert monitor.presence("desk-post") == []
    assert events == []


# -- d1.reception.02 / d1.reception.04: abandonment and handover ----------------------------------


def relief_after(gap: float, in_sight: bool = True) -> Where:
    """Track 1 on post until 10 s, walks off (seen away) and out of view at 11 s; track 2 waits away
    (in sight, or out of view) and steps on the post `gap` s after 10."""

    def where(t: float) -> dict[int, tuple[float, float]]:
        out = {}
        if t < 10:
            out[1] = IN_POST
        elif t < 11:
            out[1] = AWAY
        if t >= 10 + gap:
            out[2] = IN_POST
        elif in_sight:
            out[2] = (300.0, 530.0)
        return out

    return where


def test_handover_within_the_grace_is_no_absence():
    monitor, events = run(scene(60, relief_after(8.0)), overrides=EMPTY_5)
    assert opened(events, ABANDONED) == []
    (handover,) = monitor.handovers
    assert (handover.from_track, handover.to_track) == (1, 2)
    assert handover.gap_s == pytest.approx(8.0, abs=0.01)
    assert monitor.absences == []


def test_a_relief_later_than_the_grace_leaves_an_absence():
    monitor, events = run(scene(60, relief_after(30.0)), overrides=EMPTY_5)
    (alert,) = opened(events, ABANDONED)
    # A possible relief was in sight, so the post waited the 20 s handover grace before alerting.
    assert alert.violation.start_s == pytest.approx(10.0)
    assert alert.t == pytest.approx(30.0)
    (end,) = closed(events, ABANDONED)
    assert end.violation.end_s == pytest.approx(40.0)
    assert end.violation.details["absence_s"] == pytest.approx(30.0)
    assert end.violation.details["left_by"] == 1
    assert monitor.handovers == []
    assert [a.absence_s for a in monitor.absences] == [pytest.approx(30.0)]


def test_with_nobody_in_sight_the_post_alerts_after_empty_s():
    _, events = run(scene(60, relief_after(8.0, in_sight=False)), overrides=EMPTY_5)
    (alert,) = opened(events, ABANDONED)
    assert alert.t == pytest.approx(15.0)


def test_overlapping_relief_is_a_handover():
    def where(t: float) -> dict[int, tuple[float, float]]:
        return {1: IN_POST if t < 10 else AWAY} | ({2: IN_POST} if t >= 6 else {})

    monitor, events = run(scene(40, where), overrides=EMPTY_5)
    assert events == []
    (handover,) = monitor.handovers
    assert (handover.from_track, handover.to_track, handover.gap_s) == (1, 2, 0.0)
    assert monitor.presence("desk-post") == [(0.0, 40.0)]  # staffed throughout


def test_abandonment_waits_empty_s_and_respects_the_default():
    def where(t: float) -> dict[int, tuple[float, float]]:
        return {1: IN_POST} if t < 10 or t >= 50 else {}

    _, events = run(scene(80, where))  # default empty_s 60: 40 s away is no alert
    assert events == []
    _, events = run(scene(80, where), overrides={ABANDONED: {"empty_s": 30.0}})
    (alert,) = opened(events, ABANDONED)
    assert (alert.violation.start_s, alert.t) == (pytest.approx(10.0), pytest.approx(40.0))


def test_an_empty_post_nobody_has_staffed_is_not_abandoned():
    _, events = run(scene(200, lambda t: {1: AWAY}), overrides=EMPTY_5)
    assert events == []


# -- d1.floor.14: approved leave ----------------------------------------------------------------------


def away_10_to_60(t: float) -> dict[int, tuple[float, float]]:
    return {1: IN_POST} if t < 10 or t >= 60 else {}


START = datetime(2024, 5, 1, 10, 0, 0)


def test_unapproved_leave_alerts():
    monitor, events = run(scene(80, away_10_to_60), camera=built_camera(start_time=START), overrides=EMPTY_5)
    (alert,) = opened(events, ABANDONED)
    assert alert.violation.details["also_breaks"] == ["d1.floor.14"]
    assert monitor.approved_absences == []


def test_approved_leave_from_the_site_raises_nothing_and_is_reported():
    camera = built_camera(start_time=START)
    approval = Approval(
        camera="built",
        post="desk-post",
        start=datetime(2024, 5, 1, 10, 0, 5),
        end=datetime(2024, 5, 1, 10, 2, 0),
        reason="bank deposit",
    )
    monitor, events = run(scene(80, away_10_to_60), camera=camera, overrides=EMPTY_5, approvals=[approval])
    assert events == []
    (absence,) = monitor.approved_absences
    assert absence.reasons == ["bank deposit"]
    assert (absence.start_s, absence.end_s) == (pytest.approx(10.0), pytest.approx(60.0))


def test_approved_leave_at_run_time_in_stream_seconds():
    monitor, events = run(
        scene(80, away_10_to_60), overrides=EMPTY_5, approve=[("desk-post", 8, 70, "lunch")]
    )
    assert events == []
    assert [a.reasons for a in monitor.approved_absences] == [["lunch"]]


def test_a_leave_that_overruns_its_approval_alerts():
    monitor, events = run(
        scene(80, away_10_to_60), overrides=EMPTY_5, approve=[("desk-post", 8, 30, "toilet")]
    )
    (alert,) = opened(events, ABANDONED)
    assert alert.violation.start_s == pytest.approx(30.0)  # from the end of the approval
    assert alert.t == pytest.approx(35.0)
    assert alert.violation.details["approved_leave"] == ["toilet"]
    assert alert.violation.details["absence_start_s"] == pytest.approx(10.0)
    assert closed(events, ABANDONED)[0].violation.end_s == pytest.approx(60.0)


def test_site_approvals_need_a_start_time():
    approval = Approval(
        camera="built", post="desk-post", start=datetime(2024, 5, 1, 10), end=datetime(2024, 5, 1, 11)
    )
    monitor, events = run(scene(80, away_10_to_60), overrides=EMPTY_5, approvals=[approval])
    assert len(opened(events, ABANDONED)) == 1
    assert any("start_time" in note for note in monitor.notes)


# -- opening hours ------------------------------------------------------------------------------------


def hours_camera() -> Camera:
    # The stream starts at 21:58; the site closes at 22:00 (stream 120 s).
    return built_camera(start_time=datetime(2024, 5, 1, 21, 58), opening_hours=[(time(9), time(22))])


def test_an_absence_in_opening_hours_alerts_until_closing():
    _, events = run(
        scene(300, lambda t: {1: IN_POST} if t < 30 else {}), camera=hours_camera(), overrides=EMPTY_5
    )
    (alert,) = opened(events, ABANDONED)
    assert alert.t == pytest.approx(35.0)
    assert closed(events, ABANDONED)[0].violation.end_s == pytest.approx(120.0)


def test_closed_hours_suppress_abandonment():
    _, events = run(
        scene(300, lambda t: {1: IN_POST} if t < 130 else {}), camera=hours_camera(), overrides=EMPTY_5
    )
    assert events == []


# -- d1.floor.02: late at shift start --------------------------------------------------------------


def shift_camera() -> Camera:
    return built_camera(
        start_time=datetime(2024, 5, 1, 10, 29, 50),  # the early shift starts at stream 10 s
        shifts=[Shift(name="early", start=time(10, 30), post="desk-post")],
    )


def test_post_staffed_late_at_shift_start():
    monitor, events = run(scene(150, lambda t: {1: IN_POST} if t >= 100 else {}), camera=shift_camera())
    (late,) = opened(events, LATE)
    assert late.violation.start_s == pytest.approx(10.0)
    assert late.t == pytest.approx(70.0)  # after the 60 s tolerance
    (end,) = closed(events, LATE)
    assert end.violation.end_s == pytest.approx(100.0)
    assert end.violation.details["minutes_late"] == pytest.approx(1.5)
    assert end.violation.track_id is None
    assert opened(events, ABANDONED) == []  # never staffed: late, not abandoned


def test_post_staffed_within_the_tolerance_is_on_time():
    _, events = run(scene(150, lambda t: {1: IN_POST} if t >= 40 else {}), camera=shift_camera())
    assert events == []


def test_shifts_need_a_start_time():
    camera = built_camera(shifts=[Shift(name="early", start=time(10, 30), post="desk-post")])
    monitor, events = run(scene(150, lambda t: {}), camera=camera)
    assert events == [] and any("start_time" in note for note in monitor.notes)


# -- d1.floor.08: staff-only zone ------------------------------------------------------------------


def verdict(value: bool | None) -> Callable[[PersonObservation, Zone], bool | None]:
    def is_staff(person: PersonObservation, zone: Zone) -> bool | None:
        return value if zone.kind == "staff_only" else None

    return is_staff


def desk_visitor(t: float) -> dict[int, tuple[float, float]]:
    return {5: IN_DESK if 5 <= t < 35 else AWAY}


def test_a_non_staff_person_behind_the_desk_fires():
    _, events = run(scene(60, desk_visitor), is_staff=verdict(False))
    (alert,) = opened(events, INTRUDER)
    assert alert.violation.track_id == 5
    assert alert.violation.start_s == pytest.approx(5.0)
    assert alert.t == pytest.approx(15.0)  # sustain_s 10
    assert closed(events, INTRUDER)[0].violation.end_s == pytest.approx(34.5)


def test_staff_behind_the_desk_stay_quiet():
    _, events = run(scene(60, desk_visitor), is_staff=verdict(True))
    assert events == []


def test_without_is_staff_nobody_is_an_intruder():
    _, events = run(scene(60, desk_visitor))
    assert events == []


# -- d11.standby.03 / d11.standby.08: guards on standby --------------------------------------------

STANDBY_20 = {STANDBY_LEFT: {"sustain_s": 20.0}, GUARDS_OUT: {"sustain_s": 20.0}}


def test_a_guard_away_from_standby_too_long_fires():
    def where(t: float) -> dict[int, tuple[float, float]]:
        return {7: AWAY if 10 <= t < 50 else IN_STANDBY}

    _, events = run(scene(70, where), overrides=STANDBY_20)
    (alert,) = opened(events, STANDBY_LEFT)
    assert alert.violation.track_id == 7
    assert (alert.violation.start_s, alert.t) == (pytest.approx(10.0), pytest.approx(30.0))
    assert closed(events, STANDBY_LEFT)[0].violation.end_s == pytest.approx(50.0)


def test_a_short_step_out_of_standby_is_quiet():
    _, events = run(scene(70, lambda t: {7: AWAY if 10 <= t < 25 else IN_STANDBY}), overrides=STANDBY_20)
    assert events == []


def test_a_guard_back_under_a_new_track_ends_the_leave():
    def where(t: float) -> dict[int, tuple[float, float]]:
        if t < 10:
            return {7: IN_STANDBY}
        return {8: IN_STANDBY} if t >= 50 else {}

    _, events = run(scene(70, where), overrides=STANDBY_20)
    (end,) = closed(events, STANDBY_LEFT)
    assert end.violation.track_id == 7
    assert end.violation.end_s == pytest.approx(50.0)
    assert end.violation.details["returned_as"] == 8


def guards_out(n: int, out: int) -> Where:
    """`n` guards on standby; `out` of them away from 10 s to 70 s."""
    spots = [(280.0 + 40 * i, 400.0) for i in range(n)]

    def where(t: float) -> dict[int, tuple[float, float]]:
        return {10 + i: (AWAY if i < out and 10 <= t < 70 else spots[i]) for i in range(n)}

    return where


def test_too_many_guards_out_fires():
    _, events = run(scene(90, guards_out(4, 2)), overrides=STANDBY_20)
    (alert,) = opened(events, GUARDS_OUT)
    assert alert.violation.track_id is None
    assert (alert.violation.start_s, alert.t) == (pytest.approx(10.0), pytest.approx(30.0))
    assert alert.violation.details["absent"] == 2 and alert.violation.details["roster"] == 4
    assert closed(events, GUARDS_OUT)[0].violation.end_s == pytest.approx(70.0)  # last frame short


def test_few_enough_guards_out_is_quiet():
    _, events = run(scene(90, guards_out(4, 1)), overrides=STANDBY_20)
    assert opened(events, GUARDS_OUT) == []


# -- configuration --------------------------------------------------------------------------------


def test_bad_overrides_name_the_key():
    with pytest.raises(ParamError, match="empty_sec"):
        ZoneMonitor(built_camera(), Site(cameras=[built_camera()]), {ABANDONED: {"empty_sec": 5}})


def test_zone_kinds_without_duty_are_not_monitored():
    camera = built_camera()
    camera.zones.append(Zone(name="lobby", kind="customer", polygon=DESK))
    monitor = ZoneMonitor(camera, Site(cameras=[camera]))
    with pytest.raises(KeyError, match="not monitored"):
        monitor.presence("lobby")
    with pytest.raises(KeyError, match="no zone"):
        monitor.presence("nowhere")


def write_fixture(path: Path = FIXTURE) -> None:
    """Run the pipeline over the chair clip and write its observations, one JSON line a frame."""
    observations = observe_clip()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for obs in observations:
            fh.write(obs.to_json() + "\n")
    print(f"wrote {len(observations)} frames to {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-fixture"]:
        sys.exit("usage: .venv/bin/python tests/test_zones.py --write-fixture")
    write_fixture()
