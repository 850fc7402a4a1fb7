"""Clips and snapshots: bounded frame memory, browser-playable MP4s of the right length, face
blurring, never a half-written clip on an alert, and retention.

Frames are synthetic (no models, no media); alerts live in a real store on SQLite and on
the PostgreSQL server (the `db_url` fixture), since clips are registered through it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from rules.violation import Violation
from service.clips import (
    PART,
    ClipRecorder,
    FrameRing,
    blur_faces,
    face_box,
    h264_encoder,
    purge_clips,
    remove_partial_files,
)
from service.store import AlertStore
from service.testing import BACKENDS, DatabaseUnavailable, scratch_database
from vision.observation import FrameObservation, PersonObservation
from vision.pose import L_EAR, L_EYE, L_SHOULDER, NOSE, R_EAR, R_EYE, R_SHOULDER

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)
W, H = 320, 240


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AlertStore]:
    with ExitStack() as stack:
        try:
            url = stack.enter_context(scratch_database(request.param, tmp_path))
        except DatabaseUnavailable as exc:
            pytest.skip(str(exc))
        s = AlertStore(url)
        s.upgrade()
        yield s
        s.close()


def textured(seed: int = 0) -> np.ndarray:
    """A frame full of fine detail, so blurring shows as lost variance."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (H, W, 3), dtype=np.uint8)


def person(track: int, x: float) -> PersonObservation:
    """A posed person whose face landmarks sit around (x, 60)."""
    kp = np.zeros((33, 2))
    vis = np.zeros(33)
    for i, (dx, dy) in {
        NOSE: (0, 0), L_EYE: (-6, -6), R_EYE: (6, -6), L_EAR: (-14, -2), R_EAR: (14, -2),
        L_SHOULDER: (-30, 40), R_SHOULDER: (30, 40),
    }.items():  # fmt: skip
        kp[i] = (x + dx, 60 + dy)
        vis[i] = 1.0
    return PersonObservation(track, np.array([x - 40, 30, x + 40, 230.0]), 0.9, keypoints=kp, visibility=vis)


def obs_of(*persons: PersonObservation, t: float = 0.0) -> FrameObservation:
    obs = FrameObservation("cam", t, 0, W, H)
    obs.persons = list(persons)
    return obs


def open_alert(store: AlertStore, track: int | None = 1, start_s: float = 2.0) -> int:
    v = Violation("d5.stance.01", "cam", track, start_s, confidence=0.9, message="test")
    return store.open_alert(v, "cam", "shop", t=start_s + 1.0, at=T0).id


def feed(clips: ClipRecorder, store: AlertStore, alert_id: int, *, until: float, open_at: float,
         fps: float = 5.0, obs: FrameObservation | None = None) -> None:  # fmt: skip
    """Frames at `fps` from t=0 to `until`; the alert opens at `open_at`."""
    n = int(round(until * fps)) + 1
    for i in range(n):
        t = i / fps
        clips.add_frame("shop", "cam", t, T0 + timedelta(seconds=t), textured(i), obs)
        if abs(t - open_at) < 1e-9:
            alert = store.get_alert(alert_id)
            assert alert is not None
            clips.alert_opened(alert, None, t, fps=fps)


def decode(path: Path) -> tuple[str, int, float]:
    """(codec, frames, duration in seconds) of a video, as a browser's demuxer would see it."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return stream.codec_context.name, frames, float(container.duration or 0) / 1e6


def test_the_ring_keeps_the_last_seconds_as_jpeg() -> None:
    ring = FrameRing(seconds=2.0)
    for i in range(50):  # 10 s at 5 fps
        ring.push(i / 5, T0, textured(i))
    assert len(ring) == 11  # the newest is t = 9.8: 7.8 ... 9.8
    assert ring.since(0.0)[0].t == pytest.approx(7.8)
    raw = H * W * 3 * len(ring)
    assert ring.nbytes < raw  # JPEG, not raw pixels
    ring.push(0.0, T0, textured(0))  # a restarted camera: a new timeline
    assert len(ring) == 1


def test_faces_of_everyone_but_the_person_concerned_are_blurred() -> None:
    image = textured(1)
    before = image.copy()
    concerned, bystander = person(1, 80), person(2, 240)
    assert blur_faces(image, obs_of(concerned, bystander), keep_track=1) == 1
    kx1, ky1, kx2, ky2 = face_box(concerned, image.shape)  # type: ignore[misc]
    bx1, by1, bx2, by2 = face_box(bystander, image.shape)  # type: ignore[misc]
    assert np.array_equal(image[ky1:ky2, kx1:kx2], before[ky1:ky2, kx1:kx2])
    assert image[by1:by2, bx1:bx2].std() < 0.3 * before[by1:by2, bx1:bx2].std()
    # Zone-level alerts (no person concerned) blur everyone; without pose the top of the box is used.
    image = textured(2)
    faceless = PersonObservation(3, np.array([100.0, 20, 180, 220]), 0.9)
    assert blur_faces(image, obs_of(concerned, faceless), keep_track=None) == 2
    assert face_box(faceless, image.shape) == (107, 20, 173, 87)  # a square of a third of its height


def test_a_clip_is_h264_spans_before_and_after_and_is_registered_complete(
    store: AlertStore, tmp_path: Path
) -> None:
    if h264_encoder() is None:
        pytest.skip("no H.264 encoder in PyAV here")
    alert_id = open_alert(store)
    clips = ClipRecorder(store, tmp_path / "media", before_s=1.0, after_s=2.0)
    try:
        feed(clips, store, alert_id, until=6.0, open_at=3.0, obs=obs_of(person(1, 80), person(2, 240)))
        assert clips.wait_idle()
    finally:
        clips.close()
    alert = store.get_alert(alert_id)
    assert alert is not None and alert.clip == f"shop/cam/alert-{alert_id}.mp4"
    assert alert.snapshot == f"shop/cam/alert-{alert_id}.jpg"
    codec, frames, duration = decode(tmp_path / "media" / alert.clip)
    assert codec == "h264"
    assert frames == 16  # t = 2.0 ... 5.0 at 5 fps
    assert duration == pytest.approx(3.0, abs=0.25)  # before + after
    snapshot = cv2.imread(str(tmp_path / "media" / alert.snapshot))
    assert snapshot is not None and snapshot.shape[:2] == (H, W)
    assert not list((tmp_path / "media").rglob(f"*{PART}*"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread has its own nice on Linux only")
def test_the_clip_writer_yields_the_cpu_to_the_cameras(tmp_path: Path) -> None:
    """An alert's clip is painted and encoded in a burst (its "before" part at once): the writer
    thread runs nicer than the process, so the cameras' analysis goes first and drops no frame."""
    from service import clips as clips_module

    own = os.getpriority(os.PRIO_PROCESS, 0)
    store = AlertStore(f"sqlite:///{tmp_path / 'a.db'}")
    store.upgrade()
    clips = ClipRecorder(store, tmp_path / "media")
    try:
        writer = clips._thread.native_id
        assert writer is not None and writer != threading.get_native_id()
        deadline = time.monotonic() + 20  # the thread sets it first thing once it runs
        while os.getpriority(os.PRIO_PROCESS, writer) <= own and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.getpriority(os.PRIO_PROCESS, writer) == min(19, own + clips_module.WRITER_NICE) > own
        assert os.getpriority(os.PRIO_PROCESS, 0) == own  # the process (this thread) keeps its own
    finally:
        clips.close()
        store.close()


def test_a_clip_cut_short_is_never_registered_half_written(store: AlertStore, tmp_path: Path) -> None:
    """While a clip collects its "after" frames it exists only as a .part file no alert points
    to; a service killed then leaves that file, which the next start removes."""
    alert_id = open_alert(store)
    media = tmp_path / "media"
    clips = ClipRecorder(store, media, before_s=1.0, after_s=60.0)
    feed(clips, store, alert_id, until=5.0, open_at=3.0)
    assert clips.wait_idle()
    parts = list(media.rglob(f"*{PART}.mp4"))
    assert len(parts) == 1 and parts[0].stat().st_size > 0
    alert = store.get_alert(alert_id)
    assert alert is not None and alert.clip is None and alert.snapshot is not None
    # (a kill here: the writer thread is a daemon and the recorder is never closed)
    assert remove_partial_files(media) == 1
    assert not list(media.rglob(f"*{PART}*"))


def test_a_stopped_camera_finishes_its_clips_with_what_they_have(store: AlertStore, tmp_path: Path) -> None:
    alert_id = open_alert(store)
    clips = ClipRecorder(store, tmp_path, before_s=1.0, after_s=60.0)
    try:
        feed(clips, store, alert_id, until=4.0, open_at=3.0)
        assert clips.pending("shop", "cam") == 1
        clips.camera_ended("shop", "cam")
        assert clips.wait_idle()
    finally:
        clips.close()
    alert = store.get_alert(alert_id)
    assert alert is not None and alert.clip is not None
    assert decode(tmp_path / alert.clip)[1] == 11  # t = 2.0 ... 4.0


def test_purge_deletes_old_clip_files_and_keeps_the_alerts(store: AlertStore, tmp_path: Path) -> None:
    old_id, new_id = open_alert(store), open_alert(store, start_s=5.0)
    for alert_id in (old_id, new_id):
        path = tmp_path / f"alert-{alert_id}.mp4"
        path.write_bytes(b"video")
        store.set_media(alert_id, clip=path.name)
    month_ago = time.time() - 31 * 86400
    os.utime(tmp_path / f"alert-{old_id}.mp4", (month_ago, month_ago))
    now = datetime.now(timezone.utc) + timedelta(days=1)  # both alerts are "old enough" to be looked at
    assert purge_clips(store, tmp_path, older_than_days=30, now=now) == 1
    old, new = store.get_alert(old_id), store.get_alert(new_id)
    assert old is not None and old.clip is None  # the row stays, without a dangling path
    assert new is not None and new.clip == f"alert-{new_id}.mp4"
    assert not (tmp_path / f"alert-{old_id}.mp4").exists()
    assert (tmp_path / f"alert-{new_id}.mp4").exists()
    assert purge_clips(store, tmp_path, older_than_days=30, now=now) == 0
