"""Camera workers: capture per camera, shared inference, rules and alerts per camera.

Threads, and why:

* One **capture thread per camera** reads frames into that camera's small bounded queue.
  A camera that hangs in a read or raises only stalls its own thread; nothing waits on
  it. Live streams (and files paced at real time) drop the oldest queued frame when the
  queue is full, so analysis never falls behind the camera; files read "as fast as
  inference allows" (`realtime=False`) block instead, so no frame is skipped (tests,
  replays).
* **Inference threads** (`WorkerOptions.inference_threads`, 1; `serve` runs one per core
  up to two) serve every camera, one frame per camera per pass, the camera served longest
  ago first (`WorkerPool.pass_order`). Each thread loads its own detector and pose graph
  (neither is thread-safe), and a camera is claimed by one thread at a time, so its frames
  are analysed in order. Each camera keeps its own `Pipeline` (tracker state),
  `CameraRules` and recorders. An inference thread never blocks on a camera: it takes what
  is queued and otherwise waits for any frame.
* One **monitor thread** writes each camera's status (connected, analysed fps, last frame,
  last error) through the store and the metrics every second, and marks a camera whose
  frames stopped coming (`stale_after_s`) as disconnected even while its read hangs.

Stream time: each camera's rules see one monotonic clock. A looped file continues one
frame period after its last frame; a reconnected live stream continues at the wall time
elapsed since the worker started, so the rules see the gap as time that passed.

Disconnects: a source that cannot be opened or drops is retried with exponential backoff
(0.5 s doubling to 10 s) and shown as disconnected with its error. Open alerts stay open
meanwhile; they are closed when the stream really ends (a file without `loop_files`, or
the camera is stopped), at the last analysed frame's time.

Restart after a crash: the worker's first act is `store.close_open_alerts` for its
camera, closing alerts a killed predecessor left open at the last frame time that
predecessor reported (its status). Resuming them instead would need the old engine's
state (tracks, timers), which died with the process; a behaviour still going on is
simply raised again by the new engine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, status
from fastapi import Path as PathParam
from pydantic import BaseModel

from service.auth import Principal, current_principal
from service.clips import active_by_track
from service.models import as_utc, utcnow
from service.schemas import CameraOut
from service.session import CameraRules
from service.store import APPROVAL_CANCELLED, APPROVAL_CREATED, CameraRecorder, StoreEvent, camera_role
from vision.sources import Frame, FrameSource, LiveSource, SourceError, open_source

if TYPE_CHECKING:
    import numpy as np

    from calibration.site import Camera, Site
    from rules.engine import ViolationEvent
    from service.clips import ClipRecorder
    from service.metrics import Metrics
    from service.store import Alert, AlertStore, Approval
    from vision.detect import Boxes, Detector
    from vision.observation import FrameObservation
    from vision.pipeline import Pipeline, PipelineOptions
    from vision.pose import PoseEstimator

log = logging.getLogger("postwatch.workers")

AUDIT_SNAPSHOTS = 24  # alert snapshots inlined in a run's final shift audit page

Analyser = Callable[[Frame], "FrameObservation"]
AnalyserFactory = Callable[["Camera"], Analyser]
Opener = Callable[["Camera"], FrameSource]
CONTROL_ROLES = ("admin", "manager")
DROPPED_METRIC = "postwatch_frames_dropped_total"
DROPPED_HELP = "Frames dropped because analysis was behind the camera."
OPENED_METRIC = "postwatch_alerts_opened_total"
OPENED_HELP = "Alerts opened by the camera workers since the service started, per clause."


@dataclass
class WorkerOptions:
    """How cameras are read. `realtime`: pace files at their own clock like a camera (True,
    the default for `serve`) or read them as fast as inference allows without dropping a
    frame (False: tests and replays)."""

    loop_files: bool = False
    realtime: bool = True
    # Frames a camera may have waiting for analysis before the oldest is dropped: 4 (0.8 s at 5 fps)
    # rides out a burst of dear frames (eleven people to pose) without dropping (docs/performance.md).
    queue_size: int = 4
    stale_after_s: float = 10.0
    status_every_s: float = 1.0
    refresh_every_s: float = 2.0
    report_every_s: float = 30.0  # save the run's report (handovers, audit, arrivals...) this often
    retry_first_s: float = 0.5
    retry_max_s: float = 10.0
    inference_threads: int = 1
    detect_pairs: bool = False  # detect two cameras' frames in one detector call (docs/performance.md)
    # FFmpeg's threads decoding each camera (0: FFmpeg's choice, one a core). One: the cameras' capture
    # threads already decode side by side, and FFmpeg's own threads only added CPU (docs/performance.md).
    decode_threads: int = 1


@dataclass
class _Item:
    frame: Frame
    at: datetime  # wall time it was read


END = object()  # queued by the capture thread when a file ends for good


class FrameQueue:
    """A small bounded FIFO between a capture thread and the inference thread."""

    def __init__(self, maxsize: int, wake: threading.Event) -> None:
        self.maxsize = max(1, int(maxsize))
        self._items: deque[Any] = deque()
        self._cond = threading.Condition()
        self._wake = wake

    def put(self, item: Any, *, drop_oldest: bool, stop: threading.Event) -> int:
        """Queue `item`; returns how many old frames were dropped to make room.

        `drop_oldest=False` waits for room instead (until `stop` is set). The END marker
        is never dropped: it is always the newest item.
        """
        dropped = 0
        with self._cond:
            if drop_oldest:
                while len(self._items) >= self.maxsize and self._items[0] is not END:
                    self._items.popleft()
                    dropped += 1
            else:
                while len(self._items) >= self.maxsize and not stop.is_set():
                    self._cond.wait(0.1)
            self._items.append(item)
        self._wake.set()
        return dropped

    def get_nowait(self) -> Any:
        with self._cond:
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def clear(self) -> None:
        with self._cond:
            self._items.clear()
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def frames(self) -> int:
        """The frames waiting (the END marker not counted)."""
        with self._cond:
            return sum(item is not END for item in self._items)


class ModelAnalysers:
    """The shared models: a Detector and a PoseEstimator per inference thread, a `Pipeline` per camera.

    The first set is loaded when constructed (so `serve` fails at start on missing weights, not in
    a thread); each further inference thread loads its own set the first time it analyses a frame,
    because neither the TFLite interpreter nor a MediaPipe graph may run on two threads at once. A
    camera's pipeline (its tracker and memories) is used by one thread at a time (the pool claims the
    camera), with the models of whichever thread that is. `mode` is the pipeline's (`fast`: the lever
    defaults plus pose only in the camera's zones; `plain`: every lever off), `options` replaces it
    with a per-camera factory (the benchmark's lever variants), `detector_threads` sets the
    TFLite interpreter's threads and `lean_detector` off calls the resized TFLite export through
    Ultralytics' predictor (docs/performance.md), and `video_weights` ("auto", "same", a path:
    `vision.detect.video_weights_for`) runs video frames on another model where it is faster.
    """

    def __init__(
        self,
        weights: str | None = None,
        *,
        mode: str = "fast",
        detector_threads: int | None = None,
        tflite_any_size: bool | None = None,
        lean_detector: bool = True,
        options: Callable[[Camera], PipelineOptions] | None = None,
        video_weights: str | None = None,
    ) -> None:
        from vision.pipeline import MODES

        if mode not in MODES:
            raise ValueError(f"unknown pipeline mode {mode!r}; use one of {', '.join(MODES)}")
        self.weights = weights
        self.detector_threads = detector_threads
        self.tflite_any_size = any_size_for(mode) if tflite_any_size is None else tflite_any_size
        self.lean_detector = lean_detector
        self.video_weights = video_weights
        self.detector, self.pose = self._load()
        self._spare: list[tuple[Detector, PoseEstimator]] = [(self.detector, self.pose)]
        self._local = threading.local()
        self._lock = threading.Lock()
        self._loaded = 1
        self.mode = mode
        self.options = options

    def _load(self) -> tuple[Detector, PoseEstimator]:
        from vision.detect import Detector
        from vision.pose import PoseEstimator

        detector = Detector(
            self.weights,
            threads=self.detector_threads,
            tflite_any_size=self.tflite_any_size,
            lean=self.lean_detector,
            video_weights=self.video_weights,
        )
        return detector, PoseEstimator()

    @property
    def sets(self) -> int:
        """How many model sets are loaded (one per inference thread that has run)."""
        return self._loaded

    def models(self) -> tuple[Detector, PoseEstimator]:
        """This thread's detector and pose estimator (loaded on its first call)."""
        mine = getattr(self._local, "models", None)
        if mine is None:
            with self._lock:
                if self._spare:
                    mine = self._spare.pop()
                else:
                    mine = self._load()
                    self._loaded += 1
            self._local.models = mine
        return mine

    def __call__(self, camera: Camera) -> Analyser:
        from vision.pipeline import Pipeline, options_for_camera

        options = self.options(camera) if self.options is not None else options_for_camera(camera, self.mode)
        return CameraAnalyser(self, Pipeline(self.detector, self.pose, options, camera=camera.id))


def any_size_for(mode: str) -> bool:
    """Whether a pipeline mode runs a fixed-size TFLite detector at each picture's own aspect
    (`vision.litert`): not `plain`, the baseline measured with the export's own 640 square."""
    return mode != "plain"


class CameraAnalyser:
    """One camera's pipeline, run with the models of the inference thread that calls it.

    Besides `analyser(frame)`, it lets the pool detect two cameras' frames in one call:
    `needs_detection(frame)`, `detect_many(images)`, then `analyser(frame, boxes)`.
    """

    def __init__(self, models: ModelAnalysers, pipeline: Pipeline) -> None:
        self.models, self.pipeline = models, pipeline

    def __call__(self, frame: Frame, boxes: Boxes | None = None) -> FrameObservation:
        self.pipeline.detector, self.pipeline.pose = self.models.models()
        return self.pipeline.process(frame, boxes)

    @property
    def waiting(self) -> int:
        return self.pipeline.waiting

    @waiting.setter
    def waiting(self, frames: int) -> None:
        """How many of the camera's frames wait behind the next one (`Pipeline.waiting`: under
        strain the pose budget sheds work before frames are dropped)."""
        self.pipeline.waiting = frames

    def needs_detection(self, frame: Frame) -> bool:
        return self.pipeline.needs_detection(frame)

    def detect_many(self, images: Sequence[np.ndarray]) -> list[Boxes]:
        self.pipeline.detector, self.pipeline.pose = self.models.models()
        return self.pipeline.detect_many(images)


def default_opener(demo_dir: Path | None = None, decode_threads: int = 1) -> Opener:
    """Open a site camera's source; reconnecting is the worker's job (so it can show it).
    `decode_threads`: `WorkerOptions.decode_threads`."""

    def opener(camera: Camera) -> FrameSource:
        spec = camera.source
        if spec == "demo":
            from vision.demo import make_demo_clip

            folder = demo_dir or Path.cwd()
            path = folder / "demo.mp4"
            if not path.exists():
                folder.mkdir(parents=True, exist_ok=True)
                make_demo_clip(path)
            spec = str(path)
        return open_source(
            spec, camera=camera.id, fps=camera.fps, reconnect=False, decode_threads=decode_threads
        )

    return opener


class RulesRecorder:
    """A `CameraRecorder` per part of a `CameraRules` (each role's engine, the zone monitor).

    Why: `ViolationEvent.index` numbers violations within the engine or zone monitor that
    raised them, so the merged events of `CameraRules.update` can carry the same index for
    two different violations (a person's and an empty post's). Each event is routed to the
    part whose violation list holds it at that index.
    """

    def __init__(self, store: AlertStore, site: Site, camera: Camera, rules: CameraRules) -> None:
        self.parts: list[tuple[Any, CameraRecorder]] = [
            (engine, CameraRecorder(store, site, camera, role=role)) for role, engine in rules.engines.items()
        ]
        if rules.zones is not None:
            self.parts.append((rules.zones, CameraRecorder(store, site, camera, role=camera_role(camera))))
        if rules.customers is not None:
            recorder = CameraRecorder(store, site, camera, role=camera_role(camera))
            self.parts.append((rules.customers, recorder))

    def _part(self, event: ViolationEvent) -> CameraRecorder:
        v = event.violation
        for part, recorder in self.parts:
            found = part.violations
            if 0 <= event.index < len(found):
                mine = found[event.index]
                if (
                    mine.clause == v.clause
                    and mine.track_id == v.track_id
                    and abs(mine.start_s - v.start_s) < 1e-6
                ):
                    return recorder
        log.warning("event %s %s matched no rules part; stored through the first", event.kind, v.clause)
        return self.parts[0][1]

    def handle(
        self, events: Iterable[ViolationEvent], at: datetime | None
    ) -> list[tuple[ViolationEvent, Alert]]:
        out = []
        for event in events:
            out.append((event, self._part(event).handle([event], at=at)[0]))
        return out

    def refresh(self, t: float, at: datetime | None) -> None:
        for part, recorder in self.parts:
            recorder.refresh(part.violations, t, at=at)


class CameraWorker:
    """One camera: its capture thread, queue, rules, recorders and live status."""

    def __init__(
        self,
        site: Site,
        camera: Camera,
        store: AlertStore,
        analysers: AnalyserFactory,
        *,
        wake: threading.Event,
        options: WorkerOptions,
        opener: Opener,
        metrics: Metrics | None = None,
        clips: ClipRecorder | None = None,
    ) -> None:
        self.site, self.camera, self.store = site, camera, store
        self.analysers, self.opener, self.options = analysers, opener, options
        self.metrics, self.clips = metrics, clips
        self.labels = {"site": site.name, "camera": camera.id}
        self.queue = FrameQueue(options.queue_size, wake)
        self._lock = threading.RLock()  # rules, recorders, analyser: the inference thread and stop()
        self._status_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._source: FrameSource | None = None
        self._rules: CameraRules | None = None
        self._recorder: RulesRecorder | None = None
        self._analyser: Analyser | None = None
        self._approvals: list[Approval] = []
        self.running = False
        self.ended = False  # the file ended and its rules were finished (until the next start)
        self._end_reported = False  # the monitor wrote the status after the end
        # live state, read by the monitor thread
        self.connected = False
        self.error: str | None = None
        self.frames = 0
        self.served_at = 0.0  # monotonic time an inference thread last took one of its frames
        self.dropped = 0
        self.inference_ms: float | None = None
        self.last_t: float | None = None
        self.last_at: datetime | None = None
        self._read_at = 0.0  # monotonic time of the last frame read from the source
        self._putting = False
        self._done: deque[float] = deque(maxlen=50)  # monotonic times of analysed frames
        self._last_refresh = 0.0
        self._last_report = 0.0
        self._run_started_at: datetime | None = None  # names this run's report in the store
        self._run_alerts: list[int] = []  # ids of the alerts this run opened, oldest first
        self._t0 = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Close what a previous run left open, make fresh rules, start capturing."""
        with self._lock:
            if self.running:
                return
            self.store.ensure_camera(self.site, self.camera)
            previous = self.store.camera(self.site.name, self.camera.id)
            last_seen = previous.last_frame_at if previous is not None else None
            closed = self.store.close_open_alerts(self.site, self.camera, at=last_seen)
            if closed:
                log.warning(
                    "camera %s: closed %d alert(s) left open by a previous run, at its last frame (%s)",
                    self.camera.id,
                    closed,
                    last_seen,
                )
            self.store.close_reports(self.site, self.camera)  # a killed run's report, as last saved
            self._rules = CameraRules(self.camera.id, site=self.site, camera=self.camera)
            self._recorder = RulesRecorder(self.store, self.site, self.camera, self._rules)
            self._analyser = None
            self._run_started_at, self._last_report = self.store.now(), time.monotonic()
            self._run_alerts = []
            self._approvals = [
                a
                for a in self.store.approvals(sites=[self.site.name], cameras=[self.camera.id])
                if a.end > self.store.now()
            ]
            self.queue.clear()
            self._stop = threading.Event()
            self._t0 = time.monotonic()
            self.last_t = self.last_at = None
            self._done.clear()
            self.running, self.ended, self._end_reported = True, False, False
            self.connected, self.error = False, None
            self._thread = threading.Thread(
                target=self._capture, name=f"capture-{self.camera.id}", daemon=True
            )
            self._thread.start()

    def stop(self, reason: str = "stopped", join_s: float = 3.0) -> None:
        """Stop capturing and close the open alerts at the last analysed frame.

        A capture thread stuck in a read is abandoned (it is a daemon and exits when the
        read returns); the rules are finished here regardless.
        """
        self._stop.set()
        source = self._source
        if source is not None:
            source.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(join_s)
        with self._lock:
            self.queue.clear()
            self._finish_locked()
            self.running = False
            self.connected, self.error = False, reason
        self._report_status()

    # -- capture thread ----------------------------------------------------------------------------

    def _capture(self) -> None:
        stop = self._stop
        attempt = 0
        last_t: float | None = None
        pace: tuple[float, float] | None = None  # (monotonic, stream t) anchor of real-time pacing
        while not stop.is_set():
            try:
                source = self.opener(self.camera)
            except Exception as exc:  # SourceError, or anything a broken opener raises
                attempt = self._retry(stop, attempt, exc)
                continue
            self._source = source
            live = isinstance(source, LiveSource)
            period = 1.0 / self.camera.fps
            if live:
                offset = time.monotonic() - self._t0
            else:
                offset = 0.0 if last_t is None else last_t + period
            got = False
            try:
                for frame in source:
                    if stop.is_set():
                        break
                    t = offset + frame.t
                    if last_t is not None and t <= last_t:
                        t = last_t + 1e-3  # never backwards, whatever the source says
                    if not live and self.options.realtime:
                        pace = self._pace(stop, pace, t)
                    self._read_at = time.monotonic()
                    if not got:
                        got, attempt = True, 0
                        if not self.connected:
                            log.info("camera %s: connected (%s)", self.camera.id, source.info.kind)
                        self.connected, self.error = True, None
                    item = _Item(Frame(self.camera.id, t, frame.index, frame.image), utcnow())
                    self._putting = True
                    try:
                        dropped = self.queue.put(item, drop_oldest=live or self.options.realtime, stop=stop)
                    finally:
                        self._putting = False
                    if dropped:
                        self.dropped += dropped
                        if self.metrics is not None:
                            self.metrics.counter(DROPPED_METRIC, DROPPED_HELP).inc(dropped, **self.labels)
                    last_t = t
            except Exception as exc:  # a live stream that dropped (SourceError) or a broken decoder
                self._release(source)
                attempt = self._retry(stop, attempt, exc)
                continue
            self._release(source)
            if stop.is_set():
                return
            if live:  # a live source only ends when it drops: reconnect
                attempt = self._retry(stop, attempt, SourceError(f"stream of camera {self.camera.id} ended"))
                continue
            if self.options.loop_files and got:
                continue
            # The file ended for good: the inference thread finishes the rules after the last frame.
            self.queue.put(END, drop_oldest=True, stop=stop)
            self.connected = False
            self.error = "end of file" if got else "the source delivered no frame"
            return

    def _release(self, source: FrameSource) -> None:
        source.close()
        if self._source is source:  # a restarted worker may already read another source
            self._source = None

    def _pace(
        self, stop: threading.Event, anchor: tuple[float, float] | None, t: float
    ) -> tuple[float, float]:
        """Wait until stream time `t` is due on the wall clock; re-anchor after falling behind."""
        now = time.monotonic()
        if anchor is None:
            return (now, t)
        due = anchor[0] + (t - anchor[1])
        if due - now > 0:
            stop.wait(due - now)
        elif now - due > 1.0:  # behind by more than a second: do not catch up in a burst
            return (now, t)
        return anchor

    def _retry(self, stop: threading.Event, attempt: int, exc: BaseException) -> int:
        if stop.is_set():  # closing the source on stop() can raise: that is not a camera fault
            return attempt
        message = str(exc).rstrip(".") if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
        was = self.connected
        self.connected, self.error = False, message
        delay = min(self.options.retry_first_s * 2**attempt, self.options.retry_max_s)
        (log.warning if was or attempt == 0 else log.debug)(
            "camera %s: %s; retrying in %.1f s", self.camera.id, message, delay
        )
        stop.wait(delay)
        return attempt + 1

    # -- inference thread --------------------------------------------------------------------------

    def claim(self) -> bool:
        """Take this camera for one inference thread; False while another one holds it."""
        return self._lock.acquire(blocking=False)

    def served(self) -> None:
        """Note that an inference thread has just taken a frame of this camera (`WorkerPool` serves
        the camera served longest ago first)."""
        self.served_at = time.monotonic()

    def unclaim(self) -> None:
        self._lock.release()

    def detection_image(self, item: Any) -> np.ndarray | None:
        """The frame to detect on for this item, where the analyser can take boxes made for it
        (`CameraAnalyser`) and its pipeline will run the detector on this frame; else None."""
        with self._lock:
            if item is END or self._rules is None:
                return None
            try:
                if self._analyser is None:
                    self._analyser = self.analysers(self.camera)
                needs = getattr(self._analyser, "needs_detection", None)
                return item.frame.image if needs is not None and needs(item.frame) else None
            except Exception:
                log.exception("camera %s: deciding on detection failed", self.camera.id)
                return None

    def detect_many(self, images: Sequence[np.ndarray]) -> list[Boxes]:
        """Detections of several cameras' frames (this one's among them) in one detector call."""
        analyser = self._analyser
        if analyser is None or not hasattr(analyser, "detect_many"):
            raise RuntimeError(f"camera {self.camera.id}: its analyser cannot detect for others")
        return analyser.detect_many(images)

    def process(self, item: Any, boxes: Boxes | None = None) -> None:
        """Analyse one queued frame: pipeline, rules, alerts, clip frames. Never raises.

        `boxes`: detections made for this frame together with another camera's."""
        with self._lock:
            if self._rules is None or self._recorder is None:
                return
            if item is END:
                self._finish_locked()
                self.running, self.ended = False, True
                return
            frame, at = item.frame, item.at
            try:
                if self._analyser is None:
                    self._analyser = self.analysers(self.camera)
                self._apply_approvals(frame.t, at)
                if hasattr(self._analyser, "waiting"):  # a pipeline that sheds pose work under strain
                    self._analyser.waiting = self.queue.frames  # type: ignore[attr-defined]
                started = time.perf_counter()
                obs = self._analyser(frame) if boxes is None else self._analyser(frame, boxes)  # type: ignore[call-arg]
                events = self._rules.update(obs, frame.image)
                elapsed_ms = (time.perf_counter() - started) * 1000.0
            except Exception as exc:
                log.exception("camera %s: analysis of frame at t=%.2f failed", self.camera.id, frame.t)
                self.error = f"analysis failed: {type(exc).__name__}: {exc}"
                return
            self.last_t, self.last_at = frame.t, at
            self.frames += 1
            self._done.append(time.monotonic())
            self.inference_ms = (
                elapsed_ms if self.inference_ms is None else 0.8 * self.inference_ms + 0.2 * elapsed_ms
            )
            if self.metrics is not None:
                self.metrics.frames.inc(**self.labels)
            try:
                stored = self._recorder.handle(events, at)
            except Exception as exc:  # the database is down: keep analysing, say so
                log.exception("camera %s: storing %d alert event(s) failed", self.camera.id, len(events))
                self.error = f"storing alerts failed: {type(exc).__name__}: {exc}"
                stored = []
            if self.clips is not None:
                try:
                    active = active_by_track(self._rules.open_violations())
                    self.clips.add_frame(
                        self.site.name, self.camera.id, frame.t, at, frame.image, obs, active
                    )
                except Exception:
                    log.exception("camera %s: keeping the frame for clips failed", self.camera.id)
            for event, alert in stored:
                if event.kind != "opened":
                    continue
                self._run_alerts.append(alert.id)
                if self.metrics is not None:
                    self.metrics.counter(OPENED_METRIC, OPENED_HELP, ("site", "camera", "clause")).inc(
                        site=self.site.name, camera=self.camera.id, clause=alert.clause
                    )
                if self.clips is not None:
                    self.clips.alert_opened(
                        alert, event.violation, frame.t, fps=self.camera.fps, zones=self.camera.zones
                    )
            now = time.monotonic()
            if now - self._last_refresh >= self.options.refresh_every_s:
                self._last_refresh = now
                try:
                    self._recorder.refresh(frame.t, at)
                except Exception:
                    log.exception("camera %s: refreshing open alerts failed", self.camera.id)
            if stored or now - self._last_report >= self.options.report_every_s:
                # An alert opened or closed: the report changed with it (an absence began...).
                self._last_report = now
                self._save_report(final=False)

    def _audit_snapshots(self) -> dict[str, Path]:
        """Caption -> snapshot file of this run's alerts (the oldest `AUDIT_SNAPSHOTS`), for the
        printable audit. Only at the end: the page inlines them, and it is rewritten as the run goes.
        A snapshot the clip thread has not written yet when the run ends is left out."""
        if self.clips is None:
            return {}
        out: dict[str, Path] = {}
        for alert_id in self._run_alerts:
            alert = self.store.get_alert(alert_id)
            if alert is None or not alert.snapshot:
                continue
            path = self.clips.media_root / alert.snapshot
            if path.is_file():
                who = "the post" if alert.track_id is None else f"track {alert.track_id}"
                out[f"{alert.clause} {who} {alert.start_s:.1f} s"] = path
                if len(out) >= AUDIT_SNAPSHOTS:
                    break
        return out

    def _save_report(self, final: bool) -> None:
        """Write this run's report to the store (cameras whose rules report nothing skip it).

        Why saved as the run goes and not only at its end: a shift audit covers hours, and a
        killed service must not lose it. It is saved every `report_every_s` and whenever an alert
        opens or closes, so a kill loses at most that interval of it."""
        if self._rules is None or self._run_started_at is None:
            return
        try:
            payload = self._rules.reports()
            if not payload:
                return
            audit = self._rules.audit
            html = None
            if audit is not None:  # the final page shows the run's alert snapshots, as analyze's does
                html = audit.to_html(self._audit_snapshots() if final else None)
            self.store.save_report(
                self.site,
                self.camera,
                self._run_started_at,
                self.last_t or 0.0,
                payload,
                audit_html=html,
                final=final,
            )
        except Exception as exc:  # the database is down: keep analysing, say so
            log.exception("camera %s: saving its report failed", self.camera.id)
            self.error = f"saving the camera report failed: {type(exc).__name__}: {exc}"

    def _finish_locked(self) -> None:
        """The stream ended: close open violations at the last analysed frame, finish clips."""
        if self._rules is None or self._recorder is None:
            return
        try:
            if self.last_t is not None:
                self._recorder.handle(self._rules.finish(self.last_t), self.last_at)
        except Exception:
            log.exception("camera %s: closing open alerts at the end of the stream failed", self.camera.id)
        finally:
            self._save_report(final=True)
            self._rules = None
            self._recorder = None
            self._analyser = None
            if self.clips is not None:
                self.clips.camera_ended(self.site.name, self.camera.id)

    def approval_event(self, approval: Approval, cancelled: bool) -> None:
        """An approval for this camera was stored through the API: apply it at the next frame."""
        if cancelled:
            log.warning(
                "camera %s: approval %d cancelled; the running rules keep it until the camera restarts",
                self.camera.id,
                approval.id,
            )
            return
        with self._lock:
            self._approvals.append(approval)

    def _apply_approvals(self, t: float, at: datetime) -> None:
        """Map approved leave from wall time to this stream's time and hand it to the zone monitor."""
        if not self._approvals or self._rules is None or self._rules.zones is None:
            self._approvals.clear()
            return
        pending, self._approvals = self._approvals, []
        at_u = as_utc(at)
        assert at_u is not None
        for a in pending:
            start_s = t + (a.start - at_u).total_seconds()
            end_s = t + (a.end - at_u).total_seconds()
            try:
                self._rules.zones.approve(a.post, start_s, end_s, a.reason)
            except (KeyError, ValueError) as exc:
                log.warning("camera %s: approval %d not applied: %s", self.camera.id, a.id, exc)

    # -- status ------------------------------------------------------------------------------------

    @property
    def analysed_fps(self) -> float:
        done = [t for t in self._done if t >= time.monotonic() - 10.0]
        if len(done) < 2 or done[-1] <= done[0]:
            return 0.0
        return (len(done) - 1) / (done[-1] - done[0])

    def check_stale(self) -> None:
        """A connected camera whose frames stopped coming (a hung read) is shown disconnected."""
        if not (self.running and self.connected) or self._putting:
            return
        quiet = time.monotonic() - self._read_at
        if quiet > self.options.stale_after_s:
            self.connected = False
            self.error = f"no frame for {quiet:.0f} s (the stream hangs)"
            log.warning("camera %s: %s", self.camera.id, self.error)

    def _report_status(self) -> None:
        # Under a lock, reading the state at write time: a report from the monitor thread that
        # raced a stop() can then never land after the stop's own report with stale values.
        with self._status_lock:
            self._write_status()

    def _write_status(self) -> None:
        connected, error = self.connected, self.error
        self.store.set_camera_status(
            self.site,
            self.camera,
            connected=connected,
            analysed_fps=self.analysed_fps if self.running else 0.0,
            last_frame_t=self.last_t,
            last_frame_at=self.last_at,
            error=error,
            clear_error=error is None,
        )
        if self.metrics is not None:
            self.metrics.connected.set(1 if connected else 0, **self.labels)
            self.metrics.analysed_fps.set(self.analysed_fps if self.running else 0.0, **self.labels)
            self.metrics.queue_depth.set(len(self.queue), **self.labels)
            if self.inference_ms is not None:
                self.metrics.inference_ms.set(round(self.inference_ms, 1), **self.labels)


class WorkerPool:
    """Every camera of a site: their workers, the shared inference thread and the monitor."""

    def __init__(
        self,
        site: Site,
        store: AlertStore,
        analysers: AnalyserFactory,
        *,
        options: WorkerOptions | None = None,
        metrics: Metrics | None = None,
        clips: ClipRecorder | None = None,
        opener: Opener | None = None,
        cameras: Sequence[str] | None = None,
    ) -> None:
        self.site, self.store, self.metrics, self.clips = site, store, metrics, clips
        self.options = options or WorkerOptions()
        self._wake = threading.Event()
        self._stop = threading.Event()
        opener = opener or default_opener()
        chosen = [c for c in site.cameras if cameras is None or c.id in cameras]
        self.workers: dict[str, CameraWorker] = {
            c.id: CameraWorker(
                site,
                c,
                store,
                analysers,
                wake=self._wake,
                options=self.options,
                opener=opener,
                metrics=metrics,
                clips=clips,
            )
            for c in chosen
        }
        self._threads: list[threading.Thread] = []
        self._unsubscribe: Callable[[], None] | None = None
        if metrics is not None:  # registered up front so they are listed before the first event
            metrics.counter(DROPPED_METRIC, DROPPED_HELP)
            metrics.counter(OPENED_METRIC, OPENED_HELP, ("site", "camera", "clause"))

    def start(self) -> None:
        """Start every camera, the inference thread and the monitor."""
        self._stop.clear()
        self._unsubscribe = self.store.subscribe(self._on_store_event, [APPROVAL_CREATED, APPROVAL_CANCELLED])
        for worker in self.workers.values():
            worker.start()
        threads = max(1, int(self.options.inference_threads))
        names = [f"inference-{i}" for i in range(threads)] if threads > 1 else ["inference"]
        for name, target in [*((n, self._inference) for n in names), ("camera-monitor", self._monitor)]:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop every camera (closing their open alerts at their last frame), then the threads."""
        for worker in self.workers.values():
            if worker.running:
                worker.stop("service stopped")
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(5.0)
        self._threads.clear()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def worker(self, camera_id: str) -> CameraWorker:
        try:
            return self.workers[camera_id]
        except KeyError:
            raise KeyError(f"site {self.site.name!r} has no camera {camera_id!r}") from None

    def start_camera(self, camera_id: str) -> CameraWorker:
        worker = self.worker(camera_id)
        worker.start()
        worker._report_status()
        return worker

    def stop_camera(self, camera_id: str, reason: str = "stopped") -> CameraWorker:
        worker = self.worker(camera_id)
        if worker.running:
            worker.stop(reason)
        return worker

    def _on_store_event(self, event: StoreEvent) -> None:
        a = event.approval
        if a is None or a.site != self.site.name or a.camera not in self.workers:
            return
        self.workers[a.camera].approval_event(a, cancelled=event.kind == APPROVAL_CANCELLED)

    def _inference(self) -> None:
        """Passes over the cameras' queues, one frame per camera per pass, the camera served
        longest ago first.

        With several inference threads (`WorkerOptions.inference_threads`) each runs this loop
        with its own models; a camera busy on another thread is passed over, so a camera's frames
        are still analysed one at a time and in order. Why longest ago first, not the cameras'
        fixed order: behind its cameras, a pass that always starts at the first camera lets a
        camera whose frames take long (eleven people to pose) wait on every other camera after
        each of its frames, and it fell to 3.5 analysed frames a second while the rest kept 5.
        """
        batch = 2 if self.options.detect_pairs else 1
        while not self._stop.is_set():
            self._wake.clear()
            busy = False
            taken: list[tuple[CameraWorker, Any]] = []
            for worker in self.pass_order():
                if not worker.claim():
                    continue
                item = worker.queue.get_nowait()
                if item is None:
                    worker.unclaim()
                    continue
                worker.served()
                busy = True
                taken.append((worker, item))
                if len(taken) == batch:
                    self._analyse(taken)
                    taken = []
            if taken:
                self._analyse(taken)
            if not busy:
                self._wake.wait(0.2)

    def pass_order(self) -> list[CameraWorker]:
        """The cameras in the order an inference pass visits them: served longest ago first, the
        site's order among equals (cameras not served yet)."""
        return sorted(self.workers.values(), key=lambda w: w.served_at)

    def _analyse(self, taken: list[tuple[CameraWorker, Any]]) -> None:
        """Analyse claimed cameras' frames, detecting those that need it in one call; unclaim them."""
        try:
            boxes: dict[int, Boxes] = {}
            if len(taken) > 1:
                need = [(k, w, w.detection_image(item)) for k, (w, item) in enumerate(taken)]
                need = [(k, w, image) for k, w, image in need if image is not None]
                if len(need) > 1:
                    try:
                        found = need[0][1].detect_many([image for _, _, image in need])
                        boxes = {k: b for (k, _, _), b in zip(need, found)}
                    except Exception:
                        log.exception("detecting %d cameras' frames together failed; one by one", len(need))
            for k, (worker, item) in enumerate(taken):
                worker.process(item, boxes.get(k))
        finally:
            for worker, _ in taken:
                worker.unclaim()

    def _monitor(self) -> None:
        while not self._stop.wait(self.options.status_every_s):
            for worker in list(self.workers.values()):
                if not worker.running and (not worker.ended or worker._end_reported):
                    continue
                try:
                    worker.check_stale()
                    worker._report_status()
                except Exception:
                    log.exception("camera %s: writing its status failed", worker.camera.id)
                if worker.ended:
                    # Reported once after the end; nothing changes any more. `ended` itself stays
                    # true: it once went back to false here, and whoever waited for it could miss it.
                    worker._end_reported = True


# -- HTTP control ------------------------------------------------------------------------------------


class CameraControlOut(BaseModel):
    """A camera's status after a start or stop, and whether its worker now runs."""

    running: bool
    camera: CameraOut


# Module level: FastAPI resolves the routes' (string) annotations in this namespace.
_Caller = Annotated[Principal, Depends(current_principal)]
_CameraId = Annotated[str, PathParam(min_length=1, max_length=200)]
_SiteQ = Annotated[str | None, Query(description="Site id (optional: this service runs one site).")]


def add_control_routes(app: FastAPI, pool: WorkerPool) -> None:
    """`POST /cameras/{id}/start` and `/stop`: admins and managers of the camera's site.

    Other roles get 403; a camera outside the key's scope, or not run by this service,
    404 (as the API answers for records a key may not see).
    """

    def resolve(principal: Principal, camera_id: str, site: str | None) -> CameraWorker:
        if principal.role not in CONTROL_ROLES:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"role {principal.role!r} cannot start or stop cameras"
            )
        if (site is not None and site != pool.site.name) or camera_id not in pool.workers:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no camera {camera_id!r} in this service")
        if not principal.scope.allows(pool.site.name, camera_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no camera {camera_id!r} in this service")
        return pool.workers[camera_id]

    def answer(worker: CameraWorker) -> CameraControlOut:
        found = pool.store.camera(worker.site.name, worker.camera.id)
        assert found is not None
        return CameraControlOut(running=worker.running, camera=CameraOut.of(found))

    responses: dict[int | str, dict[str, Any]] = {
        401: {"description": "No API key, or an unknown or revoked one."},
        403: {"description": "Only admin and manager keys control cameras."},
        404: {"description": "No such camera within the key's scope."},
    }

    @app.post(
        "/cameras/{camera_id}/start",
        tags=["site"],
        summary="Start a camera's worker",
        response_model=CameraControlOut,
        responses=responses,
    )
    def start_camera(principal: _Caller, camera_id: _CameraId, site: _SiteQ = None) -> CameraControlOut:
        worker = resolve(principal, camera_id, site)
        log.info("camera %s started by %s", camera_id, principal.name)
        return answer(pool.start_camera(worker.camera.id))

    @app.post(
        "/cameras/{camera_id}/stop",
        tags=["site"],
        summary="Stop a camera's worker (its open alerts close)",
        response_model=CameraControlOut,
        responses=responses,
    )
    def stop_camera(principal: _Caller, camera_id: _CameraId, site: _SiteQ = None) -> CameraControlOut:
        worker = resolve(principal, camera_id, site)
        log.info("camera %s stopped by %s", camera_id, principal.name)
        return answer(pool.stop_camera(worker.camera.id, reason=f"stopped by {principal.name}"))


__all__ = [
    "CONTROL_ROLES",
    "CameraWorker",
    "FrameQueue",
    "ModelAnalysers",
    "RulesRecorder",
    "WorkerOptions",
    "WorkerPool",
    "add_control_routes",
    "default_opener",
]
