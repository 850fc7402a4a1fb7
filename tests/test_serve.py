"""`postwatch serve` end to end: cameras in, alerts out through SSE, webhooks, MQTT and the API.

* The end-to-end test runs the real detector and pose model on the chair clip of
  ../shared/media, looped as a stream and read as fast as inference allows (files are
  paced at real time only with `realtime=True`, the default of `serve`): the post is
  left at ~9.9 s and with `empty_s: 0.5` the abandonment alert (d1.reception.02) opens at
  ~10.4 s of stream time. It must arrive by SSE, by a signed webhook and on MQTT, and its
  clip (2 s before + 2 s after) must download through the API and decode as H.264.
* The other tests replay the pipeline's recorded observations of the same clip
  (tests/fixtures/chair_clip.observations.jsonl, matched by frame index) instead of running
  the models: frames still come from the real file and go through the real rules, store,
  clips and API, at a fraction of the cost. The restart test kills a real `serve` process
  (SIGKILL) mid-alert, mid-clip, and starts again on the same database.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from conftest import media_path, weights
from fastapi.testclient import TestClient
from test_delivery import MqttCollector, SSEReader, WebhookReceiver, clear_retained, mqtt_available

from calibration.site import Camera, Site
from rules.engine import ViolationEvent
from rules.violation import Violation
from service.clips import PART
from service.delivery import WebhookTarget
from service.keys import authenticate
from service.serve import BackgroundServer, build_service, create_key_command
from service.store import AlertFilter, AlertStore
from service.workers import RulesRecorder, WorkerOptions, default_opener
from vision.observation import FrameObservation, read_jsonl
from vision.sources import Frame, FrameSource, SourceInfo

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
FIXTURE = TESTS / "fixtures" / "chair_clip.observations.jsonl"
CHAIR = "A_effiscan_person_chair_sit_stand_leave_upright.mp4"
ABANDONED = "d1.reception.02"


# -- stand-ins for the models and for broken cameras ---------------------------------------------


class ReplayAnalysers:
    """The models' recorded output for the chair clip, per source frame index (tracker state and
    all); a drop-in `AnalyserFactory` for `build_service(analysers=...)`."""

    def __init__(self, path: Path = FIXTURE) -> None:
        self.by_index = {o.index: o for o in read_jsonl(str(path))}
        self.indices = np.array(sorted(self.by_index))

    def __call__(self, camera: Camera) -> Any:
        def analyse(frame: Frame) -> FrameObservation:
            nearest = int(self.indices[np.abs(self.indices - frame.index).argmin()])
            obs = copy.deepcopy(self.by_index[nearest])
            obs.camera, obs.t, obs.index = frame.camera, frame.t, frame.index
            return obs

        return analyse


class StallingSource(FrameSource):
    """A real source whose stream stalls after its last frame (until closed), like a camera that
    stops sending: alerts open at the end stay open."""

    kind = "stream"

    def __init__(self, inner: FrameSource) -> None:
        super().__init__(inner.spec, inner.camera, inner.fps)
        self.inner = inner
        self._info = inner.info

    def _frames(self) -> Iterator[Frame]:
        yield from self.inner
        self._stop.wait()

    def _release(self) -> None:
        self.inner.close()


def stalling_opener(camera: Camera) -> FrameSource:
    return StallingSource(default_opener()(camera))


class HungSource(FrameSource):
    """Delivers one frame, then hangs in a read that ignores close() (a stuck driver)."""

    kind = "stream"
    release = threading.Event()  # set at the end of the test so the thread can exit

    def __init__(self, camera: str) -> None:
        super().__init__("rtsp://hung.invalid/live", camera, 5.0)
        self._info = SourceInfo("stream", self.spec, 480, 848, None, None, None)

    def _frames(self) -> Iterator[Frame]:
        yield Frame(self.camera, 0.0, 0, np.zeros((848, 480, 3), np.uint8))
        self.release.wait()


def write_site(folder: Path, name: str, cameras: dict[str, str]) -> Path:
    """A site file like examples/chair_clip.yaml (its post zone) with the given camera sources."""
    example = yaml.safe_load((ROOT / "examples" / "chair_clip.yaml").read_text(encoding="utf-8"))
    zones = example["cameras"][0]["zones"]
    data = {
        "name": name,
        "cameras": [
            {"id": cid, "source": src, "fps": 5, "zones": copy.deepcopy(zones)}
            for cid, src in cameras.items()
        ],
        "clauses": {ABANDONED: {"empty_s": 0.5}},
    }
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_until(predicate: Any, timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def decode(data: bytes, folder: Path) -> tuple[str, int, float]:
    import av

    path = folder / f"download-{uuid.uuid4().hex[:6]}.mp4"
    path.write_bytes(data)
    with av.open(str(path)) as container:
        codec = container.streams.video[0].codec_context.name
        frames = sum(1 for _ in container.decode(video=0))
        return codec, frames, float(container.duration or 0) / 1e6


# -- end to end, with the models ---------------------------------------------------------------------


@pytest.mark.media
@pytest.mark.model
def test_the_chair_clip_alert_reaches_sse_webhook_mqtt_and_its_clip_plays(tmp_path: Path) -> None:
    chair = media_path(CHAIR)
    if not mqtt_available():
        pytest.skip("no MQTT broker at 127.0.0.1:1883")
    name, prefix, secret = f"e2e-{uuid.uuid4().hex[:6]}", f"pwtest-{uuid.uuid4().hex[:8]}", "hook-secret"
    site_path = write_site(tmp_path, name, {"chair": str(chair), "missing": str(tmp_path / "nowhere.mp4")})
    db = f"sqlite:///{tmp_path / 'site.db'}"
    receiver, collector = WebhookReceiver(secret), MqttCollector(f"{prefix}/#")
    service = build_service(
        site_path, db=db, out_dir=tmp_path / "media", weights=weights(), loop_files=True, realtime=False,
        clip_before_s=2.0, clip_after_s=2.0, webhooks=[WebhookTarget(receiver.url, secret)],
        mqtt_url=f"mqtt://127.0.0.1:1883/{prefix}", keepalive_s=1.0,
    )  # fmt: skip
    key = create_key_command(db, "manager", [name])
    try:
        with BackgroundServer(service.app, service.hub) as server:
            sse = SSEReader(server.url + "/events", key)
            service.start()
            try:
                opened = sse.wait_for(
                    lambda e: e["event"] == "alert.opened" and e["data"]["alert"]["clause"] == ABANDONED, 90
                )
                alert = opened["data"]["alert"]
                assert alert["camera"] == "chair" and alert["track_id"] is None
                assert 9.3 <= alert["start_s"] <= 10.5  # as `analyze` finds it

                hook = receiver.wait_for(
                    lambda r: r["event"] == "alert.opened" and r["body"]["alert"]["id"] == alert["id"]
                )
                assert hook["valid"] and hook["body"]["id"] == int(opened["id"])
                topic, payload, _ = collector.wait_for(lambda t, p, r: t.endswith(f"/chair/{ABANDONED}"))
                assert topic == f"{prefix}/{name}/chair/{ABANDONED}" and payload["alert"]["id"] == alert["id"]

                media = sse.wait_for(
                    lambda e: e["event"] == "alert.media" and e["data"]["alert"]["clip_url"] is not None, 60
                )
                clip = httpx.get(
                    server.url + media["data"]["alert"]["clip_url"], headers=auth(key), timeout=10
                )
                assert clip.status_code == 200
                codec, frames, duration = decode(clip.content, tmp_path)
                assert codec == "h264"  # plays in Chromium
                assert duration == pytest.approx(4.0, abs=0.5) and frames >= 18  # 2 s before + 2 s after
                snapshot = httpx.get(
                    f"{server.url}/alerts/{alert['id']}/snapshot", headers=auth(key), timeout=10
                )
                assert snapshot.status_code == 200 and snapshot.content[:2] == b"\xff\xd8"

                cameras = {
                    c["id"]: c
                    for c in httpx.get(server.url + "/cameras", headers=auth(key), timeout=10).json()
                }
                assert cameras["chair"]["connected"] and cameras["chair"]["analysed_fps"] > 0
                assert not cameras["missing"]["connected"]
                assert "no such file" in cameras["missing"]["last_error"]
                metrics = httpx.get(server.url + "/metrics", headers=auth(key), timeout=10).text
                assert f'postwatch_frames_total{{site="{name}",camera="chair"}}' in metrics
                assert (
                    f'postwatch_alerts_opened_total{{site="{name}",camera="chair",clause="{ABANDONED}"}} 1'
                    in (metrics)
                )
            finally:
                service.stop()
        stored = AlertStore(db)
        closed = stored.get_alert(alert["id"])
        stored.close()
        assert closed is not None and not closed.open and closed.end_s is not None
        assert closed.ended_at is not None and closed.ended_at >= closed.started_at
    finally:
        receiver.close()
        collector.close()
        clear_retained(prefix)


# -- restart without loss ----------------------------------------------------------------------------


SERVE_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    import test_serve as ts
    from service.serve import build_service
    from service.workers import WorkerOptions

    service = build_service(
        {site!r}, db={db!r}, out_dir={media!r}, realtime=False, clip_before_s=2.0, clip_after_s=600.0,
        analysers=ts.ReplayAnalysers(), opener=ts.stalling_opener,
        worker_options=WorkerOptions(status_every_s=0.2, refresh_every_s=0.2, report_every_s=0.2),
    )
    service.start()
    time.sleep(300)
    """
)


@pytest.mark.media
def test_a_killed_service_loses_no_alert_and_registers_no_half_written_clip(
    db_url: str, tmp_path: Path
) -> None:
    chair = media_path(CHAIR)
    site_path = write_site(tmp_path, "restart", {"chair": str(chair)})
    media = tmp_path / "media"
    script = tmp_path / "serve.py"
    script.write_text(SERVE_SCRIPT.format(tests=str(TESTS), site=str(site_path), db=db_url, media=str(media)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = tmp_path / "serve.log"  # a file, not a pipe: a chatty child must never block on it
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=env, stderr=sink)
    store = AlertStore(db_url)
    try:

        def mid_alert() -> Any:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                found = store.list_alerts(AlertFilter(clauses=[ABANDONED], open=True))
                status = store.camera("restart", "chair")
            except Exception:  # the child may still be migrating
                return None
            parts = list(media.rglob(f"*{PART}.mp4"))
            # mid-clip (its .part file is being written) and its status written after the last frame
            if found and parts and status and status.last_frame_t and status.last_frame_t >= 10.6:
                return found[0], parts
            return None

        alert, parts = wait_until(mid_alert, 60, "an open alert with its clip being written")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_at = datetime.now(timezone.utc)
        assert alert.clip is None and all(p.exists() for p in parts)
        last_seen = store.camera("restart", "chair").last_frame_at  # type: ignore[union-attr]
        assert last_seen is not None
        # The run's report was saved as it went: the kill lost at most 0.2 s of it, the absence kept.
        kept = store.camera_reports(sites=["restart"])
        assert len(kept) == 1 and not kept[0].final
        assert store.camera_report(kept[0].id).payload["absences"]  # type: ignore[union-attr]

        service = build_service(
            site_path, db=db_url, out_dir=media, realtime=False, analysers=ReplayAnalysers(), clip_after_s=1.0
        )
        assert not list(media.rglob(f"*{PART}*"))  # the half-written clip is gone before anything runs
        service.start()
        try:
            again = wait_until(lambda: (a := store.get_alert(alert.id)) and not a.open and a, 10, "the close")
        finally:
            service.stop()
        assert again.clause == ABANDONED and again.start_s == alert.start_s  # not lost
        old = store.camera_report(kept[0].id)  # closed by the new run, which started its own
        assert old is not None and old.final and old.payload["absences"]
        assert len(store.camera_reports(sites=["restart"])) == 2
        assert again.clip is None  # no half-written clip registered
        assert again.end_s is not None and again.end_s >= again.start_s
        assert again.ended_at == last_seen and again.started_at <= again.ended_at <= killed_at
        for stored in store.list_alerts(limit=100):  # any clip registered is a complete, playable file
            if stored.clip:
                assert decode((media / stored.clip).read_bytes(), tmp_path)[1] > 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        store.close()


# -- failing cameras, control routes ----------------------------------------------------------------


@pytest.mark.media
def test_failing_cameras_show_their_error_while_the_others_work(tmp_path: Path) -> None:
    chair = media_path(CHAIR)
    site_path = write_site(
        tmp_path,
        "shop",
        {
            "chair": str(chair),
            "missing": str(tmp_path / "nowhere.mp4"),
            "badurl": "rtsp://127.0.0.1:9/live",  # nothing listens on the discard port
            "raises": "raises.mp4",
            "hung": "hung.mp4",
        },
    )
    db = f"sqlite:///{tmp_path / 'site.db'}"
    real = default_opener()

    def opener(camera: Camera) -> FrameSource:
        if camera.id == "raises":
            raise RuntimeError("driver crashed")
        return HungSource(camera.id) if camera.id == "hung" else real(camera)

    options = WorkerOptions(stale_after_s=1.0, status_every_s=0.2, retry_max_s=1.0)
    service = build_service(
        site_path, db=db, out_dir=tmp_path / "media", loop_files=True, realtime=False,
        analysers=ReplayAnalysers(), opener=opener, worker_options=options,
    )  # fmt: skip
    keys = {
        "manager": create_key_command(db, "manager", ["shop"]),
        "trainer": create_key_command(db, "trainer", ["shop"]),
        "elsewhere": create_key_command(db, "manager", ["other-shop"]),
    }
    client = TestClient(service.app)
    service.start()
    try:

        def cameras() -> dict[str, dict[str, Any]]:
            response = client.get("/cameras", headers=auth(keys["manager"]))
            assert response.status_code == 200
            return {c["id"]: c for c in response.json()}

        def settled() -> Any:
            c = cameras()
            ok = (
                c["chair"]["connected"]
                and (c["chair"]["analysed_fps"] or 0) > 0
                and all(not c[k]["connected"] and c[k]["last_error"] for k in ("missing", "badurl", "raises"))
                and not c["hung"]["connected"]
                and "no frame" in (c["hung"]["last_error"] or "")
            )
            return c if ok else None

        c = wait_until(settled, 15, "every camera's status")
        assert "no such file" in c["missing"]["last_error"]
        assert "Cannot open stream" in c["badurl"]["last_error"]
        assert c["raises"]["last_error"] == "RuntimeError: driver crashed"
        chair = service.pool.workers["chair"]
        frames = chair.frames
        wait_until(lambda: chair.frames > frames + 10, 10, "the chair camera to keep analysing")

        # Start/stop: admin and manager keys of the site only.
        assert client.post("/cameras/chair/stop", headers=auth(keys["trainer"])).status_code == 403
        assert client.post("/cameras/chair/stop", headers=auth(keys["elsewhere"])).status_code == 404
        assert client.post("/cameras/nope/stop", headers=auth(keys["manager"])).status_code == 404
        assert client.post("/cameras/chair/stop").status_code == 401
        stopped = client.post("/cameras/chair/stop", headers=auth(keys["manager"]))
        assert stopped.status_code == 200
        body = stopped.json()
        assert body["running"] is False and body["camera"]["connected"] is False
        assert body["camera"]["last_error"].startswith("stopped by")
        frames = chair.frames
        time.sleep(0.5)
        assert chair.frames == frames
        started = client.post("/cameras/chair/start", headers=auth(keys["manager"]))
        assert started.status_code == 200 and started.json()["running"] is True
        wait_until(lambda: cameras()["chair"]["connected"], 10, "the chair camera to reconnect")
    finally:
        began = time.monotonic()
        service.stop()
        HungSource.release.set()
    assert time.monotonic() - began < 8  # a hung camera does not hold the shutdown


@pytest.mark.media
def test_files_are_paced_at_real_time_by_default(tmp_path: Path) -> None:
    """`serve` reads a file like a camera: stream time advances with the wall clock."""
    site_path = write_site(tmp_path, "paced", {"chair": str(media_path(CHAIR))})
    service = build_service(
        site_path,
        db=f"sqlite:///{tmp_path / 'site.db'}",
        out_dir=tmp_path / "media",
        analysers=ReplayAnalysers(),
    )
    worker = service.pool.workers["chair"]
    with service:
        wait_until(lambda: worker.last_t is not None, 10, "the first frame")
        began, t0 = time.monotonic(), worker.last_t
        time.sleep(2.0)
        advanced, elapsed = (worker.last_t or 0.0) - (t0 or 0.0), time.monotonic() - began
    assert advanced == pytest.approx(elapsed, abs=0.5)


@pytest.mark.media
def test_leave_approved_through_the_api_reaches_the_running_rules(tmp_path: Path) -> None:
    """An approval stored while the service runs covers the empty post: no abandonment alert.
    (Without it the same replay raises one: see the restart test.)"""
    site_path = write_site(tmp_path, "approved", {"chair": str(media_path(CHAIR))})
    db = f"sqlite:///{tmp_path / 'site.db'}"
    connect = threading.Event()
    real = default_opener()

    def slow_camera(camera: Camera) -> FrameSource:
        connect.wait(10)  # the camera connects only after the approval is in
        return real(camera)

    service = build_service(
        site_path,
        db=db,
        out_dir=tmp_path / "media",
        realtime=False,
        analysers=ReplayAnalysers(),
        opener=slow_camera,
    )
    key = create_key_command(db, "manager", ["approved"])
    client = TestClient(service.app)
    with service:
        now = datetime.now(timezone.utc)
        body = {"camera": "chair", "post": "desk-post", "start": (now - timedelta(minutes=1)).isoformat(),
                "end": (now + timedelta(hours=1)).isoformat(), "reason": "bank run"}  # fmt: skip
        assert client.post("/approvals", json=body, headers=auth(key)).status_code == 201
        connect.set()
        worker = service.pool.workers["chair"]
        wait_until(lambda: not worker.running, 30, "the end of the file")
        # The run's report, saved when the file ended, shows the absence as approved leave.
        listed = client.get("/reports/cameras", headers=auth(key)).json()
        assert [(r["camera"], r["final"]) for r in listed] == [("chair", True)]
        report = client.get(f"/reports/cameras/{listed[0]['id']}", headers=auth(key)).json()["report"]
        absences = [a for a in report["absences"] if a["absence_s"] > 0.5]
        assert absences and all(a["approved"] for a in absences), report["absences"]
        assert listed[0]["stream_t"] > 9.0
    store = AlertStore(db)
    try:
        assert worker.frames >= 50
        assert store.list_alerts(AlertFilter(clauses=[ABANDONED])) == []
    finally:
        store.close()


@pytest.mark.media
def test_a_guard_posts_run_saves_its_shift_audit_for_the_security_team(tmp_path: Path) -> None:
    """The chair clip's post made a fixed guard post: the run's report carries the shift audit
    (minutes on post, absences), and its printable page is served to a security key."""
    site_path = write_site(tmp_path, "gate", {"chair": str(media_path(CHAIR))})
    data = yaml.safe_load(site_path.read_text(encoding="utf-8"))
    data["cameras"][0]["zones"][0]["role"] = "guard_fixed"
    site_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'site.db'}"
    service = build_service(
        site_path, db=db, out_dir=tmp_path / "media", realtime=False, analysers=ReplayAnalysers()
    )
    key = create_key_command(db, "security", ["gate"])
    client = TestClient(service.app)
    with service:
        worker = service.pool.workers["chair"]
        wait_until(lambda: not worker.running, 30, "the end of the file")
        listed = client.get("/reports/cameras", headers=auth(key)).json()
        assert len(listed) == 1 and listed[0]["final"] and listed[0]["has_audit"], listed
        report = client.get(f"/reports/cameras/{listed[0]['id']}", headers=auth(key)).json()["report"]
        audit = report["audit"]
        assert audit["camera"] == "chair" and audit["guards"], audit
        assert report["absences"] and report["absences"][-1]["start_s"] > 9.0  # he left at ~9.9 s
        page = client.get(f"/reports/cameras/{listed[0]['id']}/audit", headers=auth(key))
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "Guard shift audit" in page.text and "chair" in page.text
        # The run's alert snapshots go on the final page (those written by the time it ends).
        assert service.clips.wait_idle(30)
        shots = worker._audit_snapshots()
        assert any(caption.startswith(f"{ABANDONED} the post") for caption in shots), shots
        assert all(path.is_file() and path.suffix == ".jpg" for path in shots.values())


# -- small parts -------------------------------------------------------------------------------------


def test_keys_create_migrates_a_new_database_and_returns_a_working_key(tmp_path: Path) -> None:
    db = str(tmp_path / "fresh" / "keys.db")  # a plain path means a SQLite file
    key = create_key_command(db, "manager", ["shop"], ["desk"])
    store = AlertStore(db)
    try:
        found = authenticate(store, key)
        assert found is not None and found.role == "manager"
        assert found.sites == ("shop",) and found.cameras == ("desk",)
    finally:
        store.close()
    with pytest.raises(ValueError, match="unknown role"):
        create_key_command(db, "janitor", ["shop"])


def test_events_of_engines_and_zones_with_the_same_index_become_two_alerts(db_url: str) -> None:
    """CameraRules merges events of each role's engine and of the zone monitor, whose
    indices both start at 0; each must still map to its own stored alert."""
    store = AlertStore(db_url)
    store.upgrade()
    site = Site.model_validate(
        {"name": "shop", "cameras": [{"id": "desk", "source": "x.mp4", "zones": [
            {"name": "post", "kind": "post", "role": "front_desk", "polygon": [[0, 0], [9, 0], [9, 9]]}]}]}
    )  # fmt: skip
    person = Violation("d5.stance.01", "desk", 3, 1.0)
    empty = Violation(ABANDONED, "desk", None, 2.0)
    engine, zones = SimpleNamespace(violations=[person]), SimpleNamespace(violations=[empty])
    recorder = RulesRecorder(
        store,
        site,
        site.cameras[0],
        SimpleNamespace(engines={"front_desk": engine}, zones=zones, customers=None),
    )  # type: ignore[arg-type]
    at = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
    stored = recorder.handle(
        [ViolationEvent("opened", person, 4.0, 0), ViolationEvent("opened", empty, 4.0, 0)], at
    )
    assert [a.clause for _, a in stored] == ["d5.stance.01", ABANDONED]
    assert stored[0][1].id != stored[1][1].id
    closed_empty = Violation(ABANDONED, "desk", None, 2.0, end_s=6.0)
    zones.violations = [closed_empty]
    ((_, closed),) = recorder.handle([ViolationEvent("closed", closed_empty, 6.0, 0)], at)
    assert closed.id == stored[1][1].id and not closed.open
    assert store.get_alert(stored[0][1].id).open  # type: ignore[union-attr]  # the person's alert untouched
    store.close()


class WatchedAnalysers(ReplayAnalysers):
    """ReplayAnalysers that note which thread analysed each camera's frames, in which order, and
    whether a camera was ever analysed on two threads at once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, list[tuple[int, str]]] = {}
        self.active: set[str] = set()
        self.overlaps = 0
        self._lock = threading.Lock()

    def __call__(self, camera: Camera) -> Any:
        replay = super().__call__(camera)

        def analyse(frame: Frame) -> FrameObservation:
            with self._lock:
                self.overlaps += camera.id in self.active
                self.active.add(camera.id)
            time.sleep(0.005)  # long enough for the other thread to try the same camera
            try:
                obs = replay(frame)
            finally:
                with self._lock:
                    self.active.discard(camera.id)
                    self.seen.setdefault(camera.id, []).append((frame.index, threading.current_thread().name))
            return obs

        return analyse


@pytest.mark.media
def test_two_inference_threads_share_the_cameras_and_keep_each_cameras_frames_in_order(
    tmp_path: Path,
) -> None:
    """`inference_threads=2`: both threads work, a camera is never analysed on two threads at
    once, its frames arrive in order, and each camera raises its abandonment alert as with one."""
    chair = str(media_path(CHAIR))
    site_path = write_site(tmp_path, "two", {"a": chair, "b": chair, "c": chair})
    analysers = WatchedAnalysers()
    service = build_service(
        site_path, db=f"sqlite:///{tmp_path / 'site.db'}", out_dir=tmp_path / "media", realtime=False,
        analysers=analysers, worker_options=WorkerOptions(inference_threads=2, status_every_s=0.05),
    )  # fmt: skip
    with service:
        workers = service.pool.workers.values()
        # `ended` stays true once reported: the monitor (every 0.05 s here) once reset it, and a
        # camera that ended first was back to false before the last one ended.
        wait_until(lambda: all(w.ended for w in workers), 120, "every camera to reach the end of its file")
        alerts = service.store.list_alerts(AlertFilter(sites=["two"], clauses=[ABANDONED]))
    assert analysers.overlaps == 0
    threads = {name for seen in analysers.seen.values() for _, name in seen}
    assert threads == {"inference-0", "inference-1"}
    for camera, seen in analysers.seen.items():
        indices = [i for i, _ in seen]
        assert indices == sorted(indices) and len(set(indices)) == len(indices), camera
        assert len(indices) > 50, camera  # the whole 5-fps clip
    assert sorted(a.camera for a in alerts) == ["a", "b", "c"]


@pytest.mark.media
def test_model_analysers_load_one_model_set_per_inference_thread() -> None:
    """Each thread that analyses gets its own detector and pose graph (neither is thread-safe);
    a thread keeps its set, and the set loaded at start is the first thread's."""
    from service.workers import ModelAnalysers

    analysers = ModelAnalysers(weights())
    got: dict[str, list[Any]] = {}

    def use(name: str) -> None:
        got[name] = [analysers.models(), analysers.models()]

    threads = [threading.Thread(target=use, args=(n,)) for n in ("t0", "t1")]
    for t in threads:
        t.start()
        t.join()
    assert got["t0"][0] is got["t0"][1] and got["t1"][0] is got["t1"][1]
    assert got["t0"][0] == (analysers.detector, analysers.pose)
    assert got["t1"][0][0] is not analysers.detector and got["t1"][0][1] is not analysers.pose
    assert analysers.sets == 2
    camera = analysers(Camera(id="c", source="demo"))
    camera.waiting = 3  # type: ignore[attr-defined]  # what the worker sets before each frame
    assert camera.pipeline.waiting == 3  # type: ignore[attr-defined]


class PairingAnalysers(ReplayAnalysers):
    """ReplayAnalysers that take part in paired detection: every frame needs the detector, the
    pool's `detect_many` calls are recorded, and so is whether each frame came with its boxes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[tuple[int, int]]] = []  # the image shapes of each detect_many call
        self.given: list[bool] = []

    def __call__(self, camera: Camera) -> Any:
        replay = super().__call__(camera)
        outer = self

        class Analyser:
            def __call__(self, frame: Frame, boxes: Any = None) -> FrameObservation:
                outer.given.append(boxes is not None)
                return replay(frame)

            def needs_detection(self, frame: Frame) -> bool:
                return True

            def detect_many(self, images: list[np.ndarray]) -> list[Any]:
                from vision.detect import Boxes

                outer.calls.append([im.shape[:2] for im in images])
                return [Boxes.empty() for _ in images]

        return Analyser()


@pytest.mark.media
def test_paired_detection_detects_two_cameras_in_one_call_and_hands_each_its_boxes(tmp_path: Path) -> None:
    chair = str(media_path(CHAIR))
    site_path = write_site(tmp_path, "pairs", {"a": chair, "b": chair})
    analysers = PairingAnalysers()
    service = build_service(
        site_path, db=f"sqlite:///{tmp_path / 'site.db'}", out_dir=tmp_path / "media", realtime=False,
        analysers=analysers, worker_options=WorkerOptions(detect_pairs=True),
    )  # fmt: skip
    with service:
        workers = service.pool.workers.values()
        wait_until(lambda: all(w.ended for w in workers), 120, "both cameras to reach the end of their file")
        alerts = service.store.list_alerts(AlertFilter(sites=["pairs"], clauses=[ABANDONED]))
    assert analysers.calls and all(len(shapes) == 2 for shapes in analysers.calls)
    # Paired where both cameras had a frame waiting; a frame never waits for a partner.
    assert 0 < sum(analysers.given) == 2 * len(analysers.calls) <= len(analysers.given)
    assert sorted(a.camera for a in alerts) == ["a", "b"]


@pytest.mark.media
def test_an_inference_pass_serves_the_camera_served_longest_ago_first(tmp_path: Path) -> None:
    """Behind its cameras, a pass that always began at the site's first camera let a camera whose
    frames take long (the eleven-person office) wait on every other camera after each of its frames:
    it was analysed 3.5 times a second while the rest kept 5. The pass now begins with the camera
    served longest ago; cameras not served yet keep the site's order."""
    chair = str(media_path(CHAIR))
    site_path = write_site(tmp_path, "order", {"a": chair, "b": chair, "c": chair})
    service = build_service(
        site_path, db=f"sqlite:///{tmp_path / 'site.db'}", out_dir=tmp_path / "media", realtime=True,
        analysers=ReplayAnalysers(),
    )  # fmt: skip
    pool = service.pool
    try:
        assert [w.camera.id for w in pool.pass_order()] == ["a", "b", "c"]
        for camera in ("a", "c", "b"):  # served in this order, b most recently
            pool.workers[camera].served()
            time.sleep(0.01)
        assert [w.camera.id for w in pool.pass_order()] == ["a", "c", "b"]
        pool.workers["a"].served()
        assert [w.camera.id for w in pool.pass_order()] == ["c", "b", "a"]
    finally:
        service.stop()  # never started: closes what building it opened


def test_serve_decodes_each_camera_on_its_decode_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve --decode-threads` (WorkerOptions.decode_threads, 1 by default) reaches FFmpeg for
    each camera; 0 leaves FFmpeg its own choice."""
    from vision import sources

    asked: list[int | None] = []
    real = sources._open_capture

    def recording(target: str | int, threads: int | None = None) -> Any:
        asked.append(threads)
        return real(target, threads)

    monkeypatch.setattr(sources, "_open_capture", recording)
    camera = Camera(id="demo", source="demo")
    for threads in (WorkerOptions().decode_threads, 0):
        source = default_opener(tmp_path, threads)(camera)
        assert next(iter(source)).image.size > 0
        source.close()
    assert asked == [1, None]


class StrainedAnalysers(ReplayAnalysers):
    """ReplayAnalysers whose analysis is slow (capture gets ahead) and that, like `CameraAnalyser`,
    take the number of the camera's frames waiting (`waiting`) before each frame; noted per call."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting_seen: list[int] = []

    def __call__(self, camera: Camera) -> Any:
        replay = super().__call__(camera)
        outer = self

        class Analyser:
            waiting = -1

            def __call__(self, frame: Frame) -> FrameObservation:
                outer.waiting_seen.append(self.waiting)
                time.sleep(0.01)
                return replay(frame)

        return Analyser()


@pytest.mark.media
def test_the_worker_tells_the_analyser_how_many_frames_wait_behind_each(tmp_path: Path) -> None:
    """Before each frame the worker hands the camera's analyser the frames still waiting in its
    queue (`Pipeline.waiting`: from two on, the pose budget sheds work before frames are dropped).
    The capture runs ahead of this slow analyser, so the queue fills to its size, and drains to 0
    at the end of the file."""
    chair = str(media_path(CHAIR))
    site_path = write_site(tmp_path, "strain", {"a": chair})
    analysers = StrainedAnalysers()
    options = WorkerOptions(queue_size=4)
    service = build_service(
        site_path, db=f"sqlite:///{tmp_path / 'site.db'}", out_dir=tmp_path / "media", realtime=False,
        analysers=analysers, worker_options=options,
    )  # fmt: skip
    with service:
        worker = service.pool.workers["a"]
        wait_until(lambda: worker.ended, 120, "the camera to reach the end of its file")
    seen = analysers.waiting_seen
    assert len(seen) > 50 and -1 not in seen
    assert max(seen) >= 2 and all(0 <= n <= options.queue_size for n in seen)
    assert seen[-1] == 0
