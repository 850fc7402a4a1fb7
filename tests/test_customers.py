"""Staff and customers (rules/customers.py): standing up for a customer at the desk (d1.floor.09),
chatting at the door post (d1.reception.03), customer arrivals through the door and the greeting.

Two fixtures are the vision pipeline's output for clips of ../shared/media, so these tests run
without models (derived artefacts of the shared media; `evidence` dropped, nothing here reads it):

* tests/fixtures/customers_intel_walk_pause.observations.jsonl - AC_intel_face-demographics-
  walking-and-pause.mp4 at 6 fps (480x270; three people walk toward the camera 0-2.0 s and stand
  2.0-3.4 s; their feet are below the frame, so their foot points sit on the box bottoms, y ~267);
* tests/fixtures/customers_office_arrival.observations.jsonl - 5_office_cctv_cam5_person_enters_
  takes_seat_annotated.mov at 5 fps (1600x900; a man comes in by the back-left door ~8.5 s and
  walks between the desks; the detector sees him at 8.6 s, loses him, and picks him up again as a
  new track at 9.4-10.4 s).

Regenerate them after a vision change with

    .venv/bin/python tests/test_customers.py --write-fixtures

The built sequences take real skeletons - the chair clip's boy (tests/fixtures/chair_clip.
observations.jsonl: seated 3.6-4.4 s, standing up at 4.6 s, standing 5.0-6.0 s) and the photo
skeletons of tests/fixtures/guard_*.skeleton.json - and move / scale them (box and landmarks
together, so the foot point stays the ankles') to chosen floor points of a built camera.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, make_pipeline, media_path

from calibration.site import Camera, Door, FloorScale, Site, Zone
from rules.customers import CHATTING, SEATED_WITH_CUSTOMER, ArrivalTiming, CustomerMonitor
from rules.engine import ViolationEvent
from vision.observation import FrameObservation, Measure, PersonObservation, read_jsonl

FIXTURES = ROOT / "tests" / "fixtures"
INTEL_CLIP = "AC_intel_face-demographics-walking-and-pause.mp4"
INTEL_FIXTURE = FIXTURES / "customers_intel_walk_pause.observations.jsonl"
INTEL_FPS = 6.0
OFFICE_CLIP = "5_office_cctv_cam5_person_enters_takes_seat_annotated.mov"
OFFICE_FIXTURE = FIXTURES / "customers_office_arrival.observations.jsonl"
OFFICE_FPS = 5.0
CHAIR_FIXTURE = FIXTURES / "chair_clip.observations.jsonl"

# The office camera, read off the frame at 8.5 s (1600x900): the back-left doorway is the opening
# right of the open brown door leaf, x ~600-720; its threshold on the floor is at about (660, 300)
# (the man's feet are at (672, 309) when the detector first sees him there).
OFFICE_SIZE = (1600, 900)
OFFICE_DOOR = (660.0, 300.0)
OFFICE_FRONT_RIGHT = (1500.0, 850.0)  # a point with no door: the quiet case

# The intel clip's frame (480x270): the three stand with their box bottoms at y ~267, so the
# customer zone is the band along the bottom; the built clerk's post is the top-right corner.
INTEL_SIZE = (480, 270)
CUSTOMER_BAND = [(0.0, 215.0), (480.0, 215.0), (480.0, 270.0), (0.0, 270.0)]
INTEL_POST = [(392.0, 20.0), (480.0, 20.0), (480.0, 205.0), (392.0, 205.0)]
CLERK_FEET = (440.0, 190.0)
CLERK_SCALE = 0.25  # the chair-clip boy (480x848 frame, ~470 px seated) to ~117 px
CLERK = 100


# -- fixtures and built people -------------------------------------------------------------------


@lru_cache(maxsize=4)
def recorded(path: Path) -> tuple[FrameObservation, ...]:
    return tuple(read_jsonl(str(path)))


def fresh(path: Path) -> list[FrameObservation]:
    return copy.deepcopy(list(recorded(path)))


def chair_frame(t: float) -> PersonObservation:
    """The chair-clip boy at the fixture frame nearest `t` (0.2 s grid)."""
    obs = min(recorded(CHAIR_FIXTURE), key=lambda o: abs(o.t - t))
    assert obs.persons, f"no person in the chair clip at {t}"
    return obs.persons[0]


@lru_cache(maxsize=8)
def photo(name: str) -> PersonObservation:
    data = json.loads((FIXTURES / f"guard_{name}.skeleton.json").read_text())
    return PersonObservation.from_dict(data["person"])


def placed(
    person: PersonObservation,
    track: int,
    foot: tuple[float, float],
    scale: float = 1.0,
    yaw: float | None = None,
) -> PersonObservation:
    """A copy of a real person scaled about their foot point and moved so the feet stand at `foot`."""
    p = copy.deepcopy(person)
    f0 = np.asarray(p.foot_point, dtype=float)
    target = np.asarray(foot, dtype=float)
    p.box = (p.box.reshape(2, 2) - f0) * scale + target
    p.box = p.box.reshape(4)
    if p.keypoints is not None:
        p.keypoints = (p.keypoints - f0) * scale + target
    p.track_id = track
    if yaw is not None:
        p.features.body_yaw_deg = Measure(float(yaw), 0.9)
    return p


def scene(
    duration_s: float,
    where: Callable[[float], Mapping[int, PersonObservation]],
    size: tuple[int, int],
    fps: float = 2.0,
    start_s: float = 0.0,
) -> list[FrameObservation]:
    frames = []
    for i in range(int(round((duration_s - start_s) * fps)) + 1):
        t = start_s + i / fps
        frames.append(FrameObservation("built", t, i, size[0], size[1], list(where(t).values())))
    return frames


def run(
    frames: Iterable[FrameObservation],
    camera: Camera,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    arrival: ArrivalTiming | None = None,
) -> tuple[CustomerMonitor, list[ViolationEvent]]:
    monitor = CustomerMonitor(camera, Site(cameras=[camera]), overrides, arrival=arrival)
    events: list[ViolationEvent] = []
    for obs in frames:
        events.extend(monitor.update(obs))
    events.extend(monitor.finish())
    return monitor, events


def opened(events: list[ViolationEvent], clause: str) -> list[ViolationEvent]:
    return [e for e in events if e.kind == "opened" and e.violation.clause == clause]


# -- the fixtures ------------------------------------------------------------------------------------


def test_fixtures_are_small_and_cover_the_clips():
    for path, end in ((INTEL_FIXTURE, 3.3), (OFFICE_FIXTURE, 16.6)):
        assert path.stat().st_size < 300_000
        frames = recorded(path)
        assert frames[-1].t == pytest.approx(end, abs=0.25)
    intel = recorded(INTEL_FIXTURE)
    assert (intel[0].width, intel[0].height) == INTEL_SIZE
    assert all(len(o.persons) == 3 for o in intel)
    office = recorded(OFFICE_FIXTURE)
    assert (office[0].width, office[0].height) == OFFICE_SIZE
    seen = [o.t for o in office if o.persons]
    assert seen and 8.0 <= seen[0] <= 9.0


# -- d1.floor.09: the intel clip's three customers and a built clerk --------------------------------


def intel_camera() -> Camera:
    return Camera(
        id="intel",
        source="intel.mp4",
        frame_size=INTEL_SIZE,
        zones=[
            Zone(name="in-front-of-desk", kind="customer", polygon=CUSTOMER_BAND),
            Zone(name="desk", kind="post", role="front_desk", polygon=INTEL_POST),
        ],
    )


SEATED_TIMES = (3.6, 3.8, 4.0, 4.2, 6.8, 7.0, 7.2, 7.4)  # the chair clip's frames labelled sitting


def with_clerk(clerk_at: Callable[[float], PersonObservation]) -> list[FrameObservation]:
    """The intel clip's frames with the built clerk on the desk post."""
    frames = fresh(INTEL_FIXTURE)
    for obs in frames:
        obs.persons.append(placed(clerk_at(obs.t), CLERK, CLERK_FEET, CLERK_SCALE))
    return frames


def seated_clerk(t: float) -> PersonObservation:
    return chair_frame(SEATED_TIMES[int(round(t * INTEL_FPS)) % len(SEATED_TIMES)])


def standing_up_clerk(t: float) -> PersonObservation:
    """Seated at the start, stands up at ~1.0 s (the chair clip from 3.6 s: up at 4.6 s)."""
    return chair_frame(3.6 + t)


SHORT = {SEATED_WITH_CUSTOMER: {"stand_within_s": 1.5}}


def test_the_built_clerk_is_seated_then_stands():
    assert seated_clerk(0.0).features.posture.value == "sitting"
    assert [standing_up_clerk(t).features.posture.value for t in (0.0, 0.5, 1.0, 1.5, 2.0)] == [
        "sitting",
        "sitting",
        "standing",
        "standing",
        "standing",
    ]


def test_a_clerk_who_stays_seated_with_customers_at_the_desk_is_alerted():
    monitor, events = run(with_clerk(seated_clerk), intel_camera(), SHORT)
    (alert,) = opened(events, SEATED_WITH_CUSTOMER)
    v = alert.violation
    assert v.track_id == CLERK
    assert v.start_s == pytest.approx(0.0)  # seated since before the customers came: from their arrival
    assert alert.t == pytest.approx(1.5, abs=1 / INTEL_FPS + 1e-6)
    assert v.details["customer_tracks"] == [1, 2, 3]
    assert v.details["post"] == "desk" and v.details["customer_zones"] == ["in-front-of-desk"]
    assert "起身站立" in v.message
    (closed,) = [e for e in events if e.kind == "closed"]
    assert closed.violation.end_s == pytest.approx(recorded(INTEL_FIXTURE)[-1].t)  # seated to the end
    (visit,) = monitor.visits
    assert visit.start_s == pytest.approx(0.0) and sorted(visit.customers) == [1, 2, 3]


def test_a_clerk_who_stands_up_within_stand_within_s_is_not_alerted():
    _, events = run(with_clerk(standing_up_clerk), intel_camera(), SHORT)
    assert events == []


def test_the_default_5_s_is_longer_than_the_clip():
    _, events = run(with_clerk(seated_clerk), intel_camera())
    assert events == []


def test_no_customer_no_alert():
    frames = with_clerk(seated_clerk)
    for obs in frames:
        obs.persons = [p for p in obs.persons if p.track_id == CLERK]
    _, events = run(frames, intel_camera(), SHORT)
    assert events == []


def test_sitting_down_again_while_the_customer_is_there_fires_after_stand_within_s():
    """Built: a customer stands at the desk 0-30 s; the clerk stands up at 2 s, sits again at 10 s."""
    camera = intel_camera()
    customer = placed(chair_frame(5.0), 7, (200.0, 260.0), 0.3)

    def where(t: float) -> dict[int, PersonObservation]:
        clerk = chair_frame(5.0) if 2 <= t < 10 else chair_frame(4.0)
        return (
            {7: customer, CLERK: placed(clerk, CLERK, CLERK_FEET, CLERK_SCALE)}
            if t < 30
            else {CLERK: placed(chair_frame(4.0), CLERK, CLERK_FEET, CLERK_SCALE)}
        )

    _, events = run(scene(40, where, INTEL_SIZE), camera)
    (alert,) = opened(events, SEATED_WITH_CUSTOMER)
    assert alert.violation.start_s == pytest.approx(10.0)  # the re-sit, not the arrival
    assert alert.t == pytest.approx(15.0)
    (closed,) = [e for e in events if e.kind == "closed"]
    assert closed.violation.end_s == pytest.approx(30.0)  # seated frames until the customer left


def test_a_customer_zone_is_served_by_the_touching_post_only():
    far = [(0.0, 0.0), (60.0, 0.0), (60.0, 60.0), (0.0, 60.0)]
    touching = [(100.0, 150.0), (300.0, 150.0), (300.0, 215.0), (100.0, 215.0)]
    camera = Camera(
        id="two-desks",
        source="x.mp4",
        zones=[
            Zone(name="front", kind="customer", polygon=CUSTOMER_BAND),
            Zone(name="far-desk", kind="post", role="cashier", polygon=far),
            Zone(name="near-desk", kind="post", role="front_desk", polygon=touching),
            Zone(name="door", kind="post", role="door_reception", polygon=INTEL_POST),
        ],
    )
    monitor = CustomerMonitor(camera, Site(cameras=[camera]))
    assert monitor.serving == {"front": ["near-desk"]}
    alone = Camera(id="one", source="x.mp4", zones=[camera.zones[0], camera.zones[1]])
    assert CustomerMonitor(alone, Site(cameras=[alone])).serving == {"front": ["far-desk"]}  # the nearest


# -- d1.reception.03: two staff close together on the door post --------------------------------------

WIDE = (1280, 848)
DOOR_POST = [(40.0, 560.0), (1240.0, 560.0), (1240.0, 848.0), (40.0, 848.0)]
# 200 px per metre across and along the floor band of the built camera.
FLOOR = FloorScale(
    image=[(0.0, 560.0), (1280.0, 560.0), (1280.0, 848.0), (0.0, 848.0)],
    floor_m=[(0.0, 0.0), (6.4, 0.0), (6.4, 1.44), (0.0, 1.44)],
)


def door_camera(floor: FloorScale | None = None) -> Camera:
    return Camera(
        id="door",
        source="door.mp4",
        frame_size=WIDE,
        zones=[Zone(name="door-post", kind="post", role="door_reception", polygon=DOOR_POST)],
        floor=floor,
    )


def pair(gap_px: float, duration: float = 90.0) -> list[FrameObservation]:
    """The chair-clip boy standing (~590 px tall) and the hands-behind photo man scaled to the same
    height, side by side `gap_px` apart on the door post."""
    boy = chair_frame(5.0)
    man = photo("sicong_pic1_hands_behind")
    man_scale = boy.height_px / man.height_px
    a = placed(boy, 1, (400.0, 760.0))
    b = placed(man, 2, (400.0 + gap_px, 760.0), man_scale)
    return scene(duration, lambda t: {1: a, 2: b}, WIDE)


def test_the_two_skeletons_are_standing_and_about_the_same_height():
    a, b = pair(100.0, 1.0)[0].persons
    assert a.features.posture.value == b.features.posture.value == "standing"
    assert a.height_px == pytest.approx(b.height_px, rel=0.01)


@pytest.mark.parametrize("floor", [None, FLOOR], ids=["body-height", "floor-scale"])
def test_two_staff_standing_close_at_the_door_post_for_60_s(floor):
    _, events = run(pair(100.0), door_camera(floor))  # 0.5 m on the floor, 0.17 body heights
    (alert,) = opened(events, CHATTING)
    v = alert.violation
    # From the frame both count as on the post (the zones' 0.4 s entry debounce, 2 fps), for 60 s.
    assert v.start_s == pytest.approx(0.5) and alert.t == pytest.approx(60.5)
    assert v.details["tracks"] == [1, 2] and v.track_id == 1
    if floor is None:
        assert v.details["unit"] == "body heights"
        assert v.details["closest"] == pytest.approx(100.0 / chair_frame(5.0).height_px, rel=0.01)
        assert v.details["limit"] == pytest.approx(0.6)
    else:
        assert v.details["unit"] == "m" and v.details["closest"] == pytest.approx(0.5, abs=0.01)
    assert "谈笑风生" in v.message


@pytest.mark.parametrize("floor", [None, FLOOR], ids=["body-height", "floor-scale"])
def test_two_staff_far_apart_at_the_door_post_are_not_chatting(floor):
    _, events = run(pair(700.0), door_camera(floor))  # 3.5 m, 1.2 body heights
    assert events == []


def test_the_floor_scale_decides_where_the_body_height_fallback_would_guess():
    """250 px: 1.25 m on the calibrated floor (quiet), but 0.43 body heights without it (fires)."""
    assert opened(run(pair(250.0), door_camera(FLOOR))[1], CHATTING) == []
    assert len(opened(run(pair(250.0), door_camera())[1], CHATTING)) == 1


def test_close_for_less_than_sustain_s_is_no_alert():
    frames = pair(100.0)
    for obs in frames:
        if obs.t >= 50:
            obs.persons[1] = placed(obs.persons[1], 2, (1100.0, 760.0))
    _, events = run(frames, door_camera())
    assert events == []


# -- arrivals: the office clip --------------------------------------------------------------------


def office_camera(door: tuple[float, float] = OFFICE_DOOR, door_post: list | None = None) -> Camera:
    zones = (
        []
        if door_post is None
        else [Zone(name="door-post", kind="post", role="door_reception", polygon=door_post)]
    )
    return Camera(
        id="office",
        source="office.mov",
        frame_size=OFFICE_SIZE,
        door=Door(point=door, facing_yaw_deg=45.0),
        zones=zones,
    )


def check_office_arrival(monitor: CustomerMonitor) -> None:
    (arrival,) = monitor.arrivals
    assert 8.5 <= arrival.t_s <= 11.0
    assert arrival.t_s <= arrival.confirmed_s <= 11.0
    assert arrival.door_distance_bh < 0.5
    assert arrival.staff == [] and arrival.greeted is None  # nobody on a door post in this office
    assert arrival.judged


def test_the_man_coming_in_by_the_back_left_door_is_one_arrival():
    monitor, events = run(recorded(OFFICE_FIXTURE), office_camera())
    assert events == []
    check_office_arrival(monitor)
    (arrival,) = monitor.arrivals
    assert len(arrival.tracks) == 2  # the detector lost him once: one arrival, not two
    assert monitor.reports()["arrivals"] == [arrival.to_dict()]


def test_no_arrival_where_there_is_no_door():
    monitor, _ = run(recorded(OFFICE_FIXTURE), office_camera(door=OFFICE_FRONT_RIGHT))
    assert monitor.arrivals == []


def test_walking_out_through_the_door_is_no_arrival():
    """The office clip played backwards: he walks from the desks to the door and leaves."""
    frames = fresh(OFFICE_FIXTURE)
    end = frames[-1].t
    backwards = []
    for i, obs in enumerate(reversed(frames)):
        obs.t, obs.index = round(end - obs.t, 4), i
        backwards.append(obs)
    monitor, _ = run(backwards, office_camera())
    assert monitor.arrivals == []


@pytest.mark.media
@pytest.mark.model
def test_the_office_clip_through_the_pipeline():
    monitor, _ = run(observe(OFFICE_CLIP, OFFICE_FPS), office_camera())
    check_office_arrival(monitor)


@pytest.mark.media
@pytest.mark.model
def test_the_intel_clip_through_the_pipeline():
    frames = observe(INTEL_CLIP, INTEL_FPS)
    for obs in frames:
        obs.persons.append(placed(seated_clerk(obs.t), CLERK, CLERK_FEET, CLERK_SCALE))
    _, events = run(frames, intel_camera(), SHORT)
    (alert,) = opened(events, SEATED_WITH_CUSTOMER)
    assert alert.t == pytest.approx(1.5, abs=0.4)


# -- arrivals: the greeting (built) -------------------------------------------------------------------

GREET_DOOR = (150.0, 560.0)
GREET_POST = [(350.0, 650.0), (450.0, 650.0), (450.0, 750.0), (350.0, 750.0)]
STAFF_FEET = (400.0, 700.0)


def greeting(turn_at: float | None) -> list[FrameObservation]:
    """Door staff (track 1, the standing boy, facing the camera: yaw 0) on the door post from 0 s;
    a customer (track 2, the coco man) comes in at the door at 5 s and walks right along the back
    wall to (900, 600) by 8 s. With `turn_at`, the staff turns to yaw -60 (toward the door side)."""
    staff = chair_frame(5.0)
    visitor = photo("coco241_arms_at_sides")
    scale = 290.0 / visitor.height_px

    def where(t: float) -> dict[int, PersonObservation]:
        yaw = -60.0 if turn_at is not None and t >= turn_at else 0.0
        out = {1: placed(staff, 1, STAFF_FEET, 0.5, yaw=yaw)}
        if t >= 5.0:
            k = min(1.0, (t - 5.0) / 3.0)
            foot = (GREET_DOOR[0] + 10 + k * 750.0, GREET_DOOR[1] + 10 + k * 30.0)
            out[2] = placed(visitor, 2, foot, scale)
        return out

    return scene(12, where, WIDE, fps=5.0)


def test_door_staff_who_turn_to_the_customer_greet_them():
    monitor, _ = run(greeting(turn_at=6.0), office_like_camera())
    (arrival,) = monitor.arrivals
    assert arrival.t_s == pytest.approx(5.0)
    assert arrival.staff == [1]
    assert arrival.greeted is True and arrival.greeted_by == [1]
    assert arrival.greet_s == pytest.approx(6.0)
    assert arrival.turn_deg is not None and arrival.turn_deg >= 20


def test_door_staff_who_do_not_turn_do_not_greet():
    monitor, _ = run(greeting(turn_at=None), office_like_camera())
    (arrival,) = monitor.arrivals
    assert arrival.staff == [1] and arrival.greeted is False
    late, _ = run(greeting(turn_at=8.6), office_like_camera())  # after the 3 s window
    assert late.arrivals[0].greeted is False


def office_like_camera() -> Camera:
    return Camera(
        id="lobby",
        source="lobby.mp4",
        frame_size=WIDE,
        door=Door(point=GREET_DOOR, facing_yaw_deg=-45.0),
        zones=[Zone(name="door-post", kind="post", role="door_reception", polygon=GREET_POST)],
    )


def test_staff_walking_in_is_no_customer_arrival():
    """The door staff comes in through the door and takes the post: staff, not a customer."""
    staff = chair_frame(5.0)

    def where(t: float) -> dict[int, PersonObservation]:
        if t < 2.0:
            return {}
        k = min(1.0, (t - 2.0) / 2.0)
        foot = (GREET_DOOR[0] + 10 + k * (STAFF_FEET[0] - GREET_DOOR[0] - 10), GREET_DOOR[1] + k * 140.0)
        return {1: placed(staff, 1, foot, 0.5)}

    monitor, _ = run(scene(10, where, WIDE, fps=5.0), office_like_camera())
    assert monitor.arrivals == []


# -- recording ----------------------------------------------------------------------------------------


def observe(name: str, fps: float) -> list[FrameObservation]:
    from vision.sources import open_source

    pipeline = make_pipeline(fps=fps)
    with open_source(str(media_path(name)), camera="fixture", fps=fps) as source:
        return [pipeline.process(frame) for frame in source]


def write_fixtures() -> None:
    for name, fps, path in (
        (INTEL_CLIP, INTEL_FPS, INTEL_FIXTURE),
        (OFFICE_CLIP, OFFICE_FPS, OFFICE_FIXTURE),
    ):
        with path.open("w", encoding="utf-8") as fh:
            for obs in observe(name, fps):
                for person in obs.persons:
                    person.evidence = {}
                fh.write(obs.to_json() + "\n")
        print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-fixtures"]:
        sys.exit("usage: .venv/bin/python tests/test_customers.py --write-fixtures")
    write_fixtures()
