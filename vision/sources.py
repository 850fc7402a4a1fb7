"""Frame sources: video files, images, image folders, network streams and webcams.

Every source yields `Frame`s with an upright BGR image and a time `t` in seconds that comes from the
source's own clock (the container's timestamps for a file, the wall clock for a live source), so the rules
downstream measure durations in real seconds even when frames are dropped or the frame rate varies.

`open_source(spec)` picks the source from the spec: a string of digits is a webcam index, a
``rtsp://``/``http(s)://`` (or rtmp/udp/tcp/srt) URL is a network stream, a folder is a folder of images,
and a file is an image or a video by its extension. Anything that cannot be read raises `SourceError`
whose message is one sentence meant for the user.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger("postwatch.sources")

VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".avi",
        ".mkv",
        ".webm",
        ".mpg",
        ".mpeg",
        ".m2v",
        ".ts",
        ".mts",
        ".m2ts",
        ".wmv",
        ".flv",
        ".3gp",
        ".ogv",
        ".vob",
        ".h264",
        ".h265",
        ".hevc",
        ".mjpeg",
        ".mjpg",
    }
)
IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".png",
        ".bmp",
        ".dib",
        ".tif",
        ".tiff",
        ".webp",
        ".jp2",
        ".pbm",
        ".pgm",
        ".ppm",
        ".pnm",
        ".ras",
        ".sr",
    }
)
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
_MP4_LIKE = frozenset({".mp4", ".m4v", ".mov", ".3gp"})

RECONNECT_FIRST_DELAY_S = 0.5
RECONNECT_MAX_DELAY_S = 10.0
# FFmpeg waits 30 s by default on a dead RTSP server; a shorter wait makes reconnects responsive.
STREAM_TIMEOUT_MS = 10_000

_URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class SourceError(Exception):
    """A source that cannot be read; str(e) is one clear sentence for the user."""


@dataclass(repr=False)
class Frame:
    """One decoded frame. `t` is seconds from the start of the source, from the source's clock."""

    camera: str
    t: float
    index: int
    image: np.ndarray

    def __repr__(self) -> str:  # the pixel array would flood logs and tracebacks
        shape = "x".join(str(n) for n in self.image.shape)
        return f"Frame(camera={self.camera!r}, t={self.t:.3f}, index={self.index}, image={shape})"


@dataclass
class SourceInfo:
    """What a source says about itself. frame_count is the container's claim and may be wrong."""

    kind: str  # "video" | "image" | "folder" | "stream" | "webcam"
    spec: str  # as given, except that a password in a stream URL reads ***
    width: int
    height: int
    native_fps: float | None
    frame_count: int | None
    duration_s: float | None


# --------------------------------------------------------------------------------------------- helpers


def _open_capture(target: str | int, threads: int | None = None) -> Any:
    """Open an OpenCV capture. Module-level so tests can swap it for a fake (see LiveSource).

    `threads`: FFmpeg's decoding threads for a file or stream (None: FFmpeg's choice, one a core).
    """
    if isinstance(target, int):
        return cv2.VideoCapture(target)
    own = [cv2.CAP_PROP_N_THREADS, int(threads)] if threads else []
    if _URL_RE.match(target):
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            STREAM_TIMEOUT_MS,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            STREAM_TIMEOUT_MS,
            *own,
        ]
        return cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
    # Naming FFmpeg keeps OpenCV from trying its other backends (image-sequence, GStreamer) on a file.
    return cv2.VideoCapture(target, cv2.CAP_FFMPEG, own)


def _natural_key(name: str) -> list[Any]:
    """Sort key so that img2.png comes before img10.png."""
    return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", name)]


def _plausible_fps(value: float) -> float | None:
    return float(value) if math.isfinite(value) and 0.0 < value <= 1000.0 else None


def _as_bgr8(image: np.ndarray) -> np.ndarray:
    """Coerce whatever a decoder handed back into HxWx3 uint8 BGR."""
    if image.dtype != np.uint8:
        image = (
            cv2.convertScaleAbs(image, alpha=255.0 / 65535.0)
            if image.dtype == np.uint16
            else (np.clip(image, 0, 255).astype(np.uint8))
        )
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _mp4_problem(path: Path) -> str | None:
    """Why an MP4/MOV that FFmpeg refused is broken, from its top-level boxes, or None if unclear."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    pos, boxes = 0, []
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1 and pos + 16 <= len(data):
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        if not kind.isascii() or not kind.decode("ascii").isprintable() or (0 < size < 8):
            break
        boxes.append(kind.decode("ascii"))
        if size == 0:
            break
        pos += size
    if not boxes or boxes[0] not in {"ftyp", "moov", "mdat", "free", "skip", "wide", "uuid", "pnot"}:
        return "it is not an MP4/MOV file (no MP4 header), perhaps another kind of file renamed"
    if "moov" not in boxes:
        return (
            "its index (the 'moov' box) is missing, so it is probably truncated or still being "
            "written; re-export it or copy it again"
        )
    return None


# --------------------------------------------------------------------------------------- pacing/clock


class _Pacer:
    """Decides which frames to keep for an analysis rate of `fps` per second of source time.

    Frames are dropped, never delayed: a frame is due when its t has reached the next due time. The due
    time advances by whole periods, so the kept frames do not drift; after a gap it restarts from the
    frame that ended the gap instead of letting a burst of frames through.
    """

    _SLACK_S = 1e-3  # float noise in t (200 ms can come out as 199.99999) must not push a frame out

    def __init__(self, fps: float | None) -> None:
        self.period = 1.0 / fps if fps else None
        self.next_due: float | None = None

    def due(self, t: float) -> bool:
        if self.period is None:
            return True
        if self.next_due is not None and t < self.next_due - self._SLACK_S:
            return False
        nxt = (t if self.next_due is None else self.next_due) + self.period
        self.next_due = nxt if nxt > t else t + self.period
        return True


class _FileClock:
    """Turns OpenCV's CAP_PROP_POS_MSEC readings (taken right after each grab) into seconds from frame 0.

    What OpenCV 4.11's FFmpeg backend reports, measured on the shared media:

    - most MP4/MOV files: the frame's own presentation time, frame 0 at 0 ms;
    - an H.264 AVI with B-frames: the time two frames *ahead* (66.7 ms on frame 0), and 0 for the last
      frames, which come out of the decoder after the last packet;
    - a raw MPEG-1 stream (.mpg, no start time): about -7.7e15 ms, still advancing by exactly 40 ms a
      frame, and 0 for the last frame;
    - an MP4 with an edit list: -33.3 ms on frame 0, exact values afterwards.

    So frame 0 is t=0 by definition and later frames are offset by frame 0's reading, or, when frame 0's
    reading is off by more than half a frame against the next usable one, by that one's reading. After
    frame 0, a reading of exactly 0 is OpenCV's "no timestamp"; a reading that is 0, not finite or does
    not move time forward is replaced by the previous t + 1/native_fps. A container that gives nothing
    usable at all therefore gets t = index / native_fps (1/30 s a frame when even the rate is unknown).
    """

    def __init__(self, native_fps: float | None) -> None:
        self.dt = 1.0 / native_fps if native_fps else 1.0 / 30.0
        self.base_ms: float | None = None
        self.first_ms: float | None = None
        self.last_t: float | None = None
        self.extrapolated = 0

    def __call__(self, raw_ms: float) -> float:
        if self.last_t is None:
            self.first_ms = raw_ms if math.isfinite(raw_ms) else None
            self.last_t = 0.0
            return 0.0
        expected = self.last_t + self.dt
        t: float | None = None
        if math.isfinite(raw_ms) and raw_ms != 0.0:
            if self.base_ms is None:
                if self.first_ms is not None and abs((raw_ms - self.first_ms) / 1000.0 - expected) <= (
                    self.dt / 2
                ):
                    self.base_ms = self.first_ms
                else:
                    self.base_ms = raw_ms - expected * 1000.0
            candidate = (raw_ms - self.base_ms) / 1000.0
            if candidate > self.last_t:
                t = candidate
        if t is None:
            t = expected
            self.extrapolated += 1
        self.last_t = t
        return t


class _Orientation:
    """Makes frames upright from the container's rotation tag, whatever OpenCV does with it.

    OpenCV 4.11 here leaves CAP_PROP_ORIENTATION_AUTO off and returns a phone video tagged 90° sideways.
    Switching the property on works; if a build refuses it (or claims it but still hands back the
    stored orientation) the frame is turned with cv2.rotate as the tag says.
    """

    _CODES = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}

    def __init__(self, cap: Any) -> None:
        meta = cap.get(cv2.CAP_PROP_ORIENTATION_META)
        self.meta = int(round(meta)) % 360 if math.isfinite(meta) else 0
        if self.meta not in self._CODES:
            self.meta = 0
        auto = False
        if self.meta:
            try:
                auto = bool(cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)) and (
                    cap.get(cv2.CAP_PROP_ORIENTATION_AUTO) == 1
                )
            except cv2.error:
                auto = False
        self.manual = 0 if auto else self.meta
        # With the property on, OpenCV reports the upright size; a frame of the swapped size means the
        # rotation was claimed but not done.
        self._upright_wh = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self._checked = not (auto and self.meta in (90, 270))

    def apply(self, image: np.ndarray) -> np.ndarray:
        if not self._checked:
            self._checked = True
            w, h = self._upright_wh
            if w != h and image.shape[:2] == (w, h):
                log.debug(
                    "OpenCV claimed to apply the %d° rotation tag but did not; rotating here", self.meta
                )
                self.manual = self.meta
        return cv2.rotate(image, self._CODES[self.manual]) if self.manual else image


# ------------------------------------------------------------------------------------------- sources


class FrameSource:
    """An iterable of `Frame`s, read once, and a context manager that releases the device or file.

    Subclasses implement `_frames`. `close()` may be called from another thread to stop a live source;
    the iterator then ends after the read in progress.
    """

    kind = "?"

    def __init__(self, spec: str, camera: str, fps: float | None) -> None:
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise SourceError(f"The analysis rate must be a positive number of frames per second, not {fps}.")
        self.spec = spec
        self.camera = camera
        self.fps = fps
        self._info: SourceInfo | None = None
        self._stop = threading.Event()
        self._started = False
        # What went wrong but did not stop the read (a lying or truncated container, frames that
        # did not decode): one sentence each, for the caller to report once the frames are used.
        self.problems: list[str] = []

    @property
    def info(self) -> SourceInfo:
        assert self._info is not None
        return self._info

    def __iter__(self) -> Iterator[Frame]:
        if self._started:
            raise RuntimeError("a FrameSource can be iterated only once; open the source again")
        self._started = True
        return self._run()

    def _run(self) -> Iterator[Frame]:
        try:
            yield from self._frames()
        finally:
            self._release()

    def _frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def _release(self) -> None:
        """Free the underlying handle. Idempotent."""

    def close(self) -> None:
        self._stop.set()
        self._release()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r}, camera={self.camera!r}, fps={self.fps})"


class _CaptureSource(FrameSource):
    """Shared handling of an OpenCV capture that may be released from another thread."""

    def __init__(
        self, spec: str, camera: str, fps: float | None, open_capture: Callable[[str | int], Any] | None
    ) -> None:
        super().__init__(spec, camera, fps)
        self._open_capture = open_capture if open_capture is not None else _open_capture
        self._cap: Any = None
        self._lock = threading.Lock()

    def _release(self) -> None:
        # Under the lock, so a close() from another thread waits for a grab() in progress to return
        # instead of freeing the capture underneath it.
        with self._lock:
            cap, self._cap = self._cap, None
            if cap is not None:
                try:
                    cap.release()
                except Exception:  # noqa: BLE001 - releasing a broken capture must not mask the real error
                    log.debug("camera %s: error releasing capture", self.camera, exc_info=True)

    def _grab(self) -> bool:
        """Grab the next frame; False at the end, on a read error, or once closed."""
        with self._lock:
            if self._cap is None:
                return False
            try:
                return bool(self._cap.grab())
            except cv2.error:
                log.debug("camera %s: grab raised", self.camera, exc_info=True)
                return False

    def _position_ms(self) -> float:
        with self._lock:
            return float(self._cap.get(cv2.CAP_PROP_POS_MSEC)) if self._cap is not None else math.nan

    def _retrieve(self, orientation: _Orientation) -> np.ndarray | None:
        """Decode the grabbed frame into an upright BGR image; None if it does not decode."""
        with self._lock:
            if self._cap is None:
                return None
            try:
                ok, image = self._cap.retrieve()
            except cv2.error:
                log.debug("camera %s: retrieve raised", self.camera, exc_info=True)
                return None
        if not ok or image is None or image.size == 0:
            return None
        return orientation.apply(_as_bgr8(image))


class VideoFileSource(_CaptureSource):
    """A video file, decoded sequentially (never seeking: frame counts and indexes can lie).

    Skipped frames are only grabbed, not converted to BGR. Timestamps: see `_FileClock`.
    """

    kind = "video"

    def __init__(
        self,
        path: Path,
        *,
        spec: str | None = None,
        camera: str = "cam0",
        fps: float | None = None,
        open_capture: Callable[[str | int], Any] | None = None,
    ) -> None:
        super().__init__(spec if spec is not None else str(path), camera, fps, open_capture)
        self.path = path
        if not path.is_file():
            raise SourceError(f"Cannot open video '{path}': no such file.")
        if path.stat().st_size == 0:
            raise SourceError(f"Cannot open video '{path}': the file is empty (0 bytes).")
        try:
            cap = self._open_capture(str(path))
        except (cv2.error, OSError) as exc:
            raise SourceError(f"Cannot open video '{path}': OpenCV raised an error opening it.") from exc
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            why = _mp4_problem(path) if path.suffix.lower() in _MP4_LIKE else None
            raise SourceError(
                f"Cannot open video '{path}': "
                + (
                    why
                    or "FFmpeg cannot read it; it is damaged, not a video, or uses a codec this OpenCV "
                    "build does not support"
                )
                + "."
            )
        self._cap = cap
        self.native_fps = _plausible_fps(cap.get(cv2.CAP_PROP_FPS))
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.claimed_frames = int(count) if math.isfinite(count) and count > 0 else None
        self._orientation = _Orientation(cap)
        self._clock = _FileClock(self.native_fps)
        self._grabbed = 0
        first = self._retrieve(self._orientation) if self._grab() else None
        if first is None:
            self._release()
            raise SourceError(
                f"Cannot read video '{path}': it opens but not a single frame decodes, so it "
                "is damaged or uses a codec this OpenCV build does not support."
            )
        self._grabbed = 1
        self._first: tuple[float, np.ndarray] | None = (self._clock(self._position_ms()), first)
        duration = (
            self.claimed_frames / self.native_fps
            if self.claimed_frames is not None and self.native_fps
            else None
        )
        self._info = SourceInfo(
            self.kind,
            self.spec,
            first.shape[1],
            first.shape[0],
            self.native_fps,
            self.claimed_frames,
            duration,
        )

    @property
    def extrapolated_timestamps(self) -> int:
        """How many frames got t from the previous frame + 1/native_fps instead of the container."""
        return self._clock.extrapolated

    def _frames(self) -> Iterator[Frame]:
        pacer = _Pacer(self.fps)
        assert self._first is not None
        t, image = self._first
        self._first = None
        pacer.due(t)
        yield Frame(self.camera, t, 0, image)
        while self._grab():
            index = self._grabbed
            self._grabbed += 1
            t = self._clock(self._position_ms())
            if not pacer.due(t):
                continue
            image = self._retrieve(self._orientation)
            if image is None:
                if self._stop.is_set():
                    return
                log.warning(
                    "camera %s: frame %d of '%s' did not decode; skipped", self.camera, index, self.path
                )
                self._note(f"frame {index} of '{self.path}' did not decode and was skipped")
                continue
            yield Frame(self.camera, t, index, image)
        if not self._stop.is_set():  # a close() by the consumer is not an early end of the file
            self._report_end()

    def _note(self, problem: str) -> None:
        if problem not in self.problems and len(self.problems) < 20:
            self.problems.append(problem)

    def _report_end(self) -> None:
        claimed, got = self.claimed_frames, self._grabbed
        if claimed is not None and got > claimed + max(2, claimed // 100):
            self._note(
                f"'{self.path}' claims {claimed} frames in its container but {got} decoded in order; "
                "all of them were analysed"
            )
        if claimed is not None and got < claimed - max(2, claimed // 100):
            self._note(
                f"'{self.path}' ended after {got} of the {claimed} frames its container claims; "
                "the file may be truncated or damaged"
            )
            log.warning(
                "camera %s: '%s' ended after %d of the %d frames its container claims; the file may "
                "be truncated or damaged",
                self.camera,
                self.path,
                got,
                claimed,
            )
        if self._clock.extrapolated:
            log.debug(
                "camera %s: '%s' gave no usable timestamp for %d of %d frames; used 1/native_fps steps",
                self.camera,
                self.path,
                self._clock.extrapolated,
                got,
            )


class ImageSource(FrameSource):
    """A single image: one frame at t=0. EXIF orientation is applied by cv2.imread."""

    kind = "image"

    def __init__(
        self, path: Path, *, spec: str | None = None, camera: str = "cam0", fps: float | None = None
    ) -> None:
        super().__init__(spec if spec is not None else str(path), camera, fps)
        self.path = path
        self._image: np.ndarray | None = _read_image(path)
        h, w = self._image.shape[:2]
        self._info = SourceInfo(self.kind, self.spec, w, h, None, 1, None)

    def _frames(self) -> Iterator[Frame]:
        if self._image is not None and not self._stop.is_set():
            image, self._image = self._image, None
            yield Frame(self.camera, 0.0, 0, image)


def _read_image(path: Path) -> np.ndarray:
    """Decode one image or raise SourceError saying why not."""
    if not path.is_file():
        raise SourceError(f"Cannot open image '{path}': no such file.")
    if path.stat().st_size == 0:
        raise SourceError(f"Cannot open image '{path}': the file is empty (0 bytes).")
    try:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise SourceError(f"Cannot read image '{path}': OpenCV raised an error decoding it.") from exc
    if image is None or image.size == 0:
        raise SourceError(
            f"Cannot read image '{path}': it is not a valid {path.suffix.lstrip('.').upper()} "
            "image or it is damaged."
        )
    return _as_bgr8(image)


class FolderSource(FrameSource):
    """The images in a folder (not its subfolders) in natural order; image i is at t = i / (fps or 1).

    An image that does not decode is skipped with a warning (its slot in time stays empty); the folder
    fails with SourceError only if none decodes. `native_fps` in the info is the rate t implies.
    """

    kind = "folder"

    def __init__(
        self, path: Path, *, spec: str | None = None, camera: str = "cam0", fps: float | None = None
    ) -> None:
        super().__init__(spec if spec is not None else str(path), camera, fps)
        self.path = path
        if not path.is_dir():
            raise SourceError(f"Cannot open folder '{path}': no such folder.")
        self.files = sorted(
            (
                p
                for p in path.iterdir()
                if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
            ),
            key=lambda p: _natural_key(p.name),
        )
        if not self.files:
            exts = ", ".join(
                sorted(
                    e
                    for e in IMAGE_EXTENSIONS
                    if e in {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
                )
            )
            raise SourceError(f"Folder '{path}' has no images to read (looked for {exts}).")
        self.rate = float(fps) if fps else 1.0
        self._pending: dict[int, np.ndarray] = {}
        first = None
        errors = []
        for i, p in enumerate(self.files):
            try:
                first = _read_image(p)
            except SourceError as exc:
                errors.append(str(exc))
                continue
            self._pending[i] = first
            break
        if first is None:
            raise SourceError(
                f"Folder '{path}' has {len(self.files)} image files but none of them decodes "
                f"(first problem: {errors[0]})"
            )
        n = len(self.files)
        self._info = SourceInfo(
            self.kind, self.spec, first.shape[1], first.shape[0], self.rate, n, n / self.rate
        )

    def _frames(self) -> Iterator[Frame]:
        for i, p in enumerate(self.files):
            if self._stop.is_set():
                return
            image = self._pending.pop(i, None)
            if image is None:
                try:
                    image = _read_image(p)
                except SourceError as exc:
                    log.warning("camera %s: skipped: %s", self.camera, exc)
                    continue
            yield Frame(self.camera, i / self.rate, i, image)


class LiveSource(_CaptureSource):
    """A network stream or a webcam; t is wall-clock seconds since the source opened (time.monotonic).

    When a read fails the capture is reopened after 0.5 s, 1 s, 2 s, ... up to 10 s between tries, with a
    warning each time; the count restarts once a frame arrives. `max_retries=None` retries forever;
    `reconnect=False` is the same as `max_retries=0`. Exhausted retries raise SourceError. Opening the
    source the first time is not retried: a wrong URL or index fails at once.

    `open_capture`, `sleep` and `clock` are injectable for tests. The default sleep wakes up on close().
    """

    def __init__(
        self,
        spec: str,
        *,
        kind: str,
        camera: str = "cam0",
        fps: float | None = None,
        reconnect: bool | None = None,
        max_retries: int | None = None,
        open_capture: Callable[[str | int], Any] | None = None,
        sleep: Callable[[float], Any] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(spec, camera, fps, open_capture)
        if max_retries is not None and max_retries < 0:
            raise SourceError(f"max_retries must be 0 or more, not {max_retries}.")
        self.kind = kind
        self.target: str | int = int(spec) if kind == "webcam" else spec
        self.spec = _redact(spec)  # info, repr and reports must not carry the camera's password
        self.reconnect = True if reconnect is None else reconnect
        self.max_retries = max_retries if self.reconnect else 0
        self._sleep = sleep if sleep is not None else self._stop.wait
        self._clock = clock if clock is not None else time.monotonic
        self._what = f"webcam {spec}" if kind == "webcam" else f"stream {_redact(spec)}"

        cap = self._try_open()
        if cap is None:
            hint = (
                "check the index and that no other program holds the camera"
                if kind == "webcam"
                else "check the URL, the credentials and that the camera is reachable"
            )
            raise SourceError(f"Cannot open {self._what}: {hint}.")
        self._t0 = self._clock()
        self._cap = cap
        self._orientation = _Orientation(cap)
        image = self._retrieve(self._orientation) if self._grab() else None
        if image is None:
            self._release()
            raise SourceError(f"Opened {self._what} but it delivered no frame.")
        self._first: tuple[float, np.ndarray] | None = (self._clock() - self._t0, image)
        self._grabbed = 1
        self.native_fps = _plausible_fps(cap.get(cv2.CAP_PROP_FPS))
        self._info = SourceInfo(kind, self.spec, image.shape[1], image.shape[0], self.native_fps, None, None)

    def _try_open(self) -> Any:
        try:
            cap = self._open_capture(self.target)
        except Exception:  # noqa: BLE001 - any failure to open is "not back yet"
            log.debug("camera %s: opening %s raised", self.camera, self._what, exc_info=True)
            return None
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            return None
        try:  # keep the driver from queueing stale frames (honoured by V4L2, ignored by FFmpeg)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        except cv2.error:
            pass
        return cap

    def _frames(self) -> Iterator[Frame]:
        pacer = _Pacer(self.fps)
        assert self._first is not None
        t, image = self._first
        self._first = None
        pacer.due(t)
        yield Frame(self.camera, t, 0, image)
        attempt = 0
        while not self._stop.is_set():
            if self._grab():
                index = self._grabbed
                self._grabbed += 1
                t = self._clock() - self._t0
                if not pacer.due(t):
                    attempt = 0
                    continue
                image = self._retrieve(self._orientation)
                if image is not None:
                    attempt = 0
                    yield Frame(self.camera, t, index, image)
                    continue
            if self._stop.is_set():
                return
            attempt = self._reconnect(attempt)

    def _reconnect(self, attempt: int) -> int:
        """Reopen the capture with exponential backoff; returns the attempt count reached."""
        self._release()
        while not self._stop.is_set():
            if self.max_retries is not None and attempt >= self.max_retries:
                if not self.reconnect:
                    raise SourceError(f"Camera {self.camera}: {self._what} dropped and reconnecting is off.")
                raise SourceError(
                    f"Camera {self.camera}: {self._what} dropped and did not come back after "
                    f"{attempt} reconnect attempts."
                )
            attempt += 1
            delay = min(RECONNECT_FIRST_DELAY_S * 2 ** (attempt - 1), RECONNECT_MAX_DELAY_S)
            log.warning(
                "camera %s: stream dropped, reconnecting in %.1f s (attempt %d)", self.camera, delay, attempt
            )
            self._sleep(delay)
            if self._stop.is_set():
                break
            cap = self._try_open()
            if cap is not None:
                with self._lock:
                    self._cap = cap
                self._orientation = _Orientation(cap)
                log.info("camera %s: %s reconnected", self.camera, self._what)
                return attempt
        return attempt


def _redact(url: str) -> str:
    """Hide a password in rtsp://user:pass@host so it does not land in logs and error messages."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", url)


# ------------------------------------------------------------------------------------------ factories


def open_source(
    spec: str,
    *,
    camera: str = "cam0",
    fps: float | None = None,
    reconnect: bool | None = None,
    max_retries: int | None = None,
    decode_threads: int | None = None,
) -> FrameSource:
    """Open a frame source from a user's spec (path, folder, URL or webcam index).

    `fps` is the analysis rate (at most that many frames per second of source time; None for all).
    `reconnect`/`max_retries` apply to live sources only (defaults: reconnect, forever).
    `decode_threads`: FFmpeg's threads decoding a video file or stream (None or 0: FFmpeg's choice).
    """
    opener = functools.partial(_open_capture, threads=decode_threads) if decode_threads else None
    spec = str(spec).strip()
    if not spec:
        raise SourceError("No source given: pass a video, image, folder, stream URL or webcam index.")
    if spec.isdigit():
        return LiveSource(
            spec, kind="webcam", camera=camera, fps=fps, reconnect=reconnect, max_retries=max_retries
        )
    match = _URL_RE.match(spec)
    if match:
        scheme = match.group(1).lower()
        if scheme not in STREAM_SCHEMES:
            raise SourceError(
                f"Cannot open '{_redact(spec)}': unsupported URL scheme '{scheme}' (use one of "
                f"{', '.join(STREAM_SCHEMES)}, or a file path)."
            )
        return LiveSource(
            spec,
            kind="stream",
            camera=camera,
            fps=fps,
            reconnect=reconnect,
            max_retries=max_retries,
            open_capture=opener,
        )
    path = Path(spec).expanduser()
    if path.is_dir():
        return FolderSource(path, spec=spec, camera=camera, fps=fps)
    if not path.exists():
        raise SourceError(f"Cannot open '{spec}': no such file or folder.")
    ext = path.suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return ImageSource(path, spec=spec, camera=camera, fps=fps)
    if ext in VIDEO_EXTENSIONS:
        return VideoFileSource(path, spec=spec, camera=camera, fps=fps, open_capture=opener)
    raise SourceError(
        f"Cannot open '{spec}': unsupported file type '{ext or '(none)'}'; expected a video "
        "(.mp4, .mov, .avi, .mkv, .mpg, ...) or an image (.jpg, .png, ...)."
    )


def probe(spec: str, **kwargs: Any) -> SourceInfo:
    """Open a source, read what it says about itself (and its first frame), and close it."""
    with open_source(spec, **kwargs) as source:
        return source.info
