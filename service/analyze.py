"""`postwatch analyze`: one source through vision and rules into files.

Alerts are appended to `alerts.jsonl` as soon as they close (and the ones
still open when the source ends are closed then), so an interrupted run keeps
what it found. Each alert gets the snapshot of the frame where it was clearest.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2

from calibration.site import Site
from rules.violation import Violation
from service.session import CameraRules
from vision.observation import FrameObservation
from vision.sources import open_source

SNAPSHOT_MEMORY_S = 12.0  # how far back the clearest frame of a violation can be found


def run_analysis(
    spec: str,
    out: Path,
    *,
    fps: float = 5.0,
    camera: str = "cam0",
    role: str = "front_desk",
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    dump: bool = False,
    annotate: bool = False,
    weights: str | None = None,
    video_weights: str | None = None,
    progress: bool = False,
    site: Site | None = None,
    site_camera: str | None = None,
) -> dict[str, Any]:
    from vision.detect import Detector
    from vision.pipeline import Pipeline, PipelineOptions
    from vision.pose import PoseEstimator

    cam = None
    if site is not None:
        cam = site.camera(site_camera) if site_camera else site.cameras[0]
        camera = cam.id
    engine = CameraRules(camera, role=role, overrides=overrides or {}, site=site, camera=cam)
    out.mkdir(parents=True, exist_ok=True)
    (out / "snapshots").mkdir(exist_ok=True)
    alerts_path = out / "alerts.jsonl"
    alerts_path.write_text("", encoding="utf-8")
    obs_file = (out / "observations.jsonl").open("w", encoding="utf-8") if dump else None
    writer: cv2.VideoWriter | None = None
    annotator = None
    if annotate:
        from vision.annotate import Annotator

        annotator = Annotator()

    # A violation is known by (clause, track, start): events carry copies of the engine's objects.
    best_frames: dict[tuple, bytes] = {}  # key -> JPEG of its clearest frame so far
    # The clearest frame often comes before the sustain elapses: keep the last seconds as JPEGs.
    recent: deque[tuple[float, bytes]] = deque(maxlen=int(fps * SNAPSHOT_MEMORY_S) + 1)
    written: set[tuple] = set()
    snapshots: dict[str, Path] = {}  # caption -> snapshot file, for the audit page
    count = 0
    frames = 0
    last_t = 0.0

    def write_closed(violations: list[Violation]) -> None:
        nonlocal count
        with alerts_path.open("a", encoding="utf-8") as fh:
            for v in violations:
                if _key(v) in written:
                    continue
                written.add(_key(v))
                jpeg = best_frames.pop(_key(v), None)
                if jpeg is not None:
                    count += 1
                    path = out / "snapshots" / f"{count:04d}_{v.clause}_{v.track_id}.jpg"
                    path.write_bytes(jpeg)
                    v.snapshot = str(path.relative_to(out))
                    snapshots[f"{v.clause} track {v.track_id} {v.start_s:.1f} s"] = path
                fh.write(json.dumps(v.to_dict(), ensure_ascii=False) + "\n")

    with open_source(spec, camera=camera, fps=fps) as source:
        detector = Detector(weights, video_weights=video_weights)
        pipeline = Pipeline(detector, PoseEstimator(), PipelineOptions(fps=fps), camera=camera)
        info = source.info
        iterator = source
        bar = None
        if progress:
            from tqdm import tqdm

            total = None
            if info.duration_s:
                total = int(info.duration_s * min(fps, info.native_fps or fps)) + 1
            bar = tqdm(total=total, unit="frame", desc=Path(spec).name[:30], leave=False)
        for frame in iterator:
            obs = pipeline.process(frame)
            frames += 1
            last_t = frame.t
            events = engine.update(obs, frame.image)
            recent.append((obs.t, cv2.imencode(".jpg", frame.image)[1].tobytes()))
            for v in engine.open_violations():
                if v.snapshot_t is None:
                    continue
                kept = next((jpeg for t, jpeg in reversed(recent) if abs(t - v.snapshot_t) < 1e-6), None)
                if kept is not None:
                    best_frames[_key(v)] = kept
                elif _key(v) not in best_frames:  # older than the memory: the opening frame stands in
                    best_frames[_key(v)] = recent[-1][1]
            closed = [e.violation for e in events if e.kind == "closed"]
            if closed:
                write_closed(closed)
            if obs_file is not None:
                obs_file.write(obs.to_json() + "\n")
            if annotator is not None:
                active: dict[int, list[str]] = {}
                for v in engine.open_violations():
                    if v.track_id is not None:
                        active.setdefault(v.track_id, []).append(v.clause)
                drawn = annotator.draw(frame.image, obs, active)
                if writer is None:
                    h, w = drawn.shape[:2]
                    writer = cv2.VideoWriter(
                        str(out / "annotated.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h)
                    )
                writer.write(drawn)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        problems = list(source.problems)
    engine.finish(last_t)
    write_closed([v for v in engine.violations])
    if obs_file is not None:
        obs_file.close()
    if writer is not None:
        writer.release()
    reports = engine.reports()
    if reports:
        (out / "reports.json").write_text(json.dumps(reports, ensure_ascii=False, indent=1), encoding="utf-8")
    if engine.audit is not None:  # a printable shift audit for the security team
        (out / "audit.html").write_text(engine.audit.to_html(snapshots), encoding="utf-8")
    lines = [
        f"{v.clause} {'track ' + str(v.track_id) if v.track_id is not None else 'zone'} "
        f"{v.start_s:.1f}-{(v.end_s or last_t):.1f} s: {v.message}"
        for v in engine.violations
    ]
    return {
        "frames": frames,
        "seconds": last_t,
        "alerts": len(engine.violations),
        "lines": lines,
        "problems": problems,
    }


def _key(v: Violation) -> tuple:
    return (v.clause, v.track_id, round(v.start_s, 6))


def read_alerts(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def observations_of(path: Path) -> list[FrameObservation]:
    from vision.observation import read_jsonl

    return read_jsonl(str(path))
