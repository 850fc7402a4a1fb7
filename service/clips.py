"""Alert clips and snapshots: a few seconds before an alert to a few seconds after, annotated.

Why this shape:

* Every camera worker keeps a `FrameRing` of its recent analysed frames, JPEG-encoded, so
  memory stays bounded (about 50 kB a frame instead of 1.2 MB raw) however many cameras run;
  the "before" part of a clip comes from there.
* When an alert opens, `ClipRecorder.alert_opened` starts a clip job: the ring's frames
  from `before_s` before the opening, then every frame until `after_s` after it. Drawing
  (boxes, skeleton, zones, clause banner, face blurring) and encoding run in one writer
  thread, never in the inference thread, which only pays for the JPEG encode.
* Frames are encoded as they arrive into `<name>.part.mp4`; only the finished file is
  renamed to its final name (atomic on one filesystem) and only then registered with
  `store.set_media`. A service killed mid-clip leaves at most a `.part.mp4` file that no
  alert points to; `remove_partial_files` deletes those at the next start.
* Browsers (the review page runs in Chromium) play H.264 in MP4 but not MPEG-4 Part 2
  ("mp4v"), and the opencv-python wheel has no H.264 encoder. PyAV (already installed as
  a dependency of supervision) ships libx264, so clips are written with PyAV; cv2's mp4v is
  the fallback when no H.264 encoder is found (logged once: such clips download but do
  not play in the browser).
* Frames carry their stream time and the clip uses it as presentation time (variable
  frame rate), so a clip lasts as long as what it shows even when frames were dropped.
* Faces of everyone but the person concerned are blurred (on by default): the face region
  comes from the pose landmarks (nose, eyes, ears, mouth), else the top of the person's box.
  For alerts about a zone (an empty post: no person concerned) every face is blurred.
* cv2 draws only ASCII, so the banner shows the clause id and its English gloss; the
  Chinese clause text is added with Pillow when a CJK font is installed (`find_cjk_font`).

`purge_clips(store, media_root, older_than_days)` is the retention job: it deletes clip
files older than N days and clears the alerts' clip paths, keeping the alert rows.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from vision.pose import L_SHOULDER, R_SHOULDER

if TYPE_CHECKING:
    from calibration.site import Zone
    from rules.violation import Violation
    from service.store import Alert, AlertStore
    from vision.observation import FrameObservation, PersonObservation

log = logging.getLogger("postwatch.clips")

DEFAULT_BEFORE_S = 4.0
DEFAULT_AFTER_S = 6.0
PART = ".part"  # infix of files still being written: "alert-12.part.mp4"
JPEG_QUALITY = 80
FACE_LANDMARKS = tuple(range(11))  # BlazePose nose, eyes, ears, mouth
MAX_PENDING_OPS = 4000  # writer queue bound: past it frames are dropped from clips, never from analysis
# The clip writer runs this much nicer than the process (Linux: a thread has its own nice value), so
# an alert's burst of painting and encoding (its 4 s "before" part at once) waits for the cameras'
# analysis instead of making them drop frames; a clip only needs to be ready seconds later. 0: as
# the process.
WRITER_NICE = 10
# libx264's threads: 1 encodes in the writer's own thread (so its nice value applies), and took a
# quarter less CPU than x264's own choice (one a core and a half, plus lookahead) at the same size
# (848x480, veryfast: 11.9 against 15.7 ms a frame). "0": x264's choice.
X264_THREADS = "1"
ZONE_COLOURS = {
    "post": (80, 200, 80),
    "standby": (200, 160, 60),
    "staff_only": (60, 60, 230),
    "work": (200, 200, 200),
    "customer": (160, 160, 160),
}
CJK_FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simhei.ttf",
)


# -- the ring of recent frames -----------------------------------------------------------------


@dataclass
class BufferedFrame:
    """One analysed frame as kept for clips: JPEG bytes plus what is drawn over it."""

    t: float  # stream seconds
    at: datetime  # wall time it was captured
    jpeg: bytes
    obs: FrameObservation | None
    active: dict[int, list[str]]  # track id -> clause ids open on that person at this frame


class FrameRing:
    """The last `seconds` of one camera's analysed frames (by stream time), at most `max_frames`.

    Why JPEG: a clip needs a few seconds of frames before the alert; raw 1080p frames
    are 6 MB each, a JPEG ~100 kB, so 16 cameras x 5 s x 5 fps stays under 50 MB.
    """

    def __init__(self, seconds: float, max_frames: int = 600, quality: int = JPEG_QUALITY) -> None:
        self.seconds = float(seconds)
        self.quality = int(quality)
        self._frames: deque[BufferedFrame] = deque(maxlen=max_frames)
        self._lock = threading.Lock()

    def push(
        self,
        t: float,
        at: datetime,
        image: np.ndarray,
        obs: FrameObservation | None = None,
        active: Mapping[int, Sequence[str]] | None = None,
    ) -> BufferedFrame:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise ValueError("frame does not encode as JPEG")
        frame = BufferedFrame(
            float(t), at, buf.tobytes(), obs, {k: list(v) for k, v in (active or {}).items()}
        )
        with self._lock:
            if self._frames and t < self._frames[-1].t:
                self._frames.clear()
            self._frames.append(frame)
            while self._frames and self._frames[0].t < t - self.seconds - 1e-6:
                self._frames.popleft()
        return frame

    def since(self, t0: float) -> list[BufferedFrame]:
        with self._lock:
            return [f for f in self._frames if f.t >= t0 - 1e-6]

    def nearest(self, t: float | None) -> BufferedFrame | None:
        with self._lock:
            if not self._frames:
                return None
            if t is None:
                return self._frames[-1]
            return min(self._frames, key=lambda f: abs(f.t - t))

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(len(f.jpeg) for f in self._frames)


# -- drawing -------------------------------------------------------------------------------------


def face_box(person: PersonObservation, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """The face region of a person in pixels (x1, y1, x2, y2), generously padded, or None.

    From the face landmarks when pose saw at least two of them; else the top of the box
    (a head is about as wide as the shoulders, so a square of the box width, capped at a
    third of its height).
    """
    h, w = shape[:2]
    x1, y1, x2, y2 = (float(v) for v in person.box)
    kp, vis = person.keypoints, person.visibility
    if kp is not None and vis is not None:
        pts = np.array([kp[i] for i in FACE_LANDMARKS if vis[i] >= 0.3], dtype=float)
        if len(pts) >= 2:
            cx, cy = pts.mean(axis=0)
            spread = float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1])))
            shoulders = (
                float(np.linalg.norm(kp[L_SHOULDER] - kp[R_SHOULDER])) if vis[L_SHOULDER] > 0.3 else 0.0
            )
            half = max(spread * 0.9, shoulders * 0.35, 0.06 * (y2 - y1), 10.0)
            return _clip_box((cx - half, cy - half * 1.2, cx + half, cy + half), w, h)
    bw, bh = x2 - x1, y2 - y1
    if bw <= 0 or bh <= 0:
        return None
    side = min(bw, bh / 3)
    cx = (x1 + x2) / 2
    return _clip_box((cx - side / 2, y1, cx + side / 2, y1 + side), w, h)


def _clip_box(box: tuple[float, float, float, float], w: int, h: int) -> tuple[int, int, int, int] | None:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    return (x1, y1, x2, y2) if x2 - x1 >= 2 and y2 - y1 >= 2 else None


def blur_region(image: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """Pixelate then blur `box` in place: unrecognisable, yet plainly a blurred face."""
    x1, y1, x2, y2 = box
    roi = image[y1:y2, x1:x2]
    if roi.size == 0:
        return
    small = cv2.resize(
        roi, (max(1, roi.shape[1] // 10), max(1, roi.shape[0] // 10)), interpolation=cv2.INTER_AREA
    )
    coarse = cv2.resize(small, (roi.shape[1], roi.shape[0]), interpolation=cv2.INTER_NEAREST)
    k = max(3, (min(roi.shape[:2]) // 4) | 1)
    image[y1:y2, x1:x2] = cv2.GaussianBlur(coarse, (k, k), 0)


def blur_faces(image: np.ndarray, obs: FrameObservation | None, keep_track: int | None) -> int:
    """Blur the face of every person in `obs` except track `keep_track`; returns how many."""
    if obs is None:
        return 0
    count = 0
    for person in obs.persons:
        if keep_track is not None and person.track_id == keep_track:
            continue
        box = face_box(person, image.shape)
        if box is not None:
            blur_region(image, box)
            count += 1
    return count


def find_cjk_font(explicit: str | os.PathLike[str] | None = None) -> str | None:
    """A font file with Chinese glyphs: `explicit`, else fontconfig's answer, else a known path."""
    if explicit:
        return str(explicit) if Path(explicit).is_file() else None
    if shutil.which("fc-list"):
        try:
            out = subprocess.run(
                ["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=5, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            path = line.strip().rstrip(":").strip()
            if path and Path(path).is_file():
                return path
    return next((p for p in CJK_FONT_CANDIDATES if Path(p).is_file()), None)


def _fit(text: str, width: int, scale: float, thickness: int) -> str:
    """`text` cut (with an ellipsis) to fit `width` pixels in cv2's simplex font."""
    if cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] <= width:
        return text
    while text and cv2.getTextSize(text + "...", cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] > width:
        text = text[:-1]
    return text.rstrip() + "..."


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")


@dataclass
class Banner:
    """What a clip says about its alert, on top of every frame."""

    alert_id: int
    clause: str
    gloss: str
    text_zh: str
    site: str
    camera: str

    @classmethod
    def of(cls, alert_id: int, clause: str, site: str, camera: str) -> Banner:
        from rules.catalogue import load_catalogue

        catalogue = load_catalogue()
        gloss, zh = "", ""
        if clause in catalogue:
            c = catalogue.get(clause)
            gloss, zh = c.gloss, (c.text_zh[0] if c.text_zh else "")
        return cls(alert_id, clause, " ".join(gloss.split()), zh, site, camera)


class Painter:
    """Draws one clip frame: blurred faces, zones, persons (boxes, skeleton, clauses), banner."""

    def __init__(self, blur: bool = True, font_path: str | None = None) -> None:
        from vision.annotate import Annotator

        self.blur = blur
        self.annotator = Annotator()
        self.font_path = font_path
        self._font: Any = None
        if font_path:
            try:
                from PIL import ImageFont

                self._font = ImageFont.truetype(font_path, 18)
            except Exception:  # a broken font only costs the Chinese line
                log.warning("cannot load font %s; clips show clause ids and English only", font_path)

    def paint(
        self,
        frame: BufferedFrame,
        banner: Banner,
        zones: Sequence[Zone] = (),
        track_id: int | None = None,
    ) -> np.ndarray:
        image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
        if self.blur:
            blur_faces(image, frame.obs, track_id)
        for zone in zones:
            colour = ZONE_COLOURS.get(zone.kind, (200, 200, 200))
            pts = np.array(zone.polygon, dtype=np.int32).reshape(-1, 1, 2)
            cv2.polylines(image, [pts], True, colour, 2, cv2.LINE_AA)
            x, y = (int(v) for v in zone.polygon[0])
            cv2.putText(
                image,
                _ascii(zone.name),
                (x + 4, max(y - 6, 12)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                colour,
                1,
                cv2.LINE_AA,
            )
        if frame.obs is not None and frame.obs.persons:
            image = self.annotator.draw(image, frame.obs, frame.active)
        return self._banner(image, frame, banner)

    def _banner(self, image: np.ndarray, frame: BufferedFrame, banner: Banner) -> np.ndarray:
        w = image.shape[1]
        lines = [
            f"#{banner.alert_id} {banner.clause}",
            banner.gloss,
            f"{banner.camera}  t={frame.t:.1f}s  {frame.at.astimezone():%Y-%m-%d %H:%M:%S}",
        ]
        zh = bool(self._font is not None and banner.text_zh)
        height = 8 + 20 * len(lines) + (24 if zh else 0)
        overlay = image.copy()
        cv2.rectangle(overlay, (0, 0), (w, height), (0, 0, 0), -1)
        image = cv2.addWeighted(overlay, 0.55, image, 0.45, 0)
        y = 20
        for i, text in enumerate(lines):
            scale, colour = (0.55, (0, 200, 255)) if i == 0 else (0.42, (255, 255, 255))
            if text:
                cv2.putText(
                    image,
                    _fit(_ascii(text), w - 12, scale, 1),
                    (6, y),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    scale,
                    colour,
                    1,
                    cv2.LINE_AA,
                )
            y += 20
        if zh:
            from PIL import Image, ImageDraw

            pil = Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            ImageDraw.Draw(pil).text((6, y - 14), banner.text_zh, font=self._font, fill=(255, 255, 255))
            image = cv2.cvtColor(np.asarray(pil), cv2.COLOR_RGB2BGR)
        return image


# -- encoding ------------------------------------------------------------------------------------


def h264_encoder() -> str | None:
    """The PyAV H.264 encoder to use (libx264, else OpenH264), or None when there is none."""
    try:
        import av
    except ImportError:
        return None
    available = av.codecs_available
    return next((name for name in ("libx264", "libopenh264") if name in available), None)


class ClipEncoder:
    """Writes BGR frames with their times into an MP4 at `path`: H.264 via PyAV, else mp4v via cv2."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], codec: str | None = "auto") -> None:
        self.path = path
        self.fps = max(float(fps), 1.0)
        w, h = size
        self.size = (w - w % 2, h - h % 2)  # yuv420p needs even sides
        self.codec = h264_encoder() if codec == "auto" else codec
        self.frames = 0
        self._t0: float | None = None
        self._last_ms = -1
        self._container: Any = None
        self._stream: Any = None
        self._writer: Any = None
        if self.codec:
            import av

            self._container = av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"})
            stream = self._container.add_stream(self.codec, rate=int(round(self.fps)))
            stream.width, stream.height = self.size
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = Fraction(1, 1000)
            if self.codec == "libx264":
                stream.options = {"crf": "26", "preset": "veryfast", "threads": X264_THREADS}
            self._stream = stream
        else:
            _warn_mp4v_once()
            self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size)
            if not self._writer.isOpened():
                raise RuntimeError(f"cannot open a video writer for {path}")

    def write(self, image: np.ndarray, t: float) -> None:
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        if self._t0 is None:
            self._t0 = t
        if self._writer is not None:
            self._writer.write(image)
            self.frames += 1
            return
        import av

        ms = int(round((t - self._t0) * 1000))
        if ms <= self._last_ms:  # presentation times must increase
            ms = self._last_ms + 1
        self._last_ms = ms
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame.pts, frame.time_base = ms, Fraction(1, 1000)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._container is not None:
            try:
                for packet in self._stream.encode():
                    self._container.mux(packet)
            finally:
                self._container.close()
                self._container = None


def _be_nicer(increment: int) -> None:
    """Raise the calling thread's nice value by `increment` where the OS gives threads their own
    (Linux); elsewhere, or where it is refused, the thread keeps the process's priority."""
    if increment <= 0 or not sys.platform.startswith("linux") or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except OSError as exc:
        log.debug("clip writer keeps the process's priority: %s", exc)


_warned_mp4v = threading.Event()


def _warn_mp4v_once() -> None:
    if not _warned_mp4v.is_set():
        _warned_mp4v.set()
        log.warning(
            "no H.264 encoder (PyAV with libx264) found: clips are written as mp4v, "
            "which browsers do not play"
        )


# -- the recorder --------------------------------------------------------------------------------


def _slug(value: str) -> str:
    """A path segment from an id: letters, digits, dot, dash, underscore."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", value).strip("._") or "_"


@dataclass
class ClipJob:
    """One alert's clip being collected: the window, where it goes, what to draw."""

    alert_id: int
    site: str
    camera: str
    track_id: int | None
    open_t: float
    end_t: float
    fps: float
    banner: Banner
    zones: list[Any]
    final: Path  # absolute final path
    relative: str  # as stored on the alert (relative to the media root)
    last_t: float = -1e18
    encoder: ClipEncoder | None = None
    failed: bool = False

    @property
    def part(self) -> Path:
        return self.final.with_name(self.final.stem + PART + self.final.suffix)


class ClipRecorder:
    """Turns alert openings into snapshot JPEGs and annotated MP4 clips, off the inference thread.

    The camera worker calls `add_frame` for every analysed frame and `alert_opened` for
    every alert it stores; `camera_ended` when its stream ends or stops (pending clips are
    finished with what they have); `close` at shutdown. Paths stored on alerts are
    relative to `media_root` (the API's `media_root`).
    """

    def __init__(
        self,
        store: AlertStore,
        media_root: str | os.PathLike[str],
        *,
        before_s: float = DEFAULT_BEFORE_S,
        after_s: float = DEFAULT_AFTER_S,
        blur_faces: bool = True,
        font_path: str | None = None,
        codec: str | None = "auto",
        jpeg_quality: int = JPEG_QUALITY,
    ) -> None:
        if before_s < 0 or after_s < 0:
            raise ValueError("clip before_s and after_s must not be negative")
        self.store = store
        self.media_root = Path(media_root)
        self.before_s, self.after_s = float(before_s), float(after_s)
        self.blur_faces = blur_faces
        self.font_path = find_cjk_font(font_path)
        self.codec = codec
        self.jpeg_quality = jpeg_quality
        self._rings: dict[tuple[str, str], FrameRing] = {}
        self._jobs: dict[tuple[str, str], list[ClipJob]] = {}
        self._lock = threading.Lock()
        self._ops: queue.Queue[tuple[str, Any, Any]] = queue.Queue()
        self._busy = 0
        self._idle = threading.Condition()
        self.written: list[int] = []  # alert ids whose clips were registered (for logs and tests)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="clip-writer", daemon=True)
        self._thread.start()

    # -- called by camera workers (inference thread) ---------------------------------------------

    def ring(self, site: str, camera: str) -> FrameRing:
        key = (site, camera)
        with self._lock:
            ring = self._rings.get(key)
            if ring is None:
                # Room for the clip's "before" part and an older snapshot frame.
                ring = self._rings[key] = FrameRing(max(self.before_s, 5.0) + 1.0, quality=self.jpeg_quality)
            return ring

    def add_frame(
        self,
        site: str,
        camera: str,
        t: float,
        at: datetime,
        image: np.ndarray,
        obs: FrameObservation | None = None,
        active: Mapping[int, Sequence[str]] | None = None,
    ) -> BufferedFrame:
        """Keep a frame for later clips and feed it to the clips being collected."""
        frame = self.ring(site, camera).push(t, at, image, obs, active)
        with self._lock:
            jobs = self._jobs.get((site, camera), [])
            done = [j for j in jobs if t >= j.end_t - 1e-6]
            for job in jobs:
                if t <= job.end_t + 1e-6:
                    self._put("frame", job, frame)
            for job in done:
                jobs.remove(job)
                self._put("finish", job, None)
        return frame

    def alert_opened(
        self,
        alert: Alert,
        violation: Violation | None,
        t: float,
        *,
        fps: float = 5.0,
        zones: Sequence[Zone] = (),
    ) -> None:
        """Start the snapshot and the clip of a newly stored alert opened at stream time `t`."""
        key = (alert.site, alert.camera)
        ring = self.ring(*key)
        folder = self.media_root / _slug(alert.site) / _slug(alert.camera)
        name = f"alert-{alert.id}"
        banner = Banner.of(alert.id, alert.clause, alert.site, alert.camera)
        job = ClipJob(
            alert_id=alert.id,
            site=alert.site,
            camera=alert.camera,
            track_id=alert.track_id,
            open_t=t,
            end_t=t + self.after_s,
            fps=fps,
            banner=banner,
            zones=list(zones),
            final=folder / f"{name}.mp4",
            relative=f"{_slug(alert.site)}/{_slug(alert.camera)}/{name}.mp4",
        )
        snapshot_t = violation.snapshot_t if violation is not None else None
        shot = ring.nearest(snapshot_t if snapshot_t is not None and snapshot_t <= t else t)
        if shot is not None:
            self._put("snapshot", job, shot)
        before = ring.since(t - self.before_s)
        with self._lock:
            for frame in before:
                self._put("frame", job, frame)
            if self.after_s <= 0:
                self._put("finish", job, None)
            else:
                self._jobs.setdefault(key, []).append(job)

    def camera_ended(self, site: str, camera: str) -> None:
        """The camera's stream ended or was stopped: finish its clips with the frames they have."""
        with self._lock:
            for job in self._jobs.pop((site, camera), []):
                self._put("finish", job, None)

    def pending(self, site: str | None = None, camera: str | None = None) -> int:
        """Clips still collecting frames (optionally of one camera)."""
        with self._lock:
            return sum(
                len(jobs)
                for (s, c), jobs in self._jobs.items()
                if (site is None or s == site) and (camera is None or c == camera)
            )

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every queued drawing/encoding step is done (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy or not self._ops.empty():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(min(left, 0.1))
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Finish every clip with what it has, write it, and stop the writer thread."""
        with self._lock:
            keys = list(self._jobs)
        for key in keys:
            self.camera_ended(*key)
        self._ops.put(("stop", None, None))
        self._thread.join(timeout)

    # -- the writer thread -------------------------------------------------------------------------

    def _put(self, op: str, job: ClipJob, item: Any) -> None:
        if op == "frame" and self._ops.qsize() >= MAX_PENDING_OPS:
            self.dropped += 1
            if self.dropped % 100 == 1:
                log.warning("clip writer is behind: %d frames left out of clips so far", self.dropped)
            return
        with self._idle:
            self._busy += 1
        self._ops.put((op, job, item))

    def _run(self) -> None:
        _be_nicer(WRITER_NICE)
        painter = Painter(self.blur_faces, self.font_path)
        while True:
            op, job, item = self._ops.get()
            if op == "stop":
                return
            try:
                if op == "frame":
                    self._write_frame(painter, job, item)
                elif op == "snapshot":
                    self._write_snapshot(painter, job, item)
                elif op == "finish":
                    self._finish(job)
            except Exception:  # one bad clip must not stop the others
                log.exception("clip of alert %s: %s failed", job.alert_id, op)
                if op != "snapshot":
                    self._abandon(job)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _write_frame(self, painter: Painter, job: ClipJob, frame: BufferedFrame) -> None:
        if job.failed or frame.t <= job.last_t:
            return
        image = painter.paint(frame, job.banner, job.zones, job.track_id)
        if job.encoder is None:
            job.final.parent.mkdir(parents=True, exist_ok=True)
            job.encoder = ClipEncoder(job.part, job.fps, (image.shape[1], image.shape[0]), self.codec)
        job.encoder.write(image, frame.t)
        job.last_t = frame.t

    def _write_snapshot(self, painter: Painter, job: ClipJob, frame: BufferedFrame) -> None:
        image = painter.paint(frame, job.banner, job.zones, job.track_id)
        final = job.final.with_suffix(".jpg")
        part = final.with_name(final.stem + PART + ".jpg")
        final.parent.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise ValueError("snapshot does not encode")
        part.write_bytes(buf.tobytes())
        os.replace(part, final)
        self.store.set_media(job.alert_id, snapshot=job.relative[: -len(".mp4")] + ".jpg")

    def _finish(self, job: ClipJob) -> None:
        if job.failed or job.encoder is None:
            self._abandon(job)
            return
        job.encoder.close()
        os.replace(job.part, job.final)  # complete before it has its final name...
        self.store.set_media(job.alert_id, clip=job.relative)  # ...and registered only once complete
        self.written.append(job.alert_id)
        log.info("clip of alert %d: %s (%d frames)", job.alert_id, job.final, job.encoder.frames)

    def _abandon(self, job: ClipJob) -> None:
        job.failed = True
        if job.encoder is not None:
            try:
                job.encoder.close()
            except Exception:  # already failing: the file is removed below anyway
                log.debug("closing a failed encoder", exc_info=True)
        job.part.unlink(missing_ok=True)


# -- housekeeping --------------------------------------------------------------------------------


def remove_partial_files(media_root: str | os.PathLike[str]) -> int:
    """Delete files left half-written by a killed service (`*.part.*`); returns how many.

    Call it at start, before any writer runs on this media root: a partial file is never
    registered on an alert, so nothing refers to it.
    """
    root = Path(media_root)
    if not root.is_dir():
        return 0
    count = 0
    for path in root.rglob(f"*{PART}.*"):
        if path.is_file():
            path.unlink(missing_ok=True)
            count += 1
    if count:
        log.warning("removed %d half-written media file(s) under %s", count, root)
    return count


def _clear_clip(store: AlertStore, alert_id: int) -> None:
    """Set an alert's clip path to NULL.

    `AlertStore.set_media` can only set paths, so this one UPDATE goes through the store's
    engine directly (a writing transaction, as the store's own). It emits no event: a
    purged clip is not news. TODO(lead): move into AlertStore as `clear_media`.
    """
    from sqlalchemy import update

    from service.db import WRITE
    from service.models import AlertRow

    with store.engine.execution_options(**{WRITE: True}).begin() as conn:
        conn.execute(
            update(AlertRow).where(AlertRow.id == alert_id).values(clip=None, updated_at=store.now())
        )


def _resolve(media_root: Path, stored: str) -> Path:
    path = Path(stored)
    return path if path.is_absolute() else media_root / path


def purge_clips(
    store: AlertStore,
    media_root: str | os.PathLike[str],
    older_than_days: float,
    *,
    now: datetime | None = None,
    page: int = 500,
) -> int:
    """Retention: delete clip files older than `older_than_days` (by file time); returns how many.

    Alert rows stay (reports and reviews need them); their clip path is cleared, so the
    API answers "no clip" rather than pointing at a missing file. Snapshots are kept.
    Only alerts that started before the cutoff are looked at: a clip is written after
    its alert starts, so a newer alert cannot own an old file.
    """
    from service.store import AlertFilter

    if older_than_days < 0:
        raise ValueError("older_than_days must not be negative")
    root = Path(media_root)
    now = now or store.now()
    cutoff = now - timedelta(days=older_than_days)
    deleted = 0
    before: int | None = None
    while True:
        alerts = store.list_alerts(AlertFilter(until=cutoff), before_id=before, limit=page)
        if not alerts:
            break
        before = alerts[-1].id
        for alert in alerts:
            if not alert.clip:
                continue
            path = _resolve(root, alert.clip)
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                _clear_clip(store, alert.id)  # already gone: keep the row honest
                continue
            if mtime <= cutoff.timestamp():
                path.unlink(missing_ok=True)
                _clear_clip(store, alert.id)
                deleted += 1
    if deleted:
        log.info("purged %d clip(s) older than %g days from %s", deleted, older_than_days, root)
    return deleted


def active_by_track(violations: Iterable[Violation]) -> dict[int, list[str]]:
    """Open person-level violations as track id -> clause ids, what the annotator labels."""
    per_track: dict[int, list[str]] = {}
    for v in violations:
        if v.track_id is not None:
            per_track.setdefault(int(v.track_id), []).append(v.clause)
    return per_track


__all__ = [
    "Banner",
    "BufferedFrame",
    "ClipEncoder",
    "ClipRecorder",
    "FrameRing",
    "Painter",
    "active_by_track",
    "blur_faces",
    "face_box",
    "find_cjk_font",
    "h264_encoder",
    "purge_clips",
    "remove_partial_files",
]
