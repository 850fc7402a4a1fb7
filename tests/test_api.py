"""The HTTP API, through FastAPI's TestClient, on SQLite and on the real PostgreSQL server.

Each access rule of the brief is a test: no key -> 401, trainers cannot approve, security
sees guard clauses only, a key never sees another site's alerts or clips (filtered out
of lists, 404 by id), and so on. Data is written through the store, as workers will.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from calibration.site import Site
from rules.violation import Violation
from service.api import create_app, encode_cursor
from service.keys import create_key, revoke_key
from service.metrics import Metrics
from service.store import APPROVAL_CANCELLED, APPROVAL_CREATED, AlertStore, StoreEvent

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
SQUARE = [[0, 0], [100, 0], [100, 100], [0, 100]]


def site(name: str, cameras: dict[str, str]) -> Site:
    """A site file with one post zone per camera (camera id -> role on duty)."""
    return Site.model_validate(
        {
            "name": name,
            "cameras": [
                {
                    "id": cam,
                    "source": f"{cam}.mp4",
                    "zones": [{"name": "post", "kind": "post", "role": role, "polygon": SQUARE}],
                }
                for cam, role in cameras.items()
            ],
        }
    )


@dataclass
class World:
    """Two shops, their alerts, one key per role, and a client."""

    store: AlertStore
    client: TestClient
    metrics: Metrics
    keys: dict[str, str]
    ids: dict[str, int]
    media: Path

    def get(self, path: str, key: str | None = "admin", **params: object):  # noqa: ANN201
        return self.client.get(path, params=params or None, headers=self.auth(key))

    def post(self, path: str, key: str | None = "admin", json: object = None):  # noqa: ANN201
        return self.client.post(path, json=json, headers=self.auth(key))

    def auth(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[key]}"} if key else {}


def add_alert(
    store: AlertStore,
    site_id: str,
    camera: str,
    clause: str,
    track: int | None,
    start: float,
    end: float | None,
    **kw: object,
) -> int:
    v = Violation(
        clause=clause, camera=camera, track_id=track, start_s=start, end_s=end, confidence=0.7, **kw
    )
    at = T0 + timedelta(seconds=start)
    return store.open_alert(v, camera, site_id, t=start, at=at).id


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    store = AlertStore(db_url)
    shop_a = site("shopA", {"desk": "front_desk", "gate": "guard_fixed"})
    shop_b = site("shopB", {"till": "cashier"})
    metrics = Metrics()
    app = create_app(store, [shop_a, shop_b], metrics=metrics, media_root=tmp_path)
    (tmp_path / "snap.jpg").write_bytes(b"\xff\xd8jpeg")
    ids = {
        "a_desk": add_alert(store, "shopA", "desk", "d5.stance.01", 1, 0.0, 30.0, snapshot="snap.jpg"),
        "a_gate": add_alert(store, "shopA", "gate", "d11.stance.01", 2, 60.0, 80.0),
        "a_open": add_alert(store, "shopA", "desk", "d1.floor.03", 3, 120.0, None),
        "b_till": add_alert(store, "shopB", "till", "d5.stance.01", 1, 10.0, 25.0, snapshot="snap.jpg"),
    }
    store.set_media(ids["b_till"], clip="snap.jpg")
    keys = {
        "admin": create_key(store, "admin", ["*"]),
        "manager": create_key(store, "manager", ["shopA"], name="Manager A"),
        "manager_b": create_key(store, "manager", ["shopB"]),
        "trainer": create_key(store, "trainer", ["shopA"]),
        "security": create_key(store, "security", ["shopA"], name="Guard lead"),
        "desk_only": create_key(store, "manager", ["shopA"], cameras=["desk"]),
    }
    with TestClient(app, raise_server_exceptions=False) as client:
        yield World(store, client, metrics, keys, ids, tmp_path)
    store.close()


def ids_of(response) -> list[int]:  # noqa: ANN001
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


# -- authentication ------------------------------------------------------------------------------


def test_healthz_needs_no_key(world: World) -> None:
    r = world.get("/healthz", key=None)
    assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok"}


def test_every_route_but_healthz_answers_401_without_a_key(world: World) -> None:
    checked = 0
    for route in world.client.app.routes:
        path = getattr(route, "path", "")
        if path in ("/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"):
            continue
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        for method in route.methods - {"HEAD"}:
            r = world.client.request(method, concrete)
            assert r.status_code == 401, f"{method} {path} answered {r.status_code} without a key"
            assert "API key" in r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"
            checked += 1
    assert checked >= 13


def test_bad_and_revoked_keys_are_refused_and_x_api_key_works(world: World) -> None:
    assert world.client.get("/alerts", headers={"Authorization": "Bearer pw_nope"}).status_code == 401
    assert world.client.get("/alerts", headers={"Authorization": "Basic abc"}).status_code == 401
    assert world.client.get("/alerts", headers={"X-API-Key": world.keys["trainer"]}).status_code == 200
    revoke_key(world.store, world.keys["trainer"])
    r = world.client.get("/alerts", headers={"X-API-Key": world.keys["trainer"]})
    assert r.status_code == 401 and r.json()["detail"] == "invalid or revoked API key"


# -- roles ---------------------------------------------------------------------------------------


def test_trainer_reads_alerts_and_clips_but_cannot_approve_review_or_report(world: World) -> None:
    assert sorted(ids_of(world.get("/alerts", "trainer"))) == sorted(
        [world.ids["a_desk"], world.ids["a_gate"], world.ids["a_open"]]
    )
    assert world.get(f"/alerts/{world.ids['a_desk']}/snapshot", "trainer").status_code == 200
    approval = {
        "camera": "desk",
        "post": "post",
        "start": "2025-03-01T10:00:00Z",
        "end": "2025-03-01T10:15:00Z",
    }
    r = world.post("/approvals", "trainer", approval)
    assert r.status_code == 403 and "approvals:write" in r.json()["detail"]
    assert world.get("/approvals", "trainer").status_code == 403
    assert world.post(f"/alerts/{world.ids['a_desk']}/ack", "trainer", {}).status_code == 403
    assert (
        world.get(
            "/reports/shift", "trainer", **{"from": "2025-03-01T00:00Z", "to": "2025-03-02T00:00Z"}
        ).status_code
        == 403
    )
    assert world.get("/metrics", "trainer").status_code == 403
    assert world.post("/approvals", "manager", approval).status_code == 201


def test_security_sees_only_guard_clauses(world: World) -> None:
    assert ids_of(world.get("/alerts", "security")) == [world.ids["a_gate"]]
    assert ids_of(world.get("/alerts", "security", clause="d5.stance.01")) == []
    assert world.get(f"/alerts/{world.ids['a_gate']}", "security").status_code == 200
    assert world.get(f"/alerts/{world.ids['a_desk']}", "security").status_code == 404
    assert world.get(f"/alerts/{world.ids['a_desk']}/snapshot", "security").status_code == 404
    assert world.post(f"/alerts/{world.ids['a_desk']}/ack", "security", {}).status_code == 404
    r = world.post(f"/alerts/{world.ids['a_gate']}/ack", "security", {"comment": "talked to the guard"})
    assert r.status_code == 200 and r.json()["ack"]["by"] == "Guard lead"
    report = world.get(
        "/reports/shift", "security", **{"from": "2025-03-01T00:00Z", "to": "2025-03-02T00:00Z"}
    )
    assert report.status_code == 200
    assert [c["clause"] for c in report.json()["clauses"]] == ["d11.stance.01"]
    assert world.get("/approvals", "security").status_code == 403


def test_a_manager_never_sees_another_sites_alerts(world: World) -> None:
    mine = ids_of(world.get("/alerts", "manager", limit=500))
    assert world.ids["b_till"] not in mine and len(mine) == 3
    assert ids_of(world.get("/alerts", "manager", site="shopB")) == []
    b = world.ids["b_till"]
    for path in (f"/alerts/{b}", f"/alerts/{b}/snapshot", f"/alerts/{b}/clip"):
        r = world.get(path, "manager")
        assert r.status_code == 404 and r.json()["detail"] == f"no alert {b}"  # same as a missing alert
    assert world.get("/alerts/99999", "manager").json()["detail"] == "no alert 99999"
    assert world.post(f"/alerts/{b}/ack", "manager", {}).status_code == 404
    assert world.post(f"/alerts/{b}/false-alarm", "manager", {}).status_code == 404
    assert world.get(f"/alerts/{b}/clip", "manager_b").status_code == 200
    assert ids_of(world.get("/alerts", "manager_b")) == [b]
    assert {c["site"] for c in world.get("/cameras", "manager").json()} == {"shopA"}
    report = world.get(
        "/reports/shift", "manager", **{"from": "2025-03-01T00:00Z", "to": "2025-03-02T00:00Z"}
    )
    assert {t["site"] for t in report.json()["tracks"]} == {"shopA"}


def test_a_camera_scoped_key_sees_only_its_cameras(world: World) -> None:
    assert sorted(ids_of(world.get("/alerts", "desk_only"))) == sorted(
        [world.ids["a_desk"], world.ids["a_open"]]
    )
    assert world.get(f"/alerts/{world.ids['a_gate']}", "desk_only").status_code == 404
    assert [c["id"] for c in world.get("/cameras", "desk_only").json()] == ["desk"]
    approval = {
        "camera": "gate",
        "post": "post",
        "start": "2025-03-01T10:00:00Z",
        "end": "2025-03-01T10:15:00Z",
    }
    assert world.post("/approvals", "desk_only", approval).status_code == 403


# -- alerts --------------------------------------------------------------------------------------


def test_pagination_returns_every_alert_once(world: World) -> None:
    for i in range(23):
        add_alert(world.store, "shopA", "desk", "d5.stance.02", 10 + i, 1000.0 + i, 1001.0 + i)
    expected = ids_of(world.get("/alerts", "manager", limit=500))
    assert len(expected) == 26 and expected == sorted(expected, reverse=True)
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 5} | ({"cursor": cursor} if cursor else {})
        body = world.get("/alerts", "manager", **params).json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        if pages == 2:  # an alert stored while paging does not shift later pages
            add_alert(world.store, "shopA", "desk", "d5.stance.02", 99, 5000.0, None)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected and pages == 6


def test_filters(world: World) -> None:
    ids = world.ids
    world.post(f"/alerts/{ids['a_desk']}/ack", "manager", {})
    world.post(f"/alerts/{ids['a_gate']}/false-alarm", "manager", {})

    def found(**params: object) -> set[int]:
        return set(ids_of(world.get("/alerts", "admin", **params)))

    assert found(camera="desk") == {ids["a_desk"], ids["a_open"]}
    assert found(camera=["gate", "till"]) == {ids["a_gate"], ids["b_till"]}
    assert found(clause="d5.stance.01") == {ids["a_desk"], ids["b_till"]}
    assert found(role="guard_fixed") == {ids["a_gate"]}
    assert found(role="cashier") == {ids["b_till"]}
    assert found(track=3) == {ids["a_open"]}
    assert found(site="shopB") == {ids["b_till"]}
    assert found(state="open") == {ids["a_open"]}
    assert ids["a_open"] not in found(state="closed") and len(found(state="closed")) == 3
    assert found(acknowledged="true") == {ids["a_desk"]}
    assert found(false_alarm="true") == {ids["a_gate"]}
    # started_at = T0 + start_s: 0, 60, 120, 10 s
    assert found(**{"from": "2025-03-01T09:00:30Z"}) == {ids["a_gate"], ids["a_open"]}
    assert found(**{"from": "2025-03-01T09:00:05Z", "to": "2025-03-01T09:01:00Z"}) == {ids["b_till"]}
    assert found(**{"to": "2025-03-01T11:01:30+02:00"}) == {ids["a_desk"], ids["a_gate"], ids["b_till"]}
    assert found(camera="desk", state="open", track=3, clause="d1.floor.03") == {ids["a_open"]}


def test_alert_detail_has_clause_text_times_and_media(world: World) -> None:
    r = world.get(f"/alerts/{world.ids['a_desk']}", "manager")
    assert r.status_code == 200
    body = r.json()
    assert body["clause_text"]["id"] == "d5.stance.01" and body["clause_text"]["gloss"]
    assert body["clause_text"]["text_zh"] and all(
        isinstance(t, str) and t for t in body["clause_text"]["text_zh"]
    )
    assert body["started_at"].startswith("2025-03-01T09:00:00") and body["ended_at"].startswith(
        "2025-03-01T09:00:30"
    )
    assert body["duration_s"] == 30.0 and body["open"] is False and body["role"] == "front_desk"
    assert body["snapshot_url"] == f"/alerts/{world.ids['a_desk']}/snapshot" and body["clip_url"] is None
    snap = world.client.get(body["snapshot_url"], headers=world.auth("manager"))
    assert snap.status_code == 200 and snap.content == b"\xff\xd8jpeg"
    r = world.get(f"/alerts/{world.ids['a_desk']}/clip", "manager")
    assert r.status_code == 404 and "no clip" in r.json()["detail"]
    opened = world.get(f"/alerts/{world.ids['a_open']}", "manager").json()
    assert opened["open"] is True and opened["ended_at"] is None


def test_ack_and_false_alarm_persist(world: World, db_url: str) -> None:
    a = world.ids["a_desk"]
    r = world.post(f"/alerts/{a}/ack", "manager", {"comment": "spoke with her at the break"})
    assert r.status_code == 200 and r.json()["acknowledged"] is True
    again = world.post(f"/alerts/{a}/ack", "admin", {"comment": "me too"})
    assert again.status_code == 409 and "already acknowledged by Manager A" in again.json()["detail"]
    r = world.post(f"/alerts/{a}/false-alarm", "manager", {"comment": "she was pointing the way"})
    assert r.status_code == 200 and r.json()["false_alarm"] is True
    world.post(f"/alerts/{world.ids['a_gate']}/false-alarm", "manager")  # no body: flag without comment

    fresh = AlertStore(db_url)  # another process reading the same database
    try:
        stored = fresh.get_alert(a)
        assert stored is not None and stored.acknowledged and stored.false_alarm
        assert (stored.ack.by, stored.ack.comment) == ("Manager A", "spoke with her at the break")
        assert stored.false_alarm_review.comment == "she was pointing the way"
        assert fresh.get_alert(world.ids["a_gate"]).false_alarm
    finally:
        fresh.close()
    undo = world.post(
        f"/alerts/{a}/false-alarm", "manager", {"false_alarm": False, "comment": "on second look"}
    )
    assert undo.json()["false_alarm"] is False
    assert world.get(f"/alerts/{a}", "manager").json()["false_alarm_review"]["comment"] == "on second look"


# -- approvals -----------------------------------------------------------------------------------


def test_approvals_create_list_cancel_and_notify(world: World) -> None:
    events: list[StoreEvent] = []
    world.store.subscribe(events.append, kinds=[APPROVAL_CREATED, APPROVAL_CANCELLED])
    body = {
        "camera": "desk",
        "post": "post",
        "start": "2025-03-01T10:00:00+01:00",
        "end": "2025-03-01T10:20:00+01:00",
        "reason": "bank deposit",
    }
    r = world.post("/approvals", "manager", body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["site"] == "shopA" and created["created_by"] == "Manager A"
    assert created["start"].startswith("2025-03-01T09:00:00")  # stored in UTC
    assert [(e.kind, e.approval.id) for e in events] == [(APPROVAL_CREATED, created["id"])]
    assert world.store.is_approved("shopA", "desk", "post", T0 + timedelta(minutes=5))

    listed = world.get("/approvals", "manager").json()
    assert [a["id"] for a in listed] == [created["id"]]
    assert [a["id"] for a in world.get("/approvals", "manager", active_at="2025-03-01T09:10:00Z").json()] == [
        created["id"]
    ]
    assert world.get("/approvals", "manager", active_at="2025-03-01T09:30:00Z").json() == []
    assert world.get("/approvals", "manager_b").json() == []  # another site's manager
    assert (
        world.client.delete(f"/approvals/{created['id']}", headers=world.auth("manager_b")).status_code == 404
    )

    r = world.client.delete(f"/approvals/{created['id']}", headers=world.auth("manager"))
    assert r.status_code == 200 and r.json()["cancelled"] is True
    assert events[-1].kind == APPROVAL_CANCELLED and events[-1].approval.cancelled
    assert world.get("/approvals", "manager").json() == []
    assert len(world.get("/approvals", "manager", include_cancelled="true").json()) == 1
    assert not world.store.is_approved("shopA", "desk", "post", T0 + timedelta(minutes=5))
    assert world.client.delete("/approvals/999", headers=world.auth("manager")).status_code == 404


def test_approvals_are_checked_against_the_site_file(world: World) -> None:
    window = {"start": "2025-03-01T10:00:00Z", "end": "2025-03-01T10:20:00Z"}
    r = world.post("/approvals", "manager", {"camera": "desk", "post": "toilet", **window})
    assert r.status_code == 400 and "no post 'toilet'" in r.json()["detail"]
    r = world.post("/approvals", "manager", {"camera": "roof", "post": "post", **window})
    assert r.status_code == 400 and "no camera 'roof'" in r.json()["detail"]
    r = world.post("/approvals", "admin", {"camera": "desk", "post": "post", **window})
    assert r.status_code == 400 and "site is required" in r.json()["detail"]
    r = world.post("/approvals", "admin", {"site": "shopB", "camera": "till", "post": "post", **window})
    assert r.status_code == 201
    r = world.post("/approvals", "manager", {"site": "shopB", "camera": "till", "post": "post", **window})
    assert r.status_code == 403


# -- reports, catalogue, cameras, metrics --------------------------------------------------------


def test_shift_report_counts_durations_and_csv(world: World) -> None:
    add_alert(world.store, "shopA", "desk", "d5.stance.01", 1, 200.0, 212.5)
    window = {"from": "2025-03-01T08:00:00Z", "to": "2025-03-01T17:00:00Z"}
    body = world.get("/reports/shift", "manager", **window).json()
    assert body["from"].startswith("2025-03-01T08:00:00") and body["to"].startswith("2025-03-01T17:00:00")
    assert body["total"] == {"count": 4, "duration_s": 62.5, "open": 1}
    stance = next(c for c in body["clauses"] if c["clause"] == "d5.stance.01")
    assert (stance["count"], stance["duration_s"], stance["open"]) == (2, 42.5, 0) and stance["gloss"]
    track1 = next(t for t in body["tracks"] if (t["camera"], t["track_id"]) == ("desk", 1))
    assert (track1["count"], track1["duration_s"]) == (2, 42.5)
    assert [c["clause"] for c in track1["clauses"]] == ["d5.stance.01"]

    r = world.get("/reports/shift", "manager", format="csv", **window)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    by_clause = {row["clause"]: row for row in rows if row["by"] == "clause"}
    assert (
        by_clause["d5.stance.01"]["count"] == "2" and float(by_clause["d5.stance.01"]["duration_s"]) == 42.5
    )
    track_rows = [
        row for row in rows if row["by"] == "track" and row["camera"] == "desk" and row["track_id"] == "1"
    ]
    assert len(track_rows) == 1 and float(track_rows[0]["duration_s"]) == 42.5
    assert sum(int(row["count"]) for row in rows if row["by"] == "clause") == 4

    early = world.get("/reports/shift", "manager", **{"from": "2025-03-01T07:00Z", "to": "2025-03-01T08:00Z"})
    assert early.json()["total"] == {"count": 0, "duration_s": 0.0, "open": 0}


def test_camera_reports_list_detail_audit_and_scope(world: World) -> None:
    """A camera run's report (handovers, absences, the guards' audit...) as the worker saves it:
    rewritten as the run goes, frozen once final, listed newest first within the key's scope."""
    store, run1, run2 = world.store, T0, T0 + timedelta(hours=1)
    absence = {"zone": "post", "start_s": 10.0, "end_s": 40.0, "approved": False}
    store.save_report("shopA", "gate", run1, 120.0, {"absences": []}, audit_html="<p>draft</p>")
    gate = store.save_report(
        "shopA", "gate", run1, 300.0, {"absences": [absence]}, audit_html="<p>gate audit</p>", final=True
    )
    again = store.save_report("shopA", "gate", run1, 999.0, {"absences": []})
    assert (again.id, again.stream_t, again.final) == (gate.id, 300.0, True)  # a final report stays
    desk = store.save_report("shopA", "desk", run2, 60.0, {"arrivals": [{"t": 12.0}]})
    till = store.save_report("shopB", "till", run1, 10.0, {"absences": []})

    listing = world.get("/reports/cameras", "manager").json()
    assert [x["id"] for x in listing] == [desk.id, gate.id]  # newest run first; shopB is not theirs
    assert listing[1]["final"] and listing[1]["has_audit"] and listing[1]["report"] is None
    assert not listing[0]["final"] and not listing[0]["has_audit"]
    detail = world.get(f"/reports/cameras/{gate.id}", "security").json()
    assert detail["report"] == {"absences": [absence]} and detail["stream_t"] == 300.0
    page = world.get(f"/reports/cameras/{gate.id}/audit", "security")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text == "<p>gate audit</p>"
    no_audit = world.get(f"/reports/cameras/{desk.id}/audit", "manager")
    assert no_audit.status_code == 404 and "no shift audit" in no_audit.json()["detail"]

    assert world.get(f"/reports/cameras/{till.id}", "manager").status_code == 404  # another site's
    assert world.get(f"/reports/cameras/{gate.id}", "desk_only").status_code == 404  # another camera
    assert world.get("/reports/cameras", "trainer").status_code == 403
    assert [x["id"] for x in world.get("/reports/cameras", "admin", camera="till").json()] == [till.id]
    later = world.get("/reports/cameras", "admin", **{"from": "2025-03-01T09:30:00Z"}).json()
    assert [x["id"] for x in later] == [desk.id]


def test_clauses_and_cameras(world: World) -> None:
    clauses = world.get("/clauses", "trainer").json()
    assert any(c["id"] == "d5.stance.01" and c["text_zh"] and c["gloss"] for c in clauses)
    guard = world.get("/clauses", "trainer", role="guard_fixed").json()
    assert guard and all("guard_fixed" in c["roles"] for c in guard)
    world.store.set_camera_status("shopA", "desk", connected=True, analysed_fps=4.9, last_frame_t=321.0)
    cams = {c["id"]: c for c in world.get("/cameras", "manager").json()}
    assert set(cams) == {"desk", "gate"}
    assert (cams["desk"]["connected"], cams["desk"]["analysed_fps"], cams["desk"]["last_frame_t"]) == (
        True,
        4.9,
        321.0,
    )
    assert cams["desk"]["role"] == "front_desk" and cams["gate"]["connected"] is False


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*)\})? (\S+)$')


def parse_prometheus(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A strict reader of the text format: every line is a HELP, a TYPE, or a sample."""
    families: dict[str, list[tuple[dict[str, str], float]]] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge") and name not in types
            types[name] = kind
            families[name] = []
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        name, labels, value = match.groups()
        assert name in types, f"sample before its TYPE: {line!r}"
        parsed = dict(re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', labels or ""))
        families[name].append((parsed, float(value)))
    return families


def test_metrics_text_parses_and_is_scoped(world: World) -> None:
    m = world.metrics
    m.frames.inc(5, site="shopA", camera="desk")
    m.analysed_fps.set(4.75, site="shopA", camera="desk")
    m.inference_ms.set(38.5, site="shopA", camera="desk")
    m.queue_depth.set(2, site="shopA", camera="desk")
    m.queue_depth.set(7, site="shopB", camera='till "2"')  # quoting survives
    r = world.get("/metrics", "admin")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = parse_prometheus(r.text)
    assert families["postwatch_frames_total"] == [({"site": "shopA", "camera": "desk"}, 5.0)]
    assert ({"site": "shopA", "camera": "desk"}, 4.75) in families["postwatch_analysed_fps"]
    assert ({"site": "shopB", "camera": 'till \\"2\\"'}, 7.0) in families["postwatch_queue_depth"]
    per_clause = {(s["site"], s["clause"]): v for s, v in families["postwatch_alerts_total"]}
    assert per_clause[("shopA", "d5.stance.01")] == 1 and per_clause[("shopB", "d5.stance.01")] == 1
    assert sum(v for _, v in families["postwatch_alerts_open"]) == 1

    mine = parse_prometheus(world.get("/metrics", "manager").text)
    assert {s["site"] for family in mine.values() for s, _ in family} == {"shopA"}


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "status", "reason"),
    [
        ("get", "/alerts", {"cursor": "not-a-cursor"}, None, 400, "invalid cursor"),
        ("get", "/alerts", {"cursor": encode_cursor(5)[:-2] + "!!"}, None, 400, "invalid cursor"),
        ("get", "/alerts", {"limit": 0}, None, 422, "limit"),
        ("get", "/alerts", {"limit": "many"}, None, 422, "limit"),
        ("get", "/alerts", {"track": -1}, None, 422, "track"),
        ("get", "/alerts", {"state": "sleeping"}, None, 422, "state"),
        ("get", "/alerts", {"role": "janitor"}, None, 422, "role"),
        ("get", "/alerts", {"clause": "DROP TABLE"}, None, 422, "not a clause id"),
        ("get", "/alerts", {"from": "yesterday"}, None, 422, "from"),
        (
            "get",
            "/alerts",
            {"from": "2025-03-02T00:00Z", "to": "2025-03-01T00:00Z"},
            None,
            400,
            "'to' must be after",
        ),
        ("get", "/alerts/abc", {}, None, 422, "alert_id"),
        ("get", "/alerts/0", {}, None, 422, "alert_id"),
        ("post", "/alerts/1/ack", {}, {"comment": 5}, 422, "comment"),
        ("post", "/alerts/1/ack", {}, {"comment": "x", "extra": 1}, 422, "extra"),
        ("post", "/alerts/1/false-alarm", {}, {"false_alarm": "perhaps"}, 422, "false_alarm"),
        ("post", "/approvals", {}, {"camera": "desk"}, 422, "post"),
        (
            "post",
            "/approvals",
            {},
            {"camera": "desk", "post": "post", "start": "2025-03-01T10:00Z", "end": "2025-03-01T09:00Z"},
            422,
            "end must be after start",
        ),
        ("get", "/reports/shift", {"from": "2025-03-01T00:00Z"}, None, 422, "to"),
        (
            "get",
            "/reports/shift",
            {"from": "2025-03-01T00:00Z", "to": "2025-03-02T00:00Z", "format": "xml"},
            None,
            422,
            "format",
        ),
        ("get", "/approvals", {"active_at": "soon"}, None, 422, "active_at"),
    ],
)
def test_malformed_requests_get_4xx_with_a_reason(
    world: World, method: str, path: str, params: dict, body: object, status: int, reason: str
) -> None:
    r = world.client.request(method, path, params=params, json=body, headers=world.auth("admin"))
    assert r.status_code == status, r.text
    assert reason in r.text
    assert "Traceback" not in r.text


def test_invalid_json_body_is_a_422(world: World) -> None:
    headers = world.auth("admin") | {"Content-Type": "application/json"}
    r = world.client.post("/approvals", content=b"{not json", headers=headers)
    assert r.status_code == 422 and "json" in r.text.lower()


def test_unexpected_errors_are_logged_and_answered_generically(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret internals: password=hunter2")

    monkeypatch.setattr(world.store, "list_alerts", boom)
    with caplog.at_level(logging.ERROR, logger="service.api"):
        r = world.get("/alerts", "admin")
    assert r.status_code == 500 and r.json() == {"detail": "internal server error"}
    assert "hunter2" not in r.text and "Traceback" not in r.text
    assert any("hunter2" in (rec.exc_text or "") or rec.exc_info for rec in caplog.records)


def test_openapi_documents_routes_with_summaries_and_models(world: World) -> None:
    spec = world.get("/openapi.json", key=None).json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), f"{method.upper()} {path} has no summary"
    assert "AlertDetailOut" in spec["components"]["schemas"]
    assert {"HTTPBearer", "APIKeyHeader"} <= set(spec["components"]["securitySchemes"])


def test_healthz_reports_an_unreachable_database_without_a_traceback() -> None:
    store = AlertStore("postgresql+psycopg://postgres@127.0.0.1:1/nothing?connect_timeout=2")
    app = create_app(store, migrate=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/healthz")
    store.close()
    assert r.status_code == 503 and r.json() == {"status": "degraded", "database": "unreachable"}


def test_metrics_registry_guards_its_series() -> None:
    m = Metrics()
    with pytest.raises(ValueError, match="takes labels site, camera"):
        m.analysed_fps.set(5.0, camera="desk")
    with pytest.raises(TypeError, match="counter"):
        m.frames.set(3, site="s", camera="c")
    with pytest.raises(ValueError, match="only goes up"):
        m.frames.inc(-1, site="s", camera="c")
    assert m.gauge("postwatch_analysed_fps", "again") is m.analysed_fps  # same name: same series
    webhook_failures = m.counter("postwatch_webhook_failures_total", "Failed webhook posts.", ("site",))
    webhook_failures.inc(site="s")
    assert parse_prometheus(m.render())["postwatch_webhook_failures_total"] == [({"site": "s"}, 1.0)]
