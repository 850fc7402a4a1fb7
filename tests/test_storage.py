"""The alert store and its migrations, on SQLite and on the real PostgreSQL server.

Every test runs once per backend (the `db_url` fixture): a fresh SQLite file, and a
fresh schema on the PostgreSQL server of CI/development (skipped, with the reason, only
when that server cannot be reached).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from rules.engine import RuleEngine, ViolationEvent
from rules.violation import Violation
from service.db import current_revision, head_revision, make_engine, upgrade
from service.keys import authenticate, create_key, revoke_key
from service.models import Base
from service.store import (
    ALERT_CLOSED,
    ALERT_OPENED,
    ALERT_UPDATED,
    APPROVAL_CANCELLED,
    APPROVAL_CREATED,
    CAMERA_STATUS,
    AlertFilter,
    AlertStore,
    CameraRecorder,
    Conflict,
    NotFound,
    Scope,
    StoreEvent,
)
from vision.observation import read_jsonl

FIXTURES = Path(__file__).parent / "fixtures"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)


class Clock:
    """A wall clock the test moves by hand, so stored times are exact."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(db_url: str, clock: Clock) -> Iterator[AlertStore]:
    s = AlertStore(db_url, clock=clock)
    s.upgrade()
    yield s
    s.close()


def violation(clause: str = "d5.stance.01", track: int | None = 1, start: float = 10.0, **kw) -> Violation:
    kw.setdefault("confidence", 0.8)
    kw.setdefault("message", f"{clause} seen")
    return Violation(clause=clause, camera="cam0", track_id=track, start_s=start, **kw)


# -- migrations ----------------------------------------------------------------------------------


def test_a_database_of_the_first_release_upgrades_and_keeps_its_alerts(db_url: str) -> None:
    upgrade(db_url, revision="0001_initial")
    assert current_revision(db_url) == "0001_initial"
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO sites (id, name, created_at) VALUES ('s', 's', CURRENT_TIMESTAMP)")
            )
    finally:
        engine.dispose()
    store = AlertStore(db_url)
    try:
        store.upgrade()  # what the service does at every start
        assert current_revision(db_url) == head_revision()
        assert store.sites() == ["s"]
        report = store.save_report(
            "s", "cam0", datetime(2025, 3, 1, 9, tzinfo=timezone.utc), 5.0, {"notes": []}
        )
        assert store.camera_report(report.id) == report
    finally:
        store.close()


def test_migrations_upgrade_an_empty_database_to_the_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    assert current_revision(db_url) is None
    upgrade(db_url)
    assert current_revision(db_url) == head_revision() == "0002_camera_reports"
    upgrade(db_url)  # a second start changes nothing
    engine = make_engine(db_url)
    try:
        tables = set(inspect(engine).get_table_names())
        expected = {
            "sites",
            "cameras",
            "alerts",
            "approvals",
            "api_keys",
            "camera_reports",
            "alembic_version",
        }
        assert expected <= tables
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
        assert diff == [], f"migrations and models differ: {diff}"
    finally:
        engine.dispose()


def test_sqlite_connections_use_wal_and_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "sub" / "alerts.db")  # a plain path; the folder is created
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


# -- alerts --------------------------------------------------------------------------------------


def test_open_update_close_keep_stream_and_wall_times(store: AlertStore, clock: Clock) -> None:
    events: list[StoreEvent] = []
    store.subscribe(events.append)
    # The sustain elapsed at stream time 16 (wall T0), the behaviour began at 10: 6 s earlier.
    alert = store.open_alert(
        violation(details={"duration_s": 6.0}), "cam0", "shop", role="front_desk", t=16.0
    )
    assert alert.id >= 1 and alert.open
    assert alert.started_at == T0 - timedelta(seconds=6)
    assert alert.duration_s == pytest.approx(6.0)
    assert (alert.site, alert.camera, alert.role, alert.track_id) == ("shop", "cam0", "front_desk", 1)

    updated = store.update_alert(alert.id, violation(confidence=0.9, details={"frames": 3}), t=20.0)
    assert updated.duration_s == pytest.approx(10.0) and updated.confidence == pytest.approx(0.9)

    # Closed at stream 31 (wall T0 + 15 s); the behaviour ended at 30.
    closed = store.close_alert(alert.id, violation(end_s=30.0), t=31.0, at=T0 + timedelta(seconds=15))
    assert not closed.open and closed.end_s == 30.0
    assert closed.duration_s == pytest.approx(20.0)
    assert closed.ended_at == T0 + timedelta(seconds=14)
    assert [e.kind for e in events] == [ALERT_OPENED, ALERT_UPDATED, ALERT_CLOSED]
    assert events[-1].alert == closed and events[-1].site == "shop"

    store.close_alert(alert.id, violation(end_s=30.0), t=32.0)  # closing twice: no second event
    assert len(events) == 3
    assert store.get_alert(alert.id) == store.list_alerts()[0]


def test_numbers_are_sequential_and_details_are_plain_json(store: AlertStore) -> None:
    import numpy as np

    details = {"score": np.float32(0.5), "bad": float("nan"), "nested": {"n": np.int64(3)}, "tuple": (1, 2)}
    ids = [store.open_alert(violation(details=details), "cam0", "shop").id for _ in range(3)]
    assert ids == sorted(ids) and len(set(ids)) == 3
    stored = store.get_alert(ids[0])
    assert stored is not None
    assert stored.details == {"score": 0.5, "bad": None, "nested": {"n": 3}, "tuple": [1, 2]}


def test_recorder_stores_a_rule_engine_run_on_recorded_observations(store: AlertStore) -> None:
    """The worker path end to end without a model: recorded observations -> engine -> store."""
    observations = read_jsonl(str(FIXTURES / "corridor_call.observations.jsonl"))
    engine = RuleEngine(
        "cam0", overrides={"d1.floor.03": {"work_zone_sustain_s": 10.0}}, clauses=["d1.floor.03"]
    )
    recorder = CameraRecorder(store, "shop", "cam0", role="front_desk")
    kinds: list[str] = []
    store.subscribe(lambda e: kinds.append(e.kind), kinds=[ALERT_OPENED, ALERT_CLOSED])
    for obs in observations:
        at = T0 + timedelta(seconds=obs.t)
        recorder.handle(engine.update(obs), at=at)
        recorder.refresh(engine.violations, obs.t, at=at)
    recorder.handle(engine.finish(), at=T0 + timedelta(seconds=observations[-1].t))

    calls = [v for v in engine.violations if v.clause == "d1.floor.03"]
    stored = store.list_alerts(AlertFilter(clauses=["d1.floor.03"]))
    assert len(calls) == len(stored) == 1
    v, a = calls[0], stored[0]
    assert (a.start_s, a.end_s, a.track_id, a.role) == (v.start_s, v.end_s, v.track_id, "front_desk")
    assert a.duration_s == pytest.approx(v.end_s - v.start_s)
    assert a.started_at == T0 + timedelta(seconds=v.start_s)
    assert a.message == v.message and "d1.floor.03" in a.message
    assert kinds == [ALERT_OPENED, ALERT_CLOSED]


def test_recorder_opens_a_violation_first_seen_closed(store: AlertStore) -> None:
    recorder = CameraRecorder(store, "shop", "cam0")
    [alert] = recorder.handle([ViolationEvent("closed", violation(end_s=14.0), t=15.0, index=0)], at=T0)
    assert not alert.open and alert.duration_s == pytest.approx(4.0)
    assert alert.started_at == T0 - timedelta(seconds=5) and alert.ended_at == T0 - timedelta(seconds=1)


def test_a_failing_subscriber_neither_undoes_the_write_nor_stops_others(store: AlertStore) -> None:
    seen: list[str] = []

    def broken(_event: StoreEvent) -> None:
        raise RuntimeError("delivery down")

    store.subscribe(broken)
    unsubscribe = store.subscribe(lambda e: seen.append(e.kind))
    alert = store.open_alert(violation(), "cam0", "shop")
    assert seen == [ALERT_OPENED] and store.get_alert(alert.id) is not None
    unsubscribe()
    store.close_alert(alert.id, violation(end_s=12.0))
    assert seen == [ALERT_OPENED]
    with pytest.raises(ValueError, match="unknown event kinds"):
        store.subscribe(print, kinds=["alert.exploded"])


def test_a_restarted_worker_closes_what_its_predecessor_left_open(store: AlertStore, clock: Clock) -> None:
    store.open_alert(violation(details={"duration_s": 3.0}), "cam0", "shop")
    store.open_alert(violation(track=2), "cam1", "shop")
    clock.advance(60)
    assert store.close_open_alerts("shop", "cam0") == 1
    assert store.list_alerts(AlertFilter(open=True, cameras=["cam0"])) == []
    assert len(store.list_alerts(AlertFilter(open=True))) == 1


def test_review_state_and_scope_in_the_store(store: AlertStore) -> None:
    a = store.open_alert(violation("d11.stance.01"), "gate", "shopA")
    b = store.open_alert(violation("d5.stance.01"), "desk", "shopB")
    security_a = Scope(sites=frozenset({"shopA"}), clause_prefixes=("d11.",))
    assert [x.id for x in store.list_alerts(scope=security_a)] == [a.id]
    assert store.get_alert(b.id, security_a) is None
    with pytest.raises(NotFound):
        store.acknowledge(b.id, "guard", scope=security_a)
    acked = store.acknowledge(a.id, "guard", "spoken to", scope=security_a)
    assert acked.acknowledged and acked.ack is not None and acked.ack.comment == "spoken to"
    with pytest.raises(Conflict):
        store.acknowledge(a.id, "someone else")
    flagged = store.mark_false_alarm(b.id, "mgr", "a reflection")
    assert flagged.false_alarm and flagged.false_alarm_review.by == "mgr"
    assert not store.mark_false_alarm(b.id, "mgr", value=False).false_alarm
    with pytest.raises(NotFound):
        store.acknowledge(9999, "x")


def test_concurrent_workers_and_reviewers_do_not_collide(store: AlertStore) -> None:
    """Several camera workers and a reviewer writing at once: no 'database is locked', no lost rows."""
    errors: list[BaseException] = []

    def worker(camera: str) -> None:
        try:
            for i in range(15):
                alert = store.open_alert(violation(track=i), camera, "shop")
                store.set_camera_status(
                    "shop", camera, connected=True, analysed_fps=5.0, last_frame_t=float(i)
                )
                store.acknowledge(alert.id, "reviewer")
                store.close_alert(alert.id, violation(track=i, end_s=12.0))
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"cam{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    alerts = store.list_alerts(limit=1000)
    assert len(alerts) == 60 and all(a.acknowledged and not a.open for a in alerts)


# -- cameras, approvals --------------------------------------------------------------------------


def test_camera_status_is_stored_and_announced_only_on_change(store: AlertStore) -> None:
    events: list[StoreEvent] = []
    store.subscribe(events.append, kinds=[CAMERA_STATUS])
    store.set_camera_status("shop", "cam0", connected=True, analysed_fps=4.8, last_frame_t=12.5)
    store.set_camera_status("shop", "cam0", analysed_fps=5.0, last_frame_t=13.0)
    store.set_camera_status("shop", "cam0", connected=False, error="rtsp timeout")
    [cam] = store.cameras()
    assert (cam.connected, cam.analysed_fps, cam.last_frame_t, cam.last_error) == (
        False,
        5.0,
        13.0,
        "rtsp timeout",
    )
    assert cam.last_frame_at == T0
    assert [e.camera.connected for e in events] == [True, False]
    store.set_camera_status("shop", "cam0", connected=True, clear_error=True)
    assert store.cameras()[0].last_error is None


def test_sync_site_registers_cameras_with_their_roles(store: AlertStore) -> None:
    from calibration.site import Site

    site = Site.model_validate(
        {
            "name": "shop",
            "cameras": [
                {
                    "id": "desk",
                    "source": "x.mp4",
                    "zones": [
                        {
                            "name": "counter",
                            "kind": "post",
                            "role": "cashier",
                            "polygon": [[0, 0], [9, 0], [9, 9]],
                        }
                    ],
                },
                {"id": "hall", "source": "y.mp4"},
            ],
        }
    )
    store.sync_site(site)
    store.sync_site(site)  # idempotent
    assert [(c.id, c.role) for c in store.cameras()] == [("desk", "cashier"), ("hall", None)]
    alert = store.open_alert(violation(), site.camera("desk"), site)
    assert alert.role == "cashier"


def test_approvals_are_stored_queried_and_announced(store: AlertStore, clock: Clock) -> None:
    events: list[StoreEvent] = []
    store.subscribe(events.append, kinds=[APPROVAL_CREATED, APPROVAL_CANCELLED])
    start, end = T0 + timedelta(minutes=5), T0 + timedelta(minutes=20)
    approval = store.add_approval("shop", "desk", "counter", start, end, "bank run", created_by="mgr")
    assert store.is_approved("shop", "desk", "counter", T0 + timedelta(minutes=10))
    assert not store.is_approved("shop", "desk", "counter", T0)
    assert not store.is_approved("shop", "desk", "door", T0 + timedelta(minutes=10))
    site_approval = approval.to_site_approval()
    assert (site_approval.camera, site_approval.post, site_approval.start) == ("desk", "counter", start)

    cancelled = store.cancel_approval(approval.id, by="mgr")
    store.cancel_approval(approval.id, by="mgr")  # idempotent, announced once
    assert cancelled.cancelled and cancelled.cancelled_by == "mgr"
    assert not store.is_approved("shop", "desk", "counter", T0 + timedelta(minutes=10))
    assert store.approvals() == [] and len(store.approvals(include_cancelled=True)) == 1
    assert [(e.kind, e.approval.id) for e in events] == [
        (APPROVAL_CREATED, approval.id),
        (APPROVAL_CANCELLED, approval.id),
    ]
    with pytest.raises(ValueError, match="end must be after start"):
        store.add_approval("shop", "desk", "counter", end, start)


# -- keys, reports ------------------------------------------------------------------------------


def test_keys_are_stored_hashed_and_checked(store: AlertStore, db_url: str) -> None:
    plain = create_key(store, "manager", ["shopA"], cameras=["desk"], name="Ms Li")
    key_id, secret = plain.split("_", 2)[1:]
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM api_keys")).all()
    finally:
        engine.dispose()
    dump = repr(rows)
    assert len(rows) == 1 and key_id in dump
    assert secret not in dump and plain not in dump
    found = authenticate(store, plain)
    assert found is not None and (found.role, found.sites, found.cameras, found.name) == (
        "manager",
        ("shopA",),
        ("desk",),
        "Ms Li",
    )
    assert authenticate(store, plain[:-1] + ("A" if plain[-1] != "A" else "B")) is None
    assert authenticate(store, "pw_nothing") is None
    assert revoke_key(store, plain) and authenticate(store, plain) is None
    with pytest.raises(ValueError, match="unknown role"):
        create_key(store, "janitor", ["shopA"])
    with pytest.raises(ValueError, match="at least one site"):
        create_key(store, "admin", [])


def test_shift_report_sums_per_clause_and_per_track(store: AlertStore, clock: Clock) -> None:
    def add(clause: str, track: int | None, start: float, end: float | None, camera: str = "desk") -> int:
        v = violation(clause, track, start, end_s=end, details={"duration_s": 7.0})
        return store.open_alert(v, camera, "shop", t=start + 7.0, at=T0 + timedelta(seconds=start + 7.0)).id

    add("d5.stance.01", 1, 0.0, 30.0)
    add("d5.stance.01", 1, 100.0, 110.0)
    add("d5.stance.01", 2, 200.0, 205.0)
    add("d1.floor.03", 1, 300.0, None)  # open: 7 s so far
    fa = add("d1.floor.03", 2, 400.0, 450.0)
    store.mark_false_alarm(fa, "mgr")
    add("d5.stance.01", 1, 100000.0, 100010.0)  # outside the window
    report = store.shift_report(T0, T0 + timedelta(hours=8))
    assert (
        report.total.count == 4 and report.total.duration_s == pytest.approx(52.0) and report.total.open == 1
    )
    assert list(report.clauses) == ["d5.stance.01", "d1.floor.03"]
    assert report.clauses["d5.stance.01"].count == 3
    assert report.clauses["d5.stance.01"].duration_s == pytest.approx(45.0)
    assert report.tracks[("shop", "desk", 1)]["d5.stance.01"].duration_s == pytest.approx(40.0)
    assert report.track_total(("shop", "desk", 1)).count == 3
    with_fa = store.shift_report(T0, T0 + timedelta(hours=8), include_false_alarms=True)
    assert with_fa.clauses["d1.floor.03"].count == 2
    assert math.isclose(with_fa.total.duration_s, 102.0)
