"""Tests for vision.sources: real media in ../shared/media, broken files made in tmp_path, and a fake
capture for the live-stream reconnect loop."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision import sources
from vision.sources import (
    Frame,
    FrameSource,
    LiveSource,
    SourceError,
    SourceInfo,
    _FileClock,
    open_source,
    probe,
)

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
ROTATED = "A_effiscan_person_chair_sit_stand_leave.mp4"
UPRIGHT = "A_effiscan_person_chair_sit_stand_leave_upright.mp4"
MPG = "E_caviar_OneLeaveShop1front.mpg"
AVI = "2_ntu_woman_drinking_hand_to_mouth_hardneg.avi"
MOOV_FIRST_MP4 = "2_pexels4105024_woman_corridor_phone_call.mp4"  # index at the start of the file
MOOV_LAST_MP4 = "E_caviar_OneLeaveShop1front.mp4"  # index at the end of the file


@pytest.fixture(scope="module")
def media() -> Path:
    if not MEDIA.is_dir():
        pytest.skip("../shared/media not found: real-media tests need the shared folder beside the checkout")
    return MEDIA


def _frames(spec: Path | str, **kwargs: object) -> tuple[list[Frame], SourceInfo]:
    with open_source(str(spec), **kwargs) as source:  # type: ignore[arg-type]
        return list(source), source.info


def _assert_bgr(frame: Frame) -> None:
    assert frame.image.dtype == np.uint8
    assert frame.image.ndim == 3 and frame.image.shape[2] == 3


def _assert_user_message(exc: SourceError, *words: str) -> None:
    """One readable sentence naming the problem, not a stack dump or an OpenCV error string."""
    msg = str(exc)
    for word in words:
        assert word.lower() in msg.lower(), msg
    assert "\n" not in msg and "Traceback" not in msg and "cv2.error" not in msg, msg
    assert msg.endswith("."), msg
    assert len(msg) < 300, msg


def _truncated_copy(src: Path, dst: Path, fraction: float = 0.6) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def _small(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (60, 106), interpolation=cv2.INTER_AREA).astype(np.float32)


# ------------------------------------------------------------------------------------------- real media


@pytest.mark.media
def test_rotated_video_comes_out_upright_like_the_upright_copy(media: Path) -> None:
    info = probe(str(media / ROTATED))
    assert (info.width, info.height) == (480, 848)
    assert info.kind == "video" and info.native_fps == pytest.approx(30.0) and info.frame_count == 325

    def frame_60(name: str) -> Frame:
        with open_source(str(media / name)) as source:
            for frame in source:
                if frame.index == 60:
                    return frame
        raise AssertionError("no frame 60")

    rotated, upright = frame_60(ROTATED), frame_60(UPRIGHT)
    assert rotated.image.shape == upright.image.shape == (848, 480, 3)
    assert rotated.t == pytest.approx(upright.t) == pytest.approx(2.0)
    same = np.abs(_small(rotated.image) - _small(upright.image)).mean()
    turned = np.abs(_small(cv2.rotate(rotated.image, cv2.ROTATE_180)) - _small(upright.image)).mean()
    assert same < 8.0, same  # measured about 2
    assert turned > 4 * same and turned > 20.0, (same, turned)  # measured about 47


@pytest.mark.media
def test_mpg_with_lying_frame_count_is_decoded_to_the_end(media: Path) -> None:
    frames, info = _frames(media / MPG)
    assert info.frame_count is not None and info.frame_count < 100  # the container claims 3
    assert 290 <= len(frames) <= 300
    ts = np.array([f.t for f in frames])
    assert ts[0] == 0.0
    assert np.all(np.diff(ts) > 0)
    assert np.allclose(np.diff(ts), 0.04, atol=0.003)
    assert 11.7 <= ts[-1] <= 11.8
    assert [f.index for f in frames] == list(range(len(frames)))
    _assert_bgr(frames[0])


@pytest.mark.media
def test_avi_timestamps_start_at_zero_despite_the_lead_opencv_reports(media: Path) -> None:
    # OpenCV reports 66.7 ms on frame 0 of this AVI (the time two frames ahead) and 0 on the last two.
    frames, info = _frames(media / AVI, fps=10)
    ts = np.array([f.t for f in frames])
    assert ts[0] == 0.0 and np.all(np.diff(ts) > 0)
    assert np.allclose(np.diff(ts), 0.1, atol=0.02)
    assert ts[-1] == pytest.approx(3.4, abs=0.05)
    assert info.frame_count == 103


@pytest.mark.media
def test_analysis_fps_keeps_about_five_frames_per_second(media: Path) -> None:
    frames, info = _frames(media / UPRIGHT, fps=5)
    assert info.native_fps == pytest.approx(30.0)
    ts = np.array([f.t for f in frames])
    duration = 325 / 30
    assert abs(len(frames) - 5 * duration) <= 2
    assert np.allclose(np.diff(ts), 0.2, atol=0.01)
    assert [f.index for f in frames[:3]] == [0, 6, 12]  # skipped frames keep their numbers


@pytest.mark.media
def test_one_decoding_thread_gives_the_same_frames(media: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` decodes each camera on one FFmpeg thread (WorkerOptions.decode_threads): the frames
    and their times must be those of FFmpeg's default threading."""
    asked: list[int | None] = []
    real = sources._open_capture

    def recording(target: str | int, threads: int | None = None) -> object:
        asked.append(threads)
        return real(target, threads)

    monkeypatch.setattr(sources, "_open_capture", recording)
    one, _ = _frames(media / MOOV_FIRST_MP4, fps=5, decode_threads=1)
    default, _ = _frames(media / MOOV_FIRST_MP4, fps=5)
    assert asked == [1, None]
    assert len(one) == len(default) > 50
    for a, b in zip(one, default):
        assert (a.t, a.index) == (b.t, b.index) and np.array_equal(a.image, b.image)


@pytest.mark.media
def test_fps_above_the_native_rate_yields_every_frame(media: Path) -> None:
    frames, _ = _frames(media / "E_shoplift_cctv_163803843814156.mp4", fps=60)  # a 10 fps clip
    assert len(frames) == 31
    assert np.allclose(np.diff([f.t for f in frames]), 0.1, atol=1e-3)


@pytest.mark.media
def test_truncated_mp4_with_index_first_yields_what_decodes_and_warns(
    media: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _truncated_copy(media / MOOV_FIRST_MP4, tmp_path / "cut.mp4")
    with caplog.at_level(logging.WARNING, logger="postwatch.sources"):
        frames, info = _frames(path)
    assert info.frame_count == 373
    assert 50 < len(frames) < 373
    assert np.all(np.diff([f.t for f in frames]) > 0)
    assert any("ended after" in r.getMessage() and "truncated" in r.getMessage() for r in caplog.records)


@pytest.mark.media
def test_truncated_mp4_with_index_last_cannot_open(media: Path, tmp_path: Path) -> None:
    # FFmpeg cannot open an MP4 whose 'moov' index was cut off, so there is nothing to yield.
    path = _truncated_copy(media / MOOV_LAST_MP4, tmp_path / "cut.mp4")
    with pytest.raises(SourceError) as err:
        open_source(str(path))
    _assert_user_message(err.value, "cut.mp4", "truncated")


@pytest.mark.media
def test_truncated_mpg_yields_partial_frames_without_error(media: Path, tmp_path: Path) -> None:
    path = _truncated_copy(media / MPG, tmp_path / "cut.mpg")
    frames, _ = _frames(path)
    assert 100 < len(frames) < 295
    ts = np.array([f.t for f in frames])
    assert ts[0] == 0.0 and np.all(np.diff(ts) > 0)


@pytest.mark.media
def test_real_image_file(media: Path) -> None:
    frames, info = _frames(media / "B_sicong_op_pic_3.jpg", fps=5)
    assert len(frames) == 1 and frames[0].t == 0.0 and frames[0].index == 0
    assert info.kind == "image" and (info.height, info.width) == frames[0].image.shape[:2]
    _assert_bgr(frames[0])


# ---------------------------------------------------------------------------------- files made here


def _write_pngs(folder: Path, names: list[str]) -> None:
    folder.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        image = np.full((20, 30, 3), 10 * (i + 1), np.uint8)
        assert cv2.imwrite(str(folder / name), image)


def test_folder_of_images_in_natural_order(tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    _write_pngs(folder, ["img10.png", "img2.png", "img1.png"])
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"")
    frames, info = _frames(folder)
    assert info.kind == "folder" and info.frame_count == 3 and (info.width, info.height) == (30, 20)
    assert [f.t for f in frames] == [0.0, 1.0, 2.0]
    assert [int(f.image[0, 0, 0]) for f in frames] == [30, 20, 10]  # img1, img2, img10
    frames, _ = _frames(folder, fps=4)
    assert [f.t for f in frames] == [0.0, 0.25, 0.5]


def test_folder_skips_an_image_that_does_not_decode(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write_pngs(tmp_path, ["a1.png", "a3.png"])
    (tmp_path / "a2.png").write_text("broken")
    with caplog.at_level(logging.WARNING, logger="postwatch.sources"):
        frames, _ = _frames(tmp_path)
    assert [(f.index, f.t) for f in frames] == [(0, 0.0), (2, 2.0)]
    assert any("a2.png" in r.getMessage() for r in caplog.records)


def test_grayscale_png_becomes_bgr(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    cv2.imwrite(str(path), np.full((8, 9), 77, np.uint8))
    frames, info = _frames(path)
    assert frames[0].image.shape == (8, 9, 3) and info.width == 9
    _assert_bgr(frames[0])


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("missing.mp4", None, ["missing.mp4", "no such file"]),
        ("zero.mp4", b"", ["zero.mp4", "empty"]),
        ("text.mp4", b"hello, I am text\n" * 20, ["text.mp4", "not an mp4"]),
        ("text.avi", b"hello, I am text\n" * 20, ["text.avi", "cannot read it"]),
        ("clip.xyz", b"x", ["clip.xyz", "unsupported file type"]),
        ("bad.jpg", b"not a jpeg", ["bad.jpg", "not a valid"]),
        ("empty", "folder", ["empty", "no images"]),
    ],
    ids=["missing", "zero-bytes", "text-as-mp4", "text-as-avi", "bad-extension", "bad-image", "empty-folder"],
)
def test_unreadable_sources_raise_a_clear_source_error(
    tmp_path: Path, name: str, content: bytes | str | None, words: list[str]
) -> None:
    path = tmp_path / name
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(SourceError) as err:
        open_source(str(path))
    _assert_user_message(err.value, *words)


def test_folder_where_no_image_decodes(tmp_path: Path) -> None:
    (tmp_path / "1.png").write_text("x")
    (tmp_path / "2.jpg").write_text("y")
    with pytest.raises(SourceError) as err:
        open_source(str(tmp_path))
    assert "none of them decodes" in str(err.value)


def test_bad_arguments_are_source_errors(tmp_path: Path) -> None:
    _write_pngs(tmp_path, ["a.png"])
    with pytest.raises(SourceError, match="positive"):
        open_source(str(tmp_path), fps=0)
    with pytest.raises(SourceError, match="No source"):
        open_source("  ")
    with pytest.raises(SourceError, match="unsupported URL scheme"):
        open_source("ftp://example.com/a.mp4")


def test_source_is_read_once_and_closes(tmp_path: Path) -> None:
    _write_pngs(tmp_path, ["a.png", "b.png", "c.png"])
    source = open_source(str(tmp_path))
    assert isinstance(source, FrameSource)
    with source:
        first = next(iter(source))
        assert first.index == 0 and "image=20x30x3" in repr(first)
        with pytest.raises(RuntimeError):
            iter(source)
    assert list(source._run()) == []  # closed: nothing more comes out


# ------------------------------------------------------------------------------------------ clock unit


def _clock_run(raw_ms: list[float], fps: float | None) -> list[float]:
    clock = _FileClock(fps)
    return [round(clock(r), 4) for r in raw_ms]


def test_clock_removes_a_constant_lead_and_fills_trailing_zeros() -> None:
    raw = [66.7, 100.0, 133.3, 166.7, 0.0, 0.0]  # what OpenCV says on an AVI with B-frames
    assert _clock_run(raw, 30) == pytest.approx([0.0, 0.0333, 0.0666, 0.1, 0.1333, 0.1667], abs=1e-3)


def test_clock_uses_differences_when_the_absolute_time_is_garbage() -> None:
    base = -7686143364045606.0  # what OpenCV says on the raw MPEG-1 stream
    raw = [base + 40.0 * i for i in range(5)] + [0.0]
    assert _clock_run(raw, 25) == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16, 0.2], abs=2e-3)


def test_clock_ignores_a_bad_first_reading() -> None:
    raw = [-33.3, 33.3, 66.7, 100.0]  # an MP4 with an edit list: frame 0 is off, the rest exact
    t = _clock_run(raw, 30)
    assert t[0] == 0.0 and np.allclose(np.diff(t), 1 / 30, atol=1e-3)


def test_clock_falls_back_to_index_over_fps_when_the_container_gives_nothing() -> None:
    assert _clock_run([0.0] * 4, 25) == pytest.approx([0.0, 0.04, 0.08, 0.12])
    assert _clock_run([math.nan] * 3, None) == pytest.approx([0.0, 1 / 30, 2 / 30], abs=1e-4)


def test_clock_keeps_real_gaps() -> None:
    raw = [0.0, 40.0, 80.0, 1080.0, 1120.0]  # one second missing from a recording
    assert _clock_run(raw, 25) == pytest.approx([0.0, 0.04, 0.08, 1.08, 1.12])


# --------------------------------------------------------------------------------- live, with fakes


class FakeCapture:
    """Stands in for cv2.VideoCapture: opened or not, then `frames` good grabs, then a failed read."""

    def __init__(self, frames: int = 0, opened: bool = True, ticker: FakeClock | None = None) -> None:
        self.frames, self.opened, self.ticker, self.released = frames, opened, ticker, False

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.opened

    def grab(self) -> bool:
        if self.frames <= 0:
            return False
        self.frames -= 1
        if self.ticker is not None:
            self.ticker.now += self.ticker.step
        return True

    def retrieve(self) -> tuple[bool, np.ndarray]:
        return True, np.zeros((4, 6, 3), np.uint8)

    def get(self, prop: int) -> float:
        return 25.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def set(self, prop: int, value: float) -> bool:
        return False

    def release(self) -> None:
        self.released = True


class FakeClock:
    def __init__(self, step: float) -> None:
        self.now, self.step = 100.0, step

    def __call__(self) -> float:
        return self.now


class Opener:
    """Hands out the scripted captures in order, then closed ones; records what it was asked to open."""

    def __init__(self, *captures: FakeCapture) -> None:
        self.captures, self.targets = list(captures), []

    def __call__(self, target: str | int) -> FakeCapture:
        self.targets.append(target)
        return self.captures.pop(0) if self.captures else FakeCapture(opened=False)


def _live(opener: Opener, sleeps: list[float], **kwargs: object) -> LiveSource:
    return LiveSource(
        "rtsp://cam.local/stream", kind="stream", open_capture=opener, sleep=sleeps.append, **kwargs
    )  # type: ignore[arg-type]


def test_reconnect_with_backoff_then_keeps_yielding(caplog: pytest.LogCaptureFixture) -> None:
    first, back = FakeCapture(3), FakeCapture(2)
    opener = Opener(first, FakeCapture(opened=False), FakeCapture(opened=False), back)
    sleeps: list[float] = []
    with caplog.at_level(logging.WARNING, logger="postwatch.sources"):
        source = _live(opener, sleeps)
        frames = []
        for frame in source:
            frames.append(frame)
            if len(frames) == 5:
                source.close()
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert sleeps == [0.5, 1.0, 2.0]
    assert first.released and back.released
    messages = [r.getMessage() for r in caplog.records]
    assert "camera cam0: stream dropped, reconnecting in 2.0 s (attempt 3)" in messages
    assert source.info == SourceInfo("stream", "rtsp://cam.local/stream", 6, 4, 25.0, None, None)


def test_backoff_is_capped_and_exhausted_retries_raise() -> None:
    sleeps: list[float] = []
    source = _live(Opener(FakeCapture(1)), sleeps, max_retries=8)
    with pytest.raises(SourceError) as err:
        list(source)
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    _assert_user_message(err.value, "did not come back after 8 reconnect attempts")


def test_backoff_restarts_after_a_frame_arrives() -> None:
    sleeps: list[float] = []
    opener = Opener(FakeCapture(2), FakeCapture(opened=False), FakeCapture(1), FakeCapture(1))
    frames = []
    for frame in _live(opener, sleeps, max_retries=3):
        frames.append(frame)
        if len(frames) == 4:
            break
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert sleeps == [0.5, 1.0, 0.5]  # drop, fail, back; drop, back at once


def test_reconnect_off_raises_at_the_first_drop() -> None:
    sleeps: list[float] = []
    with pytest.raises(SourceError, match="reconnecting is off"):
        list(_live(Opener(FakeCapture(2)), sleeps, reconnect=False))
    assert sleeps == []


def test_live_fps_drops_frames_that_arrive_early() -> None:
    ticker = FakeClock(step=1 / 30)
    opener = Opener(FakeCapture(90, ticker=ticker))
    source = _live(opener, [], fps=5, clock=ticker, max_retries=0)
    frames = []
    with pytest.raises(SourceError):
        for frame in source:
            frames.append(frame)
    ts = np.array([f.t for f in frames])
    assert 14 <= len(frames) <= 16  # 3 s of frames at 5 per second
    assert np.all(np.diff(ts) >= 0.2 - 1e-3)
    assert frames[1].index == 6


def test_live_open_failure_is_immediate_and_hides_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    opener = Opener(FakeCapture(opened=False))
    monkeypatch.setattr(sources, "_open_capture", opener)
    with pytest.raises(SourceError) as err:
        open_source("rtsp://admin:s3cret@10.0.0.9/live")
    _assert_user_message(err.value, "cannot open stream", "check the url")
    assert "s3cret" not in str(err.value) and "admin:***@" in str(err.value)
    assert len(opener.targets) == 1


def test_stream_info_does_not_carry_the_password() -> None:
    opener = Opener(FakeCapture(1))
    source = LiveSource("rtsp://admin:s3cret@10.0.0.9/live", kind="stream", open_capture=opener)
    source.close()
    assert opener.targets == ["rtsp://admin:s3cret@10.0.0.9/live"]
    assert source.info.spec == "rtsp://admin:***@10.0.0.9/live" and "s3cret" not in repr(source)


def test_digits_open_a_webcam_by_index(monkeypatch: pytest.MonkeyPatch) -> None:
    opener = Opener(FakeCapture(2))
    monkeypatch.setattr(sources, "_open_capture", opener)
    info = probe("0", camera="desk")
    assert opener.targets == [0]
    assert info.kind == "webcam" and (info.width, info.height) == (6, 4) and info.frame_count is None
    monkeypatch.setattr(sources, "_open_capture", Opener())
    with pytest.raises(SourceError, match="webcam 3"):
        open_source("3")


@pytest.mark.media
def test_unsound_files_list_their_problems(media: Path, tmp_path: Path) -> None:
    """What was wrong but did not stop the read is kept for the caller (analyze exits 3 on it)."""
    with open_source(str(media / MPG)) as source:
        assert len(list(source)) > 290
        assert any("claims" in p and "decoded" in p for p in source.problems)
    cut = _truncated_copy(media / MOOV_FIRST_MP4, tmp_path / "cut.mp4")
    with open_source(str(cut)) as source:
        list(source)
        assert any("truncated" in p for p in source.problems)
    with open_source(str(media / UPRIGHT)) as source:
        list(source)
        assert source.problems == []
