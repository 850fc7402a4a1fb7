"""One camera's rules session (service.session.CameraRules) on recorded observations."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calibration.site import load_site
from service.session import CameraRules
from vision.observation import read_jsonl

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]


def test_guard_role_reports_salutes_with_form_scores():
    rules = CameraRules("gate", role="guard_ceremonial")
    for obs in read_jsonl(str(FIXTURES / "guard_kinetics_saluting.observations.jsonl")):
        rules.update(obs)
    rules.finish()
    salutes = [g for g in rules.reports()["gestures"] if g["label"] == "salute"]
    assert len(salutes) >= 3
    assert all(0 <= g["score"] <= 100 for g in salutes)
    assert any(3.0 <= g["start_s"] <= 3.6 for g in salutes)  # the first labelled salute, 3.2-3.6 s


def test_front_desk_role_reports_no_gestures():
    rules = CameraRules("desk", role="front_desk")
    for obs in read_jsonl(str(FIXTURES / "guard_kinetics_saluting.observations.jsonl"))[:20]:
        rules.update(obs)
    assert "gestures" not in rules.reports()


def test_site_session_judges_only_people_on_duty_and_watches_the_post():
    site = load_site(ROOT / "examples" / "chair_clip.yaml")
    rules = CameraRules("chair", site=site, camera=site.cameras[0])
    for obs in read_jsonl(str(FIXTURES / "chair_clip.observations.jsonl")):
        rules.update(obs)
    rules.finish()
    empty = [v for v in rules.violations if v.clause == "d1.reception.02"]
    assert len(empty) == 1 and empty[0].track_id is None
    assert rules.reports()["absences"][0]["zone"] == "desk-post"


def test_door_and_floor_of_the_site_reach_the_checks():
    """examples/demo.yaml has a door (facing yaw 10) and a floor scale: the persons judged on its post
    carry them in their evidence, so d1.reception.05 and the metric checks can run."""
    site = load_site(ROOT / "examples" / "demo.yaml")
    cam = site.cameras[0]
    rules = CameraRules(cam.id, site=site, camera=cam)
    post = next(z for z in cam.zones if z.kind == "post")
    x = sum(p[0] for p in post.polygon) / len(post.polygon)
    y = max(p[1] for p in post.polygon) - 1
    obs = read_jsonl(str(FIXTURES / "chair_clip.observations.jsonl"))[20]
    person = obs.persons[0]
    person.keypoints = None  # judged by the box: put its bottom centre on the post
    w = person.box[2] - person.box[0]
    person.box = np.array([x - w / 2, y - 300, x + w / 2, y])
    judged = rules._on_duty(obs, post.role)
    assert judged.persons
    evidence = judged.persons[0].evidence
    assert evidence["door_facing_yaw_deg"] == cam.door.facing_yaw_deg
    assert len(evidence["floor_h"]) == 3 and evidence["role"] == post.role


def test_a_guard_post_gets_a_shift_audit_with_salutes():
    from calibration.site import Site

    site = Site.model_validate(
        {"name": "gate", "cameras": [{"id": "gate", "source": "x.mp4", "zones": [
            {"name": "gate-post", "kind": "post", "role": "guard_ceremonial",
             "polygon": [[0, 0], [400, 0], [400, 226], [0, 226]]}]}]}
    )  # fmt: skip
    rules = CameraRules("gate", site=site, camera=site.cameras[0])
    assert rules.audit is not None and rules.customers is not None
    for obs in read_jsonl(str(FIXTURES / "guard_kinetics_saluting.observations.jsonl")):
        rules.update(obs)
    rules.finish()
    reports = rules.reports()
    audit = reports["audit"]
    assert audit and "arrivals" in reports
    assert sum(g["label"] == "salute" for g in reports["gestures"]) >= 3
    assert "<table" in rules.audit.to_html()
