"""Throughput benchmark: N cameras played live through the real `serve` machinery, plain vs the levers.

    .venv/bin/python bench/throughput.py                       # plain and fast, 1/2/4/8 streams, 30 s each
    .venv/bin/python bench/throughput.py --streams 8 --seconds 20 --mode plain,fast+every3
    .venv/bin/python bench/throughput.py --levers --json out/throughput.json   # + each lever alone
    .venv/bin/python bench/report.py out/throughput.json > docs/performance.md

What is measured, and how. Each (variant, N) runs in a fresh child process (so peak memory is that
configuration's, and no model state leaks between variants) that builds the service exactly as
`postwatch serve` does: `service.serve.build_service` on a generated site file of N cameras, each
a clip of ../shared/media looped and paced at its own clock (`realtime=True`, `loop_files=True`)
at 5 analysed fps, with the per-camera capture threads, the inference threads (`plain`: one; `fast`:
`serve`'s default, one per core up to two, each with its own models), the rules,
the SQLite `AlertStore` and the clip recorder. Only three things are wrapped, to read the clocks:
the opener (time spent decoding in each source), `CameraRules.update` (the rules) and the store's
subscription (alert latency). Per-stage pipeline times come from `PipelineOptions.stages_ms`.

* fps: analysed frames per second, all cameras together, after a warm-up (model start-up excluded);
* RTF: seconds of video analysed per wall second per stream (5 fps analysed = 1.0; frames the
  inference thread was too slow for are dropped by the capture threads, as a live camera would be);
* stage ms: per analysed frame (decode per frame handed to analysis, including the grabs of the
  frames between);
* alert latency: from the wall time the frame that completed a violation was read from its source
  (the capture thread's stamp) to the alert being committed to SQLite (the store's event);
* peak RSS: `ru_maxrss` of the child process, models included.

It is a benchmark, not a test: nothing fails on a timing. The machine is shared, so compare the
ratios of one run (plain runs first at every N), not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("YOLO_VERBOSE", "False")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MEDIA = ROOT.parent / "shared" / "media"
FPS = 5.0
#: The cameras, in order: camera i plays CLIPS[i % len(CLIPS)]. The first is the chair clip with its
#: post zone (examples/chair_clip.yaml), whose empty post raises d1.reception.02 after each loop;
#: the others are judged without zones (everyone in view as front-desk staff), a mix of busy and
#: quiet scenes and of sizes from 384x288 to 1600x900.
CLIPS: tuple[str, ...] = (
    "A_effiscan_person_chair_sit_stand_leave_upright.mp4",
    "A_office_openplan_workers_seated.mp4",
    "2_worker_hivis_hardhat_phone_call_warehouse.mp4",
    "5_office_cctv_cam5_person_enters_takes_seat_annotated.mov",
    "E_caviar_OneLeaveShop1front.mp4",
    "5_doorbell_cam_man_arrives_leans_on_railing_collapses.mp4",
    "2_pexels4105024_woman_corridor_phone_call.mp4",
    "DE_intel_worker-zone-detection.mp4",
)
#: The chair camera's post zone, as examples/chair_clip.yaml draws it.
CHAIR_SITE = ROOT / "examples" / "chair_clip.yaml"
#: Lever names usable after a `+` in a variant ("plain+motion", "fast+every3", "fast+threads2").
LEVERS = (
    "motion", "reuse", "reusebox", "track", "wrist", "cropsK", "zones", "everyK", "threadsN", "workersN",
    "pair", "slow", "ov", "ovq", "ovv", "imgszN", "wristszN", "wristnative", "retry", "clock", "rect",
    "budget", "budgetN", "decodeN", "videosz", "videoszN", "queueN", "backoff", "backoffN", "refreshN",
    "strain", "strainN", "lean", "writer", "hips", "wristvideo", "wristvideoN",
)  # fmt: skip
SINGLE_LEVERS = (
    "motion", "every2", "every3", "every3+slow", "reuse", "track", "wrist", "crops5", "zones", "threads2",
    "workers2", "pair", "retry", "retry+backoff", "budget", "decode1", "videosz", "rect", "rect+wristnative",
    "ov", "ovq", "ovq+wristnative",
)  # fmt: skip
STAGE_ORDER = ("decode", "motion", "detect", "track", "pose", "wrist", "features", "rules")


# ============================================================================= variants


@dataclass
class Variant:
    """A benchmark configuration: a base mode and levers switched on or off on top of it."""

    name: str
    mode: str = "fast"
    overrides: dict[str, Any] = field(default_factory=dict)
    zones: bool | None = None  # None: as the mode has it (fast: on)
    threads: int | None = None
    pairs: bool = False  # two cameras' frames detected in one call
    # The TFLite export at each picture's own aspect (`vision.litert`); None: as the mode has it.
    rect: bool | None = None
    # The resized TFLite export called without Ultralytics' predictor (`LiteRTShapes.detect`).
    lean: bool = True
    workers: int = 1  # inference threads, each with its own models (`fast`: serve's default)
    decode_threads: int = 0  # FFmpeg's threads per camera (0: its choice; `fast`: serve's default, 1)
    queue_size: int | None = None  # frames waiting per camera (None: WorkerOptions' default)
    # The clip writer nicer than the cameras, x264 on its one thread (service.clips); off: as the
    # process, x264's own threads.
    writer: bool = True
    # Detector weights by format (`vision.detect.project_weights`); None: as `serve` finds them.
    # `plain` keeps the int8 TFLite model at its fixed 640, the detector it was first measured with.
    detector: str | None = None
    # Video frames' own detector (`vision.detect.video_weights_for`): "auto" as `serve` has it
    # (`fast`), "same", or a format as `detector` ("openvino-int8": the `ovv` lever).
    video_detector: str = "same"

    def video_weights(self) -> str:
        """What this variant gives `Detector(video_weights=)`: "auto", "same", or its format's file."""
        if self.video_detector in ("auto", "same"):
            return self.video_detector
        found = Variant(self.name, detector=self.video_detector).weights()
        assert found is not None
        return found

    def weights(self, explicit: str | None = None) -> str | None:
        """The weights this variant runs: `--weights` where given, else its format's file in models/."""
        from vision.detect import project_weights

        if explicit or self.detector is None:
            return explicit
        found = project_weights(self.detector)
        openvino = self.detector in ("openvino", "openvino-int8")
        tflite = project_weights("tflite") if found is None and openvino else None
        floating = project_weights("openvino") if tflite and self.detector == "openvino-int8" else None
        if floating:  # only the int8 model is missing: quantize the float export, not all again
            from vision.convert import calibration_images, int8_folder, quantize_openvino

            print(f"quantizing {floating} to int8 (once)", file=sys.stderr, flush=True)
            target = int8_folder(tflite, Path(floating).parent)  # type: ignore[arg-type]
            quantize_openvino(floating, calibration_images(()), target)
            found = project_weights(self.detector)
        elif tflite:
            from vision.convert import convert
            from vision.detect import CONVERTED_DIR

            print(f"converting {tflite} to OpenVINO (once)", file=sys.stderr, flush=True)
            convert(tflite, Path(tflite).parent / CONVERTED_DIR, int8=self.detector == "openvino-int8")
            found = project_weights(self.detector)
        if found is None:
            raise SystemExit(f"variant {self.name}: no {self.detector} detector weights in models/")
        return found

    @classmethod
    def parse(cls, spec: str) -> Variant:
        """`plain`, `fast`, or either followed by `+lever` / `-lever` (`fast-reuse`, `plain+every3`)."""
        import re

        parts = re.split(r"([+-])", spec.strip())
        mode = parts[0]
        if mode not in ("plain", "fast"):
            raise ValueError(f"variant {spec!r} must start with plain or fast")
        from vision.pipeline import PipelineOptions as Defaults  # the levers' on values

        v = cls(spec.strip(), mode)
        if mode == "plain":
            v.detector = "tflite"
        if mode == "fast":  # what `serve` runs: its inference threads too
            from service.cli import DEFAULT_INFERENCE_THREADS
            from service.workers import WorkerOptions

            v.workers = DEFAULT_INFERENCE_THREADS
            v.decode_threads = WorkerOptions.decode_threads
            v.video_detector = "auto"
        for sign, lever in zip(parts[1::2], parts[2::2]):
            on = sign == "+"
            if on and v.mode == "plain":  # once: later levers must not undo the earlier ones
                v.mode = "fast"  # levers need the fast path; switch every default one off first
                v.overrides.update(
                    motion_gate=False,
                    pose_reuse=False,
                    pose_track=False,
                    wrist_gate=False,
                    detect_every=1,
                    every_when_slow=False,
                    wrist_every=1,
                    wrist_imgsz=Defaults.imgsz,
                    video_imgsz=Defaults.imgsz,
                    wrist_native=False,
                    pose_retry_s=0.0,
                    pose_budget=0,
                    frame_clock=False,
                    follow_hips_below=0.0,
                )
                v.zones = False if v.zones is None else v.zones
                v.rect = False if v.rect is None else v.rect  # the detector's own square, as plain's
            if lever == "motion":
                v.overrides["motion_gate"] = on
            elif lever == "reuse":
                v.overrides["pose_reuse"] = on
            elif lever == "reusebox":  # reuse on the box alone, without the pixel check
                v.overrides.update(pose_reuse=on, pose_reuse_share=1.0)
            elif lever == "track":
                v.overrides["pose_track"] = on
            elif lever == "wrist":
                v.overrides["wrist_gate"] = on
            elif re.fullmatch(r"crops\d+", lever):
                v.overrides["wrist_every"] = int(lever[5:]) if on else 1
            elif lever == "zones":
                v.zones = on
            elif re.fullmatch(r"every\d+", lever):
                v.overrides["detect_every"] = int(lever[5:]) if on else 1
            elif re.fullmatch(r"threads\d+", lever):
                v.threads = int(lever[7:]) if on else None
            elif lever == "slow":  # every-k-th detection only while everyone moves slowly
                v.overrides["every_when_slow"] = on
            elif lever == "pair":
                v.pairs = on
            elif lever == "rect":  # the TFLite export at each frame's own aspect (vision.litert)
                v.rect = on
            elif lever == "lean":  # that resized export called without Ultralytics' predictor
                v.lean = on
            elif lever == "writer":  # the clip writer yields the CPU to the cameras, x264 on one thread
                v.writer = on
            elif re.fullmatch(r"queue\d+", lever):  # frames a camera may have waiting before it drops
                v.queue_size = int(lever[5:]) if on else None
            elif re.fullmatch(r"decode\d+", lever):  # FFmpeg's threads per camera (0: one a core)
                v.decode_threads = int(lever[6:]) if on else 0
            elif re.fullmatch(r"workers\d+", lever):
                v.workers = int(lever[7:]) if on else 1
            elif lever == "retry":  # a box without a body is posed again only after a while
                v.overrides["pose_retry_s"] = Defaults.pose_retry_s if on else 0.0
            elif lever == "budget":  # at most 4 landmark runs a camera frame; still people wait their turn
                v.overrides["pose_budget"] = Defaults.pose_budget if on else 0
            elif re.fullmatch(r"budget\d+", lever):
                v.overrides["pose_budget"] = int(lever[6:]) if on else 0
            elif lever == "backoff":  # a box without a body waits twice as long after each miss in a row
                v.overrides["pose_retry_doublings"] = Defaults.pose_retry_doublings if on else 0
            elif re.fullmatch(r"backoff\d+", lever):  # ... doubling at most this many times
                v.overrides["pose_retry_doublings"] = int(lever[7:]) if on else 0
            elif re.fullmatch(r"refresh\d+", lever):  # a followed pose's full estimate every N seconds
                every = float(lever[7:]) if on else Defaults.pose_track_refresh_s
                v.overrides["pose_track_refresh_s"] = every
            elif lever == "hips":  # a followed pose's hips may lie below its box (a desk hides them)
                v.overrides["follow_hips_below"] = Defaults.follow_hips_below if on else 0.0
            elif lever == "strain":  # a camera falling behind sheds pose work (budget 2) before frames
                v.overrides["strain_waiting"] = Defaults.strain_waiting if on else 10**6
            elif re.fullmatch(r"strain\d+", lever):  # ... from this many waiting frames on
                v.overrides["strain_waiting"] = int(lever[6:]) if on else 10**6
            elif lever == "clock":  # the pose schedule counts analysed frames when the service falls behind
                v.overrides["frame_clock"] = on
            elif lever == "ov":  # the OpenVINO export of the same weights (any input size)
                v.detector = "openvino" if on else "tflite"
            elif lever == "ovq":  # that OpenVINO model quantized to int8 (`vision.convert --int8`)
                v.detector = "openvino-int8" if on else "tflite"
            elif lever == "ovv":  # ... for video frames only, still images on the TFLite model
                v.video_detector = "openvino-int8" if on else "same"
            elif re.fullmatch(r"imgsz\d+", lever):  # every picture's detector input (any-size weights only)
                n = int(lever[5:])
                if on:
                    v.overrides.update(imgsz=n, video_imgsz=n)
                else:
                    v.overrides.update(imgsz=Defaults.imgsz, video_imgsz=Defaults.video_imgsz)
            elif lever == "wristnative":  # wrist crops at their own size, 320 to 640 (any-size weights)
                v.overrides["wrist_native"] = on
            elif lever == "videosz":  # video frames at 544 on their long side (any-size weights)
                v.overrides["video_imgsz"] = Defaults.video_imgsz if on else Defaults.imgsz
            elif re.fullmatch(r"videosz\d+", lever):
                v.overrides["video_imgsz"] = int(lever[7:]) if on else Defaults.imgsz
            elif lever == "wristvideo":  # a video frame's crops at most a 480 square, not 640
                v.overrides["wrist_video_imgsz"] = Defaults.wrist_video_imgsz if on else Defaults.imgsz
            elif re.fullmatch(r"wristvideo\d+", lever):  # ... at most this input
                v.overrides["wrist_video_imgsz"] = int(lever[10:]) if on else Defaults.imgsz
            elif re.fullmatch(r"wristsz\d+", lever):  # wrist crops' detector input (any-size weights)
                v.overrides["wrist_imgsz"] = int(lever[7:]) if on else Defaults.imgsz
            else:
                raise ValueError(f"unknown lever {lever!r} in {spec!r}; levers: {', '.join(LEVERS)}")
        return v

    def options_factory(self, stages_ms: dict[str, float], counts: dict[str, int]) -> Callable[[Any], Any]:
        """Per-camera PipelineOptions sharing one pair of accumulators (totals over all cameras)."""
        from vision.pipeline import PipelineOptions, zone_pose_filter

        def make(camera: Any) -> PipelineOptions:
            zones = self.zones if self.zones is not None else self.mode == "fast"
            options = PipelineOptions.for_mode(
                self.mode,
                fps=float(camera.fps),
                pose_filter=zone_pose_filter(camera.zones) if zones else None,
                **self.overrides,
            )
            options.stages_ms, options.counts = stages_ms, counts
            return options

        return make


# ============================================================================= child: one measurement


def chair_zones() -> list[dict[str, Any]]:
    """The zones of examples/chair_clip.yaml's camera: one source for the chair clip's post."""
    import yaml

    return yaml.safe_load(CHAIR_SITE.read_text(encoding="utf-8"))["cameras"][0]["zones"]


def write_site(folder: Path, streams: int) -> Path:
    """A site file of `streams` cameras over the benchmark clips (absolute paths, nothing copied)."""
    import yaml

    cameras = []
    for i in range(streams):
        clip = CLIPS[i % len(CLIPS)]
        cam: dict[str, Any] = {"id": f"cam{i}", "source": str((MEDIA / clip).resolve()), "fps": FPS}
        if clip == CLIPS[0]:
            cam["frame_size"] = [480, 848]
            cam["zones"] = chair_zones()
        cameras.append(cam)
    site = {"name": "bench", "cameras": cameras, "clauses": {"d1.reception.02": {"empty_s": 0.5}}}
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False), encoding="utf-8")
    return path


class DecodeClock:
    """Wraps the serve opener: the time spent inside each source's frame generator is decoding."""

    def __init__(self) -> None:
        self.ms = 0.0
        self.frames = 0
        self._lock = threading.Lock()

    def opener(self, base: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def open_timed(camera: Any) -> Any:
            source = base(camera)
            inner = source._frames  # the generator FrameSource.__iter__ drives

            def frames() -> Iterator[Any]:
                it = inner()
                while True:
                    t0 = time.perf_counter()
                    try:
                        frame = next(it)
                    except StopIteration:
                        return
                    ms = (time.perf_counter() - t0) * 1000.0
                    with self._lock:
                        self.ms += ms
                        self.frames += 1
                    yield frame

            source._frames = frames
            return source

        return open_timed


def timed_rules(clock: dict[str, float]) -> type:
    """`CameraRules` whose `update` adds its time to clock["rules"] (the worker imports it by name)."""
    from service.session import CameraRules

    class TimedRules(CameraRules):
        def update(self, obs: Any, image: Any = None) -> list[Any]:
            t0 = time.perf_counter()
            try:
                return super().update(obs, image)
            finally:
                clock["rules"] = clock.get("rules", 0.0) + (time.perf_counter() - t0) * 1000.0

    return TimedRules


def measure(variant: Variant, streams: int, seconds: float, warmup: float, weights: str | None) -> dict:
    """Run the service for warm-up + `seconds` and return the figures of the measured window."""
    import service.workers as workers
    from service.models import utcnow
    from service.serve import build_service
    from service.store import ALERT_OPENED
    from service.workers import ModelAnalysers, WorkerOptions, default_opener

    rules_ms: dict[str, float] = {}
    workers.CameraRules = timed_rules(rules_ms)  # type: ignore[misc]
    stages_ms: dict[str, float] = {}
    counts: dict[str, int] = {}
    decode = DecodeClock()
    latencies: list[dict[str, Any]] = []
    measuring = threading.Event()

    def on_alert(event: Any) -> None:
        alert = event.alert
        if alert is None or not alert.open or not measuring.is_set():
            return  # closed on opening: the completing frame's time cannot be recovered
        frame_at = alert.started_at + timedelta(seconds=alert.duration_s)
        lag = (utcnow() - frame_at).total_seconds()
        latencies.append({"camera": alert.camera, "clause": alert.clause, "latency_s": round(lag, 3)})

    with tempfile.TemporaryDirectory(prefix="postwatch-bench-") as tmp:
        folder = Path(tmp)
        site_path = write_site(folder, streams)
        if not variant.writer:
            from service import clips

            clips.WRITER_NICE, clips.X264_THREADS = 0, "0"
        t_load = time.perf_counter()
        analysers = ModelAnalysers(
            variant.weights(weights),
            mode=variant.mode,
            detector_threads=variant.threads,
            tflite_any_size=variant.rect,
            lean_detector=variant.lean,
            options=variant.options_factory(stages_ms, counts),
            video_weights=variant.video_weights(),
        )
        load_s = time.perf_counter() - t_load
        service = build_service(
            site_path,
            db=str(folder / "bench.db"),
            out_dir=folder / "media",
            realtime=True,
            loop_files=True,
            analysers=analysers,
            opener=decode.opener(default_opener(folder, variant.decode_threads)),
            worker_options=WorkerOptions(
                inference_threads=variant.workers,
                detect_pairs=variant.pairs,
                decode_threads=variant.decode_threads,
                **({} if variant.queue_size is None else {"queue_size": variant.queue_size}),
            ),
        )
        service.store.subscribe(on_alert, [ALERT_OPENED])
        pool = service.pool
        service.start()
        try:
            time.sleep(warmup)
            start = _snapshot(pool, stages_ms, counts, rules_ms, decode)
            measuring.set()
            time.sleep(seconds)
            measuring.clear()
            end = _snapshot(pool, stages_ms, counts, rules_ms, decode)
        finally:
            service.stop()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures = _figures(variant, streams, start, end, latencies, peak_kb, load_s)
    video = getattr(analysers.detector, "video", None)
    figures["video_detector"] = Path(str(video.weights)).name if video is not None else None
    return figures


def _snapshot(pool: Any, stages: dict, counts: dict, rules: dict, decode: DecodeClock) -> dict[str, Any]:
    cpu = os.times()
    return {
        "wall": time.perf_counter(),
        "cpu": cpu.user + cpu.system,
        "frames": sum(w.frames for w in pool.workers.values()),
        "dropped": sum(w.dropped for w in pool.workers.values()),
        "per_camera": {cid: w.frames for cid, w in pool.workers.items()},
        "dropped_per_camera": {cid: w.dropped for cid, w in pool.workers.items()},
        "stages_ms": dict(stages),
        "counts": dict(counts),
        "rules_ms": rules.get("rules", 0.0),
        "decode_ms": decode.ms,
        "decoded": decode.frames,
    }


def _figures(
    variant: Variant, streams: int, a: dict, b: dict, latencies: list[dict], peak_kb: int, load_s: float
) -> dict[str, Any]:
    wall = b["wall"] - a["wall"]
    frames = b["frames"] - a["frames"]
    per_frame = max(frames, 1)
    from vision.pipeline import STAGES

    stages = {s: (b["stages_ms"].get(s, 0.0) - a["stages_ms"].get(s, 0.0)) / per_frame for s in STAGES}
    stages["rules"] = (b["rules_ms"] - a["rules_ms"]) / per_frame
    decoded = b["decoded"] - a["decoded"]
    stages["decode"] = (b["decode_ms"] - a["decode_ms"]) / max(decoded, 1)
    counts = {k: b["counts"].get(k, 0) - a["counts"].get(k, 0) for k in b["counts"]}
    per_cam = {c: (b["per_camera"][c] - a["per_camera"].get(c, 0)) / wall for c in b["per_camera"]}
    return {
        "variant": variant.name,
        "streams": streams,
        "seconds": round(wall, 1),
        "frames": frames,
        "fps": round(frames / wall, 2),
        "rtf": round(frames / wall / FPS / streams, 3),
        "rtf_min_camera": round(min(per_cam.values()) / FPS, 3) if per_cam else None,
        "fps_per_camera": {c: round(v, 2) for c, v in per_cam.items()},
        "dropped": b["dropped"] - a["dropped"],
        "dropped_per_camera": {
            c: n - a["dropped_per_camera"].get(c, 0) for c, n in b["dropped_per_camera"].items()
        },
        "cpu_share": round((b["cpu"] - a["cpu"]) / wall / (os.cpu_count() or 1), 3),
        "cpu_ms_per_frame": round((b["cpu"] - a["cpu"]) * 1000.0 / per_frame, 1),
        "stages_ms": {k: round(v, 1) for k, v in stages.items()},
        "counts": counts,
        "alerts": len(latencies),
        "alert_clauses": sorted({x["clause"] for x in latencies}),
        "latency_s": latency_summary(latencies),
        "latencies": latencies,
        "peak_rss_mb": round(peak_kb / 1024.0, 1),
        "model_load_s": round(load_s, 1),
    }


def latency_summary(latencies: list[dict[str, Any]]) -> dict[str, float | None]:
    lags = sorted(x["latency_s"] for x in latencies)
    return {
        "median": lags[len(lags) // 2] if lags else None,
        "p90": lags[min(len(lags) - 1, int(0.9 * len(lags)))] if lags else None,
        "max": lags[-1] if lags else None,
    }


# ============================================================================= parent: the run


def machine() -> dict[str, Any]:
    """What the figures were measured on (they mean little without it)."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    from vision.detect import int8_dot_products

    info["int8_dot_products"] = int8_dot_products()  # where `fast` runs video frames on OpenVINO
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()
        info["memory_gb"] = round(int(mem[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return info


def revision() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def command_line(args: argparse.Namespace) -> str:
    """The command that repeats this run (without where its JSON went)."""
    parts = ["bench/throughput.py", f"--streams {args.streams}", f"--seconds {args.seconds:g}"]
    parts += [f"--warmup {args.warmup:g}", f"--mode {args.mode}"]
    if args.repeat != 1:
        parts.append(f"--repeat {args.repeat}")
    if args.levers:
        parts.append("--levers" + (f" --lever-streams {args.lever_streams}" if args.lever_streams else ""))
    if args.weights:
        parts.append(f"--weights {args.weights}")
    return " ".join(parts)


def run_child(spec: str, streams: int, args: argparse.Namespace) -> dict[str, Any]:
    """One measurement in a fresh process; a failure is recorded, not raised."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        spec,
        "--streams",
        str(streams),
        "--seconds",
        str(args.seconds),
        "--warmup",
        str(args.warmup),
        "--json",
        str(out),
    ]
    if args.weights:
        cmd += ["--weights", args.weights]
    limit = args.seconds + args.warmup + 180
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            return {"variant": spec, "streams": streams, "error": " | ".join(tail)}
        return json.loads(out.read_text())
    except subprocess.TimeoutExpired:
        return {"variant": spec, "streams": streams, "error": f"timed out after {limit:.0f} s"}
    finally:
        out.unlink(missing_ok=True)


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The repeats of one (variant, N): medians of the rates and stage times, latencies pooled.

    Why medians: on a shared machine one repeat can lose half its CPU to a neighbour's job; the
    median of interleaved repeats is what the levers, not the neighbours, did."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]

    def med(values: list[float]) -> float:
        values = sorted(values)
        n = len(values)
        return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2

    out = dict(ok[0])
    for key in (
        "fps",
        "rtf",
        "rtf_min_camera",
        "cpu_share",
        "cpu_ms_per_frame",
        "peak_rss_mb",
        "model_load_s",
    ):
        vals = [r[key] for r in ok if r.get(key) is not None]
        out[key] = round(med(vals), 3) if vals else None
    out["stages_ms"] = {
        k: round(med([r["stages_ms"].get(k, 0.0) for r in ok]), 1) for k in ok[0]["stages_ms"]
    }
    out["frames"] = sum(r["frames"] for r in ok)
    out["dropped"] = sum(r["dropped"] for r in ok)
    by_camera = [r.get("dropped_per_camera", {}) for r in ok]
    cams = sorted({c for d in by_camera for c in d})
    out["dropped_per_camera"] = {c: sum(d.get(c, 0) for d in by_camera) for c in cams}
    out["seconds"] = round(sum(r["seconds"] for r in ok), 1)
    out["counts"] = {k: sum(r["counts"].get(k, 0) for r in ok) for k in {k for r in ok for k in r["counts"]}}
    out["latencies"] = [x for r in ok for x in r["latencies"]]
    out["alerts"] = len(out["latencies"])
    out["alert_clauses"] = sorted({x["clause"] for x in out["latencies"]})
    out["latency_s"] = latency_summary(out["latencies"])
    out["repeats"] = len(ok)
    out["fps_runs"] = [r["fps"] for r in ok]
    out["failed_runs"] = len(runs) - len(ok)
    return out


def add_ratios(results: list[dict[str, Any]]) -> None:
    """Each result against plain at the same stream count, measured in the same run."""
    plain = {r["streams"]: r for r in results if r.get("variant") == "plain" and "error" not in r}
    for r in results:
        base = plain.get(r["streams"])
        if base is None or "error" in r:
            continue
        r["vs_plain"] = {
            "fps": _ratio(r["fps"], base["fps"]),
            "rtf": _ratio(r["rtf"], base["rtf"]),
            "latency_median": _ratio(r["latency_s"]["median"], base["latency_s"]["median"]),
            "cpu_ms_per_frame": _ratio(r["cpu_ms_per_frame"], base["cpu_ms_per_frame"]),
            "peak_rss": _ratio(r["peak_rss_mb"], base["peak_rss_mb"]),
        }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 2)


def table(results: list[dict[str, Any]]) -> str:
    head = (
        f"{'variant':<22}{'N':>3}{'fps':>7}{'RTF':>6}{'xplain':>7}{'lat med/max s':>15}{'RSS MB':>8}"
        f"{'drop':>6}{'cpu':>5}{'cpu ms/f':>9}  stage ms/frame"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        if "error" in r:
            lines.append(f"{r['variant']:<22}{r['streams']:>3}  failed: {r['error']}")
            continue
        lat = r["latency_s"]
        lat_s = "-" if lat["median"] is None else f"{lat['median']:.2f}/{lat['max']:.2f}"
        ratio = (r.get("vs_plain") or {}).get("fps")
        st = " ".join(f"{k}={r['stages_ms'][k]:.0f}" for k in STAGE_ORDER if r["stages_ms"].get(k))
        lines.append(
            f"{r['variant']:<22}{r['streams']:>3}{r['fps']:>7.1f}{r['rtf']:>6.2f}"
            f"{'' if ratio is None else f'{ratio:.2f}':>7}{lat_s:>15}{r['peak_rss_mb']:>8.0f}"
            f"{r['dropped']:>6}{r['cpu_share']:>5.2f}{r['cpu_ms_per_frame']:>9.0f}  {st}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--streams", default="1,2,4,8", help="comma-separated camera counts (default 1,2,4,8)"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds per run (default 30)")
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds before measuring (default 8)")
    parser.add_argument(
        "--mode",
        default="plain,fast",
        help="comma-separated variants: plain, fast, or either with +lever/-lever "
        "(motion, reuse, reusebox, track, wrist, crops<k>, zones, every<k>, threads<n>, "
        "workers<n>, pair, slow); "
        "plain always runs first",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each configuration, interleaved; medians reported"
    )
    parser.add_argument("--levers", action="store_true", help="also run each lever alone on plain")
    parser.add_argument(
        "--lever-streams", default=None, help="stream counts for --levers (default: the largest of --streams)"
    )
    parser.add_argument(
        "--weights", default=None, help="detector weights (default: models/ as serve finds them)"
    )
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:  # one measurement, in this process
        result = measure(
            Variant.parse(args.child), int(args.streams), args.seconds, args.warmup, args.weights
        )
        Path(args.json).write_text(json.dumps(result))
        return 0

    missing = [c for c in CLIPS if not (MEDIA / c).exists()]
    if missing:
        print(
            f"../shared/media lacks {', '.join(missing)}: the benchmark needs the shared clips",
            file=sys.stderr,
        )
        return 2
    streams = [int(s) for s in args.streams.split(",") if s.strip()]
    specs = [s.strip() for s in args.mode.split(",") if s.strip()]
    for s in specs:
        Variant.parse(s)  # fail on a typo before an hour of measuring
    if "plain" in specs:
        specs.remove("plain")
    specs.insert(0, "plain")
    lever_streams = [int(s) for s in args.lever_streams.split(",")] if args.lever_streams else [max(streams)]
    plan = [(s, n) for n in streams for s in specs]
    if args.levers:
        plan += [(f"plain+{lv}", n) for n in lever_streams for lv in SINGLE_LEVERS]
        plan.sort(key=lambda p: (p[1], p[0] != "plain"))  # plain first at every N
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    started = time.time()
    total = len(plan) * args.repeat
    done = 0
    for _round in range(args.repeat):  # interleaved: a neighbour's burst hits one repeat of each
        for spec, n in plan:
            done += 1
            print(f"[{done}/{total}] {spec} x{n} ...", file=sys.stderr, flush=True)
            result = run_child(spec, n, args)
            runs.setdefault((spec, n), []).append(result)
            add_ratios([*[combine(v) for k, v in runs.items() if k == ("plain", n)], result])
            print(table([result]).splitlines()[-1], file=sys.stderr, flush=True)
    results = [combine(runs[key]) for key in plan]
    add_ratios(results)
    report = {
        "date": date.today().isoformat(),
        "revision": revision(),
        "machine": machine(),
        "harness": "service.serve.build_service, realtime pacing, looped files, SQLite AlertStore",
        "analysis_fps": FPS,
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "repeat": args.repeat,
        "clips": [CLIPS[i % len(CLIPS)] for i in range(max(streams + lever_streams))],
        "command": command_line(args),
        "wall_s": round(time.time() - started, 1),
        "results": results,
    }
    print(table(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        print(f"written {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
