"""The guard shift audit (rules/audit.py) and the post handover report (d11.handover.01).

Built from real skeletons on a built gate camera the size of the salute clip (400x226):

* the salute: the pipeline's observations of 3_kinetics_saluting_three_men.mp4 (tests/fixtures/
  guard_kinetics_saluting.observations.jsonl, 10 fps), 4.6-7.9 s, where tracks 5 and 6 salute
  (labelled 4.7-7.8 s): track 6 plays guard A, track 5 the relief B, both moved onto the post;
* guard A standing between salutes: the hands-behind photo (guard_sicong_pic1_hands_behind: right
  for d11.stance.03, feet too close for d11.stance.01), and for 30-40 s the coco photo man whose
  remote control the pipeline reads as a phone looked at (guard_coco241_arms_at_sides);
* relief B standing: the salute clip's track 8 at 5.0 s (arms at the sides).

Every frame goes through the real `service.session.CameraRules` (guard engines, zone monitor,
salute detector), whose outputs feed the audit as the lead will wire it.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import ROOT

from calibration.site import Camera, Site, Zone
from rules.audit import HANDOVER_CLAUSE, ShiftAudit
from service.session import CameraRules
from vision.observation import FrameObservation, PersonObservation, read_jsonl

FIXTURES = ROOT / "tests" / "fixtures"
SALUTES = FIXTURES / "guard_kinetics_saluting.observations.jsonl"
SIZE = (400, 226)
POST = [(200.0, 150.0), (400.0, 150.0), (400.0, 226.0), (200.0, 226.0)]
STANDBY = [(0.0, 150.0), (110.0, 150.0), (110.0, 226.0), (0.0, 226.0)]
AT_A = (250.0, 200.0)  # guard A's place on the post
AT_B = (340.0, 200.0)  # the relief's place on the post
AWAY = (160.0, 200.0)  # in view, on no zone
A, B = 11, 12
SALUTE_AT = 100.0  # the salute clip's 4.6 s plays at 100 s
CLIP_FROM, CLIP_TO = 4.6, 7.95
STANCE = {"guard_ceremonial": "d11.stance.03"}  # judge the hands only: the photo's feet are together


@lru_cache(maxsize=1)
def salute_clip() -> tuple[FrameObservation, ...]:
    return tuple(o for o in read_jsonl(str(SALUTES)) if CLIP_FROM - 1e-6 <= o.t <= CLIP_TO)


@lru_cache(maxsize=4)
def photo(name: str) -> PersonObservation:
    data = json.loads((FIXTURES / f"guard_{name}.skeleton.json").read_text())
    return PersonObservation.from_dict(data["person"])


@lru_cache(maxsize=1)
def relief_standing() -> PersonObservation:
    obs = min(read_jsonl(str(SALUTES)), key=lambda o: abs(o.t - 5.0))
    return next(p for p in obs.persons if p.track_id == 8)


def placed(person: PersonObservation, track: int, foot: tuple[float, float], height: float | None = None):
    """A copy of a real person scaled to `height` px about the feet and moved to stand at `foot`."""
    p = copy.deepcopy(person)
    scale = 1.0 if height is None else height / p.height_px
    f0, target = np.asarray(p.foot_point), np.asarray(foot, dtype=float)
    p.box = ((p.box.reshape(2, 2) - f0) * scale + target).reshape(4)
    if p.keypoints is not None:
        p.keypoints = (p.keypoints - f0) * scale + target
    p.track_id = track
    return p


def guard_a(t: float) -> PersonObservation:
    name = "coco241_arms_at_sides" if 30 <= t < 40 else "sicong_pic1_hands_behind"
    return placed(photo(name), A, AT_A, 170.0)


def handover_scene(
    relief_on_post_at: float = SALUTE_AT, relief_salutes: bool = True, a_leaves_at: float = 110.0
) -> list[FrameObservation]:
    """A on the post from 0 s; B waits in view from 90 s; both salute at 100-103.3 s (B on the post
    when `relief_on_post_at` <= 100, else in front of it); A leaves at `a_leaves_at` (seen walking
    off for 2 s); B on the post from `relief_on_post_at` until 200 s."""
    frames: list[FrameObservation] = []
    b_spot: Callable[[float], tuple[float, float]] = lambda t: AT_B if t >= relief_on_post_at else AWAY  # noqa: E731

    def built(t: float) -> list[PersonObservation]:
        persons = []
        if t < a_leaves_at:
            persons.append(guard_a(t))
        elif t < a_leaves_at + 2:
            persons.append(placed(photo("sicong_pic1_hands_behind"), A, AWAY, 170.0))
        if t >= 90:
            persons.append(placed(relief_standing(), B, b_spot(t)))
        return persons

    t = 0.0
    while t < SALUTE_AT - 1e-6:
        frames.append(FrameObservation("gate", t, len(frames), *SIZE, built(t)))
        t += 0.5
    for obs in salute_clip():
        tt = round(SALUTE_AT + obs.t - CLIP_FROM, 4)
        persons = []
        for p in obs.persons:
            if p.track_id == 6:
                persons.append(placed(p, A, AT_A))
            elif p.track_id == 5:
                persons.append(
                    placed(p, B, b_spot(tt)) if relief_salutes else placed(relief_standing(), B, b_spot(tt))
                )
        frames.append(FrameObservation("gate", tt, len(frames), *SIZE, persons))
    t = 103.5
    while t <= 200 + 1e-6:
        frames.append(FrameObservation("gate", t, len(frames), *SIZE, built(t)))
        t += 0.5
    return frames


def gate_camera() -> Camera:
    return Camera(
        id="gate",
        source="gate.mp4",
        frame_size=SIZE,
        zones=[
            Zone(name="gate-post", kind="post", role="guard_ceremonial", polygon=POST),
            Zone(name="standby", kind="standby", role="guard_standby", polygon=STANDBY),
        ],
    )


def audited(frames: list[FrameObservation], site_name: str = "HQ") -> tuple[ShiftAudit, CameraRules]:
    camera = gate_camera()
    site = Site(name=site_name, cameras=[camera])
    rules = CameraRules(camera.id, site=site, camera=camera)
    audit = ShiftAudit(camera, site, stance=STANCE)
    for obs in frames:
        rules.update(obs)
        audit.update(obs)
    rules.finish()
    audit.finish()
    assert rules.zones is not None
    audit.add(
        violations=rules.violations,
        absences=rules.zones.absences,
        handovers=rules.zones.handovers,
        gestures=rules.gesture_events,
    )
    return audit, rules


@lru_cache(maxsize=4)
def by_the_book() -> tuple[ShiftAudit, CameraRules]:
    return audited(handover_scene())


def guard(data: dict[str, Any], track: int) -> dict[str, Any]:
    return next(g for g in data["guards"] if g["track_id"] == track)


# -- the audit -----------------------------------------------------------------------------------------


def test_the_salute_clip_salutes_are_found_in_the_built_shift():
    audit, _ = by_the_book()
    salutes = audit.salutes()
    assert {e.track_id for e in salutes} == {A, B}
    for e in salutes:
        assert SALUTE_AT <= e.start_s <= SALUTE_AT + 1.0 and e.end_s is not None and e.end_s >= 102.5


def test_audit_json_structure_and_figures():
    audit, rules = by_the_book()
    data = json.loads(json.dumps(audit.to_dict()))  # JSON-ready
    assert data["report"] == "guard shift audit" and data["camera"] == "gate" and data["site"] == "HQ"
    assert data["period"]["start_s"] == 0.0 and data["period"]["end_s"] == 200.0
    assert {p["zone"] for p in data["posts"]} == {"gate-post", "standby"}
    a, b = guard(data, A), guard(data, B)
    assert set(a) >= {"posts", "minutes_on_post", "stance", "salutes", "phone", "absences", "violations"}

    # Minutes on post: A 0-110 s, B 100-200 s (the last frame counts its interval, 0.5 s).
    assert a["minutes_on_post"] == pytest.approx(110 / 60, abs=0.01)
    assert b["minutes_on_post"] == pytest.approx(100.5 / 60, abs=0.01)
    post = next(p for p in data["posts"] if p["zone"] == "gate-post")
    assert post["guards"] == [A, B]
    assert post["staffed_min"] == pytest.approx(200.5 / 60, abs=0.01)

    # Salutes: one each, with the detector's form score.
    assert a["salutes"]["count"] == 1 and b["salutes"]["count"] == 1
    assert 50 <= a["salutes"]["mean_score"] <= 100 and 50 <= b["salutes"]["mean_score"] <= 100

    # Stance (d11.stance.03, hands): A is right with hands behind, wrong for the 10 s of the coco
    # photo; the salute is not judged. B has his arms at his sides: never right.
    assert a["stance"]["clause"] == "d11.stance.03"
    judged = a["stance"]["judged_min"] * 60
    assert judged == pytest.approx(110 - 3.7, abs=1.0)
    assert a["stance"]["compliance"] == pytest.approx((judged - 10) / judged, abs=0.01)
    assert set(a["stance"]["by_clause"]) == {"d11.stance.01", "d11.stance.03"}
    assert a["stance"]["by_clause"]["d11.stance.01"]["compliance"] == 0.0  # the photo's feet together
    assert b["stance"]["compliance"] == 0.0

    # Phone: one sighting of A (30-39.5 s); the saluting hand at the brow is no phone.
    assert a["phone"]["sightings"] == 1
    (iv,) = a["phone"]["intervals"]
    assert (iv["start_s"], iv["end_s"]) == (30.0, 39.5) and iv["seconds"] == pytest.approx(10.0)
    assert b["phone"]["sightings"] == 0
    assert "d11.phone.01" in {v["clause"] for v in a["violations"]}  # the engine's alert, listed with him
    assert all(v["track_id"] == A for v in a["violations"])
    assert a["absences"] == [] and b["absences"] == []
    assert len(rules.violations) >= 1


def test_handover_by_the_book():
    audit, _ = by_the_book()
    (report,) = audit.handover_reports()
    assert (report.from_track, report.to_track) == (A, B)
    assert report.left_s == pytest.approx(110.0) and report.arrived_s == pytest.approx(SALUTE_AT, abs=0.1)
    assert not report.post_empty
    assert report.both_saluted and report.face_to_face and report.by_the_book
    d = audit.to_dict()["handovers"][0]
    assert d["clause"] == HANDOVER_CLAUSE and d["post_empty"] is False and d["both_saluted"] is True
    assert len(d["from_salutes"]) == 1 and len(d["to_salutes"]) == 1


def test_handover_with_the_post_empty_and_one_salute():
    """B salutes in front of the post but steps on only at 115 s, 5 s after A left; a second run
    where B never salutes."""
    audit, rules = audited(handover_scene(relief_on_post_at=115.0))
    (report,) = audit.handover_reports()
    assert report.post_empty and report.gap_s == pytest.approx(5.0)
    assert report.both_saluted and not report.by_the_book
    assert rules.violations == [] or all(v.clause != "d1.reception.02" for v in rules.violations)

    audit, _ = audited(handover_scene(relief_salutes=False))
    (report,) = audit.handover_reports()
    assert not report.post_empty
    assert len(report.from_salutes) == 1 and report.to_salutes == []
    assert not report.both_saluted and not report.face_to_face and not report.by_the_book


def test_an_absence_is_listed_with_the_post_and_the_guard_who_left():
    """A leaves at 110 s and nobody comes: the zone monitor's absence (alerted after 60 s)."""
    frames = [
        FrameObservation("gate", o.t, o.index, *SIZE, [p for p in o.persons if p.track_id == A])
        for o in handover_scene()
    ]
    audit, rules = audited(frames)
    data = audit.to_dict()
    (absence,) = next(p for p in data["posts"] if p["zone"] == "gate-post")["absences"]
    assert absence["left_by"] == A and absence["start_s"] == pytest.approx(110.0) and absence["ongoing"]
    assert guard(data, A)["absences"] == [absence]
    assert audit.handover_reports() == []
    assert [v["clause"] for v in data["violations"]] == ["d1.reception.02"]  # zone-level, not a guard's


# -- HTML ------------------------------------------------------------------------------------------------


def png(colour: tuple[int, int, int]) -> bytes:
    image = np.zeros((8, 8, 3), np.uint8)
    image[:] = colour
    return cv2.imencode(".png", image)[1].tobytes()


def test_html_is_self_contained_escaped_and_has_the_tables():
    audit, _ = audited(handover_scene(), site_name="<script>alert('x')</script> & Co")
    page = audit.to_html({A: png((0, 0, 255)), "alert <b>7</b>": png((0, 255, 0))})
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; Co" in page
    assert "alert &lt;b&gt;7&lt;/b&gt;" in page and "<b>" not in page
    for css in ("guards", "stance", "salutes", "phone", "posts", "handovers"):
        assert f'<table class="{css}">' in page, css
    assert page.count("data:image/png;base64,") == 2
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)  # nothing fetched from outside
    assert "d11.handover.01" in page and "Guard track 11" in page


def test_html_takes_snapshots_as_paths_and_arrays(tmp_path):
    audit, _ = by_the_book()
    path = tmp_path / "shot.png"
    path.write_bytes(png((255, 0, 0)))
    page = audit.to_html({"from a file": path, "from an array": np.zeros((4, 4, 3), np.uint8)})
    assert page.count("data:image/png;base64,") == 1 and page.count("data:image/jpeg;base64,") == 1
    with pytest.raises(TypeError):
        audit.to_html({"bad": 3})


def test_a_camera_without_guard_zones_audits_nothing():
    camera = Camera(
        id="desk", source="x.mp4", zones=[Zone(name="d", kind="post", role="front_desk", polygon=POST)]
    )
    audit = ShiftAudit(camera, Site(cameras=[camera]))
    for obs in handover_scene()[:10]:
        audit.update(obs)
    data = audit.to_dict()
    assert data["guards"] == [] and data["posts"] == [] and data["notes"]
    assert "<table" in audit.to_html()


def test_unknown_headline_stance_clause_is_refused():
    camera = gate_camera()
    with pytest.raises(ValueError, match="not a stance clause"):
        ShiftAudit(camera, Site(cameras=[camera]), stance={"guard_ceremonial": "d11.stance.02"})
