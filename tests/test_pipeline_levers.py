"""The pipeline's throughput levers (issue 5) do what they say, on real frames: behaviour, not timings.

Each lever is checked through `PipelineOptions.counts` (how often each stage ran or was skipped)
and the observations themselves: what is carried or reused must be what was found before, and
`plain=True` must run every stage on every frame whatever the other switches say.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pytest
from conftest import make_pipeline, media_path

from vision.pipeline import (
    Pipeline,
    PipelineOptions,
    changed_share,
    motion_image,
    options_for_camera,
    zone_pose_filter,
)
from vision.pose import Pose
from vision.sources import Frame, open_source

CHAIR = "A_effiscan_person_chair_sit_stand_leave_upright.mp4"
OFFICE = "A_office_openplan_workers_seated.mp4"
models = [pytest.mark.media, pytest.mark.model]

# Every lever on (the plain test checks that `plain` overrides all of them).
ALL_ON = dict(
    motion_gate=True,
    detect_every=3,
    every_when_slow=False,
    pose_reuse=True,
    pose_track=True,
    wrist_gate=True,
    wrist_every=3,
    pose_retry_s=0.6,
    pose_budget=2,
)
ALL_OFF = dict(
    motion_gate=False,
    detect_every=1,
    pose_reuse=False,
    pose_track=False,
    wrist_gate=False,
    wrist_every=1,
    wrist_imgsz=640,
    wrist_native=False,
    pose_retry_s=0.0,
    pose_retry_doublings=0,
    pose_budget=0,
    video_imgsz=640,
)


@lru_cache(maxsize=4)
def frames(name: str) -> tuple[Frame, ...]:
    with open_source(str(media_path(name)), fps=5) as source:
        return tuple(source)


def pipeline(**options: object) -> Pipeline:
    """A tracking pipeline with these options around the test run's shared models."""
    shared = make_pipeline()
    return Pipeline(shared.detector, shared.pose, PipelineOptions(fps=5.0, **options))  # type: ignore[arg-type]


def repeated(frame: Frame, n: int) -> list[Frame]:
    """The same picture n times, 0.2 s apart: a scene where nothing moves."""
    return [Frame(frame.camera, frame.t + 0.2 * i, frame.index + i, frame.image.copy()) for i in range(n)]


def track_boxes(obs) -> dict[int, list[float]]:
    return {p.track_id: [round(float(v), 3) for v in p.box] for p in obs.persons}


# ----------------------------------------------------------------------------------- no models


def test_motion_image_sees_a_moved_block_but_not_noise():
    rng = np.random.default_rng(0)
    base = rng.integers(90, 110, size=(480, 640, 3), dtype=np.uint8)
    noisy = np.clip(base.astype(int) + rng.integers(-4, 5, size=base.shape), 0, 255).astype(np.uint8)
    moved = base.copy()
    moved[200:280, 300:360] = 250  # a bright object the size of a hand came into view
    a, b, c = motion_image(base), motion_image(noisy), motion_image(moved)
    assert a.shape == (120, 160)
    assert changed_share(a, b) < 0.002
    assert changed_share(a, c) > 0.01


def test_zone_pose_filter_selects_feet_in_duty_zones_only():
    from calibration.site import Zone

    post = Zone(
        name="desk", kind="post", role="front_desk", polygon=[(0, 400), (200, 400), (200, 480), (0, 480)]
    )
    lobby = Zone(name="lobby", kind="customer", polygon=[(300, 400), (640, 400), (640, 480), (300, 480)])
    choose = zone_pose_filter([post, lobby])
    assert choose is not None
    assert choose(np.array([50.0, 100.0, 150.0, 450.0]), None)  # feet in the post
    assert not choose(np.array([400.0, 100.0, 500.0, 450.0]), None)  # feet in the customer area
    # Legs hidden by the desk: the box ends just short of the post; a tenth of its height still counts.
    assert choose(np.array([50.0, 60.0, 150.0, 395.0]), None)
    assert zone_pose_filter([lobby]) is None  # no zone whose occupants are judged: pose everyone


def test_modes_and_camera_options():
    assert PipelineOptions.for_mode("plain").plain
    fast = PipelineOptions.for_mode("fast")
    assert not fast.plain and fast.gating and fast.reusing
    with pytest.raises(ValueError, match="unknown pipeline mode"):
        PipelineOptions.for_mode("turbo")
    plain = PipelineOptions(plain=True, **ALL_ON, pose_filter=lambda box, obs: False)
    assert (plain.gating, plain.every, plain.reusing, plain.wrist_gating, plain.crops_every) == (
        False,
        1,
        False,
        False,
        1,
    )
    assert not plain.tracking and fast.tracking
    assert plain.filtering is None

    class Camera:
        fps = 5.0
        zones: list = []

    assert options_for_camera(Camera(), "plain").plain
    assert options_for_camera(Camera()).pose_filter is None  # no zones: everybody posed


# ----------------------------------------------------------------------------------- real frames


@pytest.mark.media
@pytest.mark.model
def test_motion_gate_skips_detection_on_a_still_scene_and_carries_the_tracks():
    still = repeated(frames(CHAIR)[12], 5)
    p = pipeline(**{**ALL_OFF, "motion_gate": True})
    obs = [p.process(f) for f in still]
    assert p.options.counts["detect"] == 1
    assert p.options.counts["detect_skipped"] == 4
    assert obs[0].persons, "the chair clip shows a person at frame 12"
    assert all(track_boxes(o) == track_boxes(obs[0]) for o in obs[1:])


@pytest.mark.media
@pytest.mark.model
def test_motion_gate_runs_detection_when_something_moves():
    clip = frames(CHAIR)
    p = pipeline(**{**ALL_OFF, "motion_gate": True})
    for f in repeated(clip[12], 3):
        p.process(f)
    assert p.options.counts["detect"] == 1
    moved = clip[20]  # 1.6 s later: the person sat down
    p.process(Frame(moved.camera, clip[12].t + 0.6, moved.index, moved.image))
    assert p.options.counts["detect"] == 2


@pytest.mark.media
@pytest.mark.model
def test_motion_gate_still_detects_after_the_longest_skip():
    p = pipeline(**{**ALL_OFF, "motion_gate": True, "motion_max_skip_s": 0.5})
    for f in repeated(frames(CHAIR)[12], 5):  # t = 0, 0.2 ... 0.8 s: detect at 0 and at 0.6
        p.process(f)
    assert p.options.counts["detect"] == 2


@pytest.mark.media
@pytest.mark.model
def test_every_kth_frame_detection_carries_boxes_and_track_ids():
    clip = frames(CHAIR)[10:16]
    p = pipeline(**{**ALL_OFF, "detect_every": 3, "every_when_slow": False})
    obs = [p.process(f) for f in clip]
    assert p.options.counts["detect"] == 2  # frames 0 and 3
    assert p.options.counts["detect_skipped"] == 4
    assert obs[0].persons and obs[3].persons
    ids = set(track_boxes(obs[0]))
    assert all(set(track_boxes(o)) == ids for o in obs), "the same person keeps the same id throughout"
    # A new track has no velocity yet: its box is carried as it was.
    assert track_boxes(obs[1]) == track_boxes(obs[2]) == track_boxes(obs[0])
    # Then it moves on between detections at the velocity of its last two: equal steps.
    (tid,) = ids
    b3, b4, b5 = (np.array(track_boxes(o)[tid]) for o in obs[3:6])
    velocity = (b3 - np.array(track_boxes(obs[0])[tid])) / 3
    assert np.allclose(b4 - b3, velocity, atol=0.01) and np.allclose(b5 - b4, velocity, atol=0.01)
    # Pose still runs on every frame, on the carried boxes.
    assert all(person.keypoints is not None for o in obs for person in o.persons)


@pytest.mark.media
@pytest.mark.model
def test_pose_filter_limits_pose_to_the_selected_persons():
    frame = frames(OFFICE)[0]
    mid = frame.image.shape[1] / 2
    p = pipeline(**ALL_OFF, pose_filter=lambda box, obs: (box[0] + box[2]) / 2 < mid)
    obs = p.process(frame)
    left = [q for q in obs.persons if (q.box[0] + q.box[2]) / 2 < mid]
    right = [q for q in obs.persons if (q.box[0] + q.box[2]) / 2 >= mid]
    assert left and right, "the office clip has workers on both halves"
    assert all(q.keypoints is None for q in right)
    assert p.options.counts["pose"] == len(left)
    assert p.options.counts["pose_filtered"] == len(right)
    assert any(q.keypoints is not None for q in left)


@pytest.mark.media
@pytest.mark.model
def test_pose_reuse_on_a_still_person_and_fresh_pose_once_they_move():
    clip = frames(CHAIR)
    p = pipeline(**{**ALL_OFF, "pose_reuse": True})
    still = [p.process(f) for f in repeated(clip[12], 6)]  # t = 0 ... 1.0 s
    # Estimated until the box has been at rest for pose_reuse_still_s (0.6 s), reused after.
    assert p.options.counts["pose"] == 3
    assert p.options.counts["pose_reused"] == 3
    first, last = still[0].persons[0], still[-1].persons[0]
    assert np.allclose(first.keypoints, last.keypoints)
    assert first.features.posture == last.features.posture
    moved = clip[20]
    p.process(Frame(moved.camera, clip[12].t + 1.2, moved.index, moved.image))
    assert p.options.counts["pose"] == 4


@pytest.mark.media
@pytest.mark.model
def test_plain_mode_runs_every_stage_on_every_frame():
    clip = list(repeated(frames(CHAIR)[12], 3)) + list(frames(CHAIR)[13:16])
    p = pipeline(plain=True, **ALL_ON, pose_filter=lambda box, obs: False)
    obs = [p.process(f) for f in clip]
    persons = sum(len(o.persons) for o in obs)
    counts = p.options.counts
    assert counts["frames"] == counts["detect"] == len(clip)
    assert counts["pose"] == persons > 0
    skips = ("detect_skipped", "pose_reused", "pose_tracked", "pose_filtered", "wrist_gated", "wrist_carried")
    for skipped in skips:
        assert counts.get(skipped, 0) == 0, skipped
    assert "motion" not in p.options.stages_ms
    # ... and gives what the plain pipeline gives: the same observations as all levers off.
    q = pipeline(**ALL_OFF)
    assert [o.to_json() for o in obs] == [q.process(f).to_json() for f in clip]


@pytest.mark.media
@pytest.mark.model
def test_wrist_gate_skips_crops_for_hanging_arms_only():
    clip = frames(CHAIR)[5:15]
    plain = pipeline(plain=True)
    gated = pipeline(**{**ALL_OFF, "wrist_gate": True})
    for f in clip:
        plain.process(f)
        gated.process(f)
    assert plain.options.counts.get("wrist_crops", 0) > 0
    assert gated.options.counts.get("wrist_gated", 0) > 0
    assert gated.options.counts.get("wrist_crops", 0) < plain.options.counts["wrist_crops"]


@pytest.mark.media
@pytest.mark.model
def test_wrist_crops_every_kth_pose_carry_their_finds():
    clip = frames(CHAIR)[10:16]
    p = pipeline(**{**ALL_OFF, "wrist_every": 3})
    for f in clip:
        p.process(f)
    counts = p.options.counts
    assert counts.get("wrist_carried", 0) > 0
    assert counts["pose"] == 6


@pytest.mark.media
@pytest.mark.model
def test_frame_clock_follows_the_chair_clip_man_analysed_once_in_1_2_s():
    """The chair clip as a service behind its cameras sees it: one frame in six of 5 fps (1.2 s
    apart). With the frame clock his pose is followed from frame to frame; counted in seconds,
    every pose is a full MediaPipe estimate."""
    clip = frames(CHAIR)[10:40:6]
    runs = {}
    for clock in (True, False):
        p = pipeline(**{**ALL_OFF, "pose_track": True, "frame_clock": clock})
        for f in clip:
            p.process(f)
        runs[clock] = p.options.counts
    assert runs[True]["pose"] == runs[False]["pose"] == len(clip)
    assert runs[True].get("pose_tracked", 0) >= len(clip) - 2  # the first estimate, and a loss at most
    assert "pose_tracked" not in runs[False] and "pose_track_lost" not in runs[False]


@pytest.mark.media
@pytest.mark.model
def test_still_images_run_every_stage_whatever_the_levers():
    frame = frames(OFFICE)[0]
    shared = make_pipeline(track=False)
    p = Pipeline(
        shared.detector, shared.pose, PipelineOptions(**{**ALL_ON, "wrist_gate": False}), track=False
    )
    q = Pipeline(shared.detector, shared.pose, PipelineOptions(plain=True), track=False)
    for _ in range(2):
        assert p.process(frame).to_json() == q.process(frame).to_json()
    assert p.options.counts["detect"] == 2
    assert p.options.counts.get("pose_reused", 0) == 0


@pytest.mark.media
@pytest.mark.model
def test_detector_threads_change_the_speed_not_the_boxes():
    from vision.detect import Detector

    shared = make_pipeline().detector
    if not str(shared.weights).endswith(".tflite"):
        pytest.skip("detector threads apply to TFLite weights only")
    two = Detector(shared.weights, threads=2)
    assert two.threads == 2
    image = frames(OFFICE)[0].image
    a, b = shared.detect(image), two.detect(image)
    assert a.labels == b.labels
    assert np.allclose(a.xyxy, b.xyxy, atol=0.5) and np.allclose(a.confidence, b.confidence, atol=1e-3)


@pytest.mark.media
@pytest.mark.model
def test_pose_tracking_follows_a_moving_person_with_the_landmarks_of_a_full_estimate():
    """The chair clip's man sits down and gets up (frames 10-30): after the first full estimate,
    his landmarks come from the square his previous ones give, and stay where MediaPipe's full
    graph (person detector included) puts them: median within 3 % of his height."""
    clip = frames(CHAIR)[10:30]
    tracked = pipeline(**{**ALL_OFF, "pose_track": True, "pose_track_refresh_s": 100.0})
    full = pipeline(**ALL_OFF)
    errors = []
    for f in clip:
        a, b = tracked.process(f), full.process(f)
        for p, q in zip(a.persons, b.persons):
            if p.keypoints is None or q.keypoints is None:
                continue
            seen = q.visibility > 0.5
            h = float(q.box[3] - q.box[1])
            errors.append(float(np.median(np.hypot(*(p.keypoints - q.keypoints)[seen].T))) / h)
            assert p.features.posture.value == q.features.posture.value or "unknown" in (
                p.features.posture.value,
                q.features.posture.value,
            )
    counts = tracked.options.counts
    assert counts["pose_tracked"] >= len(clip) - 3  # the first estimate, and a re-detection or two
    assert len(errors) >= len(clip) - 2
    assert float(np.median(errors)) < 0.03, errors


@pytest.mark.media
@pytest.mark.model
def test_pose_tracking_runs_the_full_estimate_at_least_every_refresh():
    clip = frames(CHAIR)[10:16]  # 1.0 s at 5 fps
    p = pipeline(**{**ALL_OFF, "pose_track": True, "pose_track_refresh_s": 0.5})
    for f in clip:
        p.process(f)
    counts = p.options.counts
    assert counts["pose"] == 6
    full = counts["pose"] - counts.get("pose_tracked", 0)
    assert 2 <= full <= 4  # t = 0, 0.6 (and where the model lost the body)


@pytest.mark.media
@pytest.mark.model
def test_every_kth_detection_when_slow_skips_only_while_nobody_moves():
    """`every_when_slow`: frames are carried while everyone's box is at rest, and every frame is
    detected while someone walks (the chair clip's man leaving his post, 9.6-11 s)."""
    still = repeated(frames(CHAIR)[12], 6)
    p = pipeline(**{**ALL_OFF, "detect_every": 3, "every_when_slow": True})
    for f in still:
        p.process(f)
    # f0 and f1 detected (a speed needs two detections), f2-f3 carried, f4 detected, f5 carried
    assert (p.options.counts["detect"], p.options.counts["detect_skipped"]) == (3, 3)
    # 8.0-10.0 s: he gets up (the box grows upward) and walks off to the right.
    leaving = frames(CHAIR)[40:51]
    slow = pipeline(**{**ALL_OFF, "detect_every": 3, "every_when_slow": True})
    every = pipeline(**{**ALL_OFF, "detect_every": 3, "every_when_slow": False})
    detected = []
    for f in leaving:
        before = slow.options.counts.get("detect", 0)
        slow.process(f)
        every.process(f)
        detected.append(slow.options.counts["detect"] > before)
    assert every.options.counts["detect"] == 4  # 8.0, 8.6, 9.2, 9.8 s whatever moves
    assert detected[:4] == [True] * 4  # standing up: the top edge rises fast
    assert detected[-2:] == [True, True]  # walking away: 9.8 and 10.0 s
    assert sum(detected) > every.options.counts["detect"]


@pytest.mark.media
@pytest.mark.model
def test_wrist_crops_run_at_wrist_imgsz_and_plain_at_the_frame_size():
    """The crops' input size is a lever; a fixed-size detector still runs at its own (test_convert)."""
    shared = make_pipeline()
    asked: list[int | None] = []

    class Recording:
        def __init__(self) -> None:
            self.any_size = shared.detector.any_size

        def detect(self, image, imgsz=None, conf=None, square=False):  # noqa: ANN001, ANN202 - Detector's signature
            asked.append(imgsz)
            return shared.detector.detect(image, imgsz, conf)

    clip = frames(CHAIR)[5:8]
    seen = {}
    for name, options in (("plain", {"plain": True}), ("fast", {**ALL_OFF, "wrist_imgsz": 320})):
        asked.clear()
        p = Pipeline(Recording(), shared.pose, PipelineOptions(fps=5.0, **options))  # type: ignore[arg-type]
        for f in clip:
            p.process(f)
        seen[name] = list(asked)
    assert len(seen["plain"]) > len(clip)  # the frames and at least one crop
    assert set(seen["plain"]) == {640}
    assert seen["fast"].count(640) == len(clip) and seen["fast"].count(320) == len(seen["fast"]) - len(clip)


@pytest.mark.media
@pytest.mark.model
def test_a_still_image_keeps_the_square_and_full_size_crops_a_video_frame_does_not():
    """Video frames at their own aspect and `video_imgsz` (544) on their long side, with crops at
    their own size (`wrist_native`, on); a still image (a photo, `track=False`) in the detector's
    640 square with its crops at `wrist_imgsz`: the
    labelled photos' borderline phones were measured so, and a photo is not throughput-bound."""
    shared = make_pipeline()
    calls: list[tuple[int | None, bool]] = []

    class Recording:
        def __init__(self) -> None:
            self.any_size = shared.detector.any_size

        def detect(self, image, imgsz=None, conf=None, square=False):  # noqa: ANN001, ANN202 - Detector's signature
            calls.append((imgsz, square))
            return shared.detector.detect(image, imgsz, conf, square=square)

    frame = frames(CHAIR)[6]
    seen = {}
    for track in (True, False):
        calls.clear()
        Pipeline(Recording(), shared.pose, PipelineOptions(fps=5.0), track=track).process(frame)  # type: ignore[arg-type]
        seen[track] = list(calls)
    video, still = seen[True], seen[False]
    assert len(video) >= 2 and len(still) == len(video)  # the frame and at least one crop
    assert video[0] == (544, False) and still[0] == (640, True)
    assert all(size == 320 and not square for size, square in video[1:])  # small crops of a 480x848 clip
    assert all(size == 640 for size, _ in still[1:])


def test_wrist_native_runs_a_crop_at_its_own_size_between_the_bounds():
    native = PipelineOptions(fps=5.0, wrist_native=True)
    sides = (48, 140, 320, 321, 480, 500, 900)
    assert [native.wrist_input(s) for s in sides] == [320, 320, 320, 480, 480, 480, 480]
    wide = PipelineOptions(fps=5.0, wrist_native=True, wrist_video_imgsz=640)
    assert [wide.wrist_input(s) for s in sides] == [320, 320, 320, 480, 480, 640, 640]
    assert (
        PipelineOptions(fps=5.0, wrist_native=False).wrist_input(140) == 640
    )  # wrist_imgsz whatever the crop
    assert PipelineOptions(fps=5.0, plain=True, wrist_native=True).wrist_input(140) == 640
    small = PipelineOptions(
        fps=5.0, wrist_native=True, wrist_imgsz=480, wrist_min_imgsz=256, wrist_step=32, wrist_video_imgsz=640
    )
    assert [small.wrist_input(s) for s in (100, 300, 700)] == [256, 320, 480]


@pytest.mark.media
@pytest.mark.model
def test_a_close_up_workers_phone_is_found_in_his_wrist_crops_scaled_down_to_480():
    """The warehouse worker on the phone fills the frame: his wrist crops are 700 to 900 pixels,
    which now run as 480 squares, not 640 (about half the cost). The phone at his ear is still
    found in the crops on nearly every frame of the clip: 123 of 129 (128 at 640, 78 at 320)."""
    p = pipeline(wrist_every=1)
    sizes: list[int] = []
    detect = p.detector.detect

    def spy(image, imgsz=None, conf=None, square=False):  # noqa: ANN001, ANN202 - Detector.detect
        if image.shape[0] == image.shape[1]:
            sizes.append(imgsz)
        return detect(image, imgsz=imgsz, conf=conf, square=square)

    found = []
    p.detector.detect = spy  # type: ignore[method-assign]
    try:
        with open_source(str(media_path("2_worker_hivis_hardhat_phone_call_warehouse.mp4")), fps=5) as source:
            for frame in source:
                held = [d for person in p.process(frame).persons for d in person.held]
                found.append(any(d.label == "cell phone" and d.source == "wrist" for d in held))
    finally:
        del p.detector.detect
    assert sizes and set(sizes) == {480}
    assert len(found) == 129 and sum(found) >= 115, sum(found)


class _NoBody:
    """A pose model that never finds a body (a seated worker hidden behind a screen)."""

    def __init__(self) -> None:
        self.estimates = 0

    def estimate(self, image, box):  # noqa: ANN001, ANN202 - PoseEstimator's signature
        self.estimates += 1
        return None

    def follow(self, image, box, roi, hips_below=0.0):  # noqa: ANN001, ANN202
        raise AssertionError("no pose was ever found, so there is nothing to follow")


class _OneBox:
    """A detector that finds one person, moved `step` px right on each call."""

    any_size = True

    def __init__(self, step: float = 0.0) -> None:
        self.step, self.calls = step, 0

    def detect(self, image, imgsz=None, conf=None, square=False):  # noqa: ANN001, ANN202 - Detector's signature
        from vision.detect import Boxes

        x = 100.0 + self.step * self.calls
        self.calls += 1
        return Boxes(np.array([[x, 60.0, x + 80.0, 300.0]]), np.array([0.9]), ["person"])


def _retry_run(
    step: float, dt: float = 0.2, pose: object = None, n: int = 10, **options: object
) -> tuple[Any, PipelineOptions]:
    """`n` frames `dt` apart (0.2: every frame of 5 fps; more: a service that falls behind), every
    frame different so nothing is skipped for stillness."""
    rng = np.random.default_rng(0)
    pose = _NoBody() if pose is None else pose
    p = Pipeline(_OneBox(step), pose, PipelineOptions(fps=5.0, **{**ALL_OFF, **options}))  # type: ignore[arg-type]
    for i in range(n):
        p.process(Frame("cam", dt * i, i, rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)))
    return pose, p.options


def test_a_box_without_a_body_is_posed_again_only_after_pose_retry_s():
    pose, o = _retry_run(0.0, pose_retry_s=0.6)
    # Asked at 0, 0.6, 1.2 and 1.8 s: the frames between wait.
    assert pose.estimates == 4 and o.counts["pose_retry_wait"] == 6
    plain, o = _retry_run(0.0, plain=True)
    assert plain.estimates == 10 and "pose_retry_wait" not in o.counts
    off, _ = _retry_run(0.0, pose_retry_s=0.0)
    assert off.estimates == 10


def test_a_box_without_a_body_waits_longer_after_each_miss_in_a_row():
    """A worker hidden behind a screen: asked at 0 and 0.6 s, then 1.2 s later, then every 2.4 s
    (`pose_retry_doublings` 2): frames 0, 3, 9, 21 of 30; with one doubling every 1.2 s after the
    second miss. A box that finds a body starts again from 0.6 s (`_Body`, never waiting)."""
    default, _ = _retry_run(0.0, n=30, pose_retry_s=0.6, pose_retry_doublings=2)
    assert default.estimates == 4
    once, _ = _retry_run(0.0, n=30, pose_retry_s=0.6, pose_retry_doublings=1)
    assert once.estimates == 6  # frames 0, 3, 9, 15, 21, 27
    assert PipelineOptions().pose_retry_doublings == 2 and PipelineOptions(plain=True).retry_s == 0.0

    class _FoundOnce(_NoBody):
        """No body, except on the fourth ask."""

        def estimate(self, image, box):  # noqa: ANN001, ANN202 - PoseEstimator's signature
            self.estimates += 1
            return _Body().pose if self.estimates == 4 else None

    once_found, _ = _retry_run(0.0, n=30, pose=_FoundOnce(), pose_retry_s=0.6, pose_retry_doublings=2)
    assert once_found.estimates == 6  # frames 0, 3, 9, 21 (found), then 22 and 25 (0.6 s again)


class _Body:
    """A pose model that always finds the same upright body in the box (full estimate or followed)."""

    def __init__(self) -> None:
        self.estimates = self.follows = 0
        kp = np.tile([140.0, 180.0], (33, 1))
        kp[[11, 12], 1], kp[[23, 24], 1] = 100.0, 180.0  # shoulders above hips
        kp[[11, 23], 0], kp[[12, 24], 0] = 120.0, 160.0
        aux = np.array([[140.0, 180.0], [140.0, 60.0]])  # alignment centre and scale point
        self.pose = Pose(kp, np.zeros((33, 3)), np.ones(33), aux)

    def estimate(self, image, box):  # noqa: ANN001, ANN202 - PoseEstimator's signature
        self.estimates += 1
        return self.pose

    def follow(self, image, box, roi, hips_below=0.0):  # noqa: ANN001, ANN202
        self.follows += 1
        return self.pose


TRACK_ONLY = dict(pose_track=True, wrist_crops=False)


def test_frame_clock_keeps_following_a_track_when_the_service_falls_behind():
    """Analysed once in 1.2 s (a box behind its cameras), a track posed on the camera's previous
    analysed frame is still followed: counted in seconds it was too old (pose_track_gap_s 1 s) and
    every pose became a full estimate, the dearest kind."""
    behind, _ = _retry_run(0.0, dt=1.2, pose=_Body(), **TRACK_ONLY)
    assert (behind.estimates, behind.follows) == (1, 9)  # 9 frames = 1.8 s at 5 fps < the 2 s refresh
    seconds, _ = _retry_run(0.0, dt=1.2, pose=_Body(), frame_clock=False, **TRACK_ONLY)
    assert (seconds.estimates, seconds.follows) == (10, 0)
    plain, _ = _retry_run(0.0, dt=1.2, pose=_Body(), plain=True, **TRACK_ONLY)
    assert (plain.estimates, plain.follows) == (10, 0)
    # At the analysis rate the frames and the seconds agree.
    for clock in (True, False):
        on_time, _ = _retry_run(0.0, dt=0.2, pose=_Body(), frame_clock=clock, **TRACK_ONLY)
        assert (on_time.estimates, on_time.follows) == (1, 9)


def test_frame_clock_refreshes_the_full_estimate_every_refresh_in_frames():
    behind, _ = _retry_run(0.0, dt=1.2, pose=_Body(), pose_track_refresh_s=1.0, **TRACK_ONLY)
    assert (behind.estimates, behind.follows) == (2, 8)  # frames 0 and 5: 1 s at 5 fps


def test_frame_clock_waits_frames_before_asking_a_box_without_a_body_again():
    behind, o = _retry_run(0.0, dt=1.2, pose_retry_s=0.6)
    assert behind.estimates == 4 and o.counts["pose_retry_wait"] == 6  # frames 0, 3, 6, 9
    seconds, o = _retry_run(0.0, dt=1.2, pose_retry_s=0.6, frame_clock=False)
    assert seconds.estimates == 10 and "pose_retry_wait" not in o.counts


def test_a_box_that_moves_is_posed_again_at_once():
    # 30 px a frame is more than pose_retry_shift (10 %) of the 240-px box: asked every frame.
    pose, o = _retry_run(30.0, pose_retry_s=0.6)
    assert pose.estimates == 10 and "pose_retry_wait" not in o.counts
    # After misses in a row the move must double too (20 %, then 40 % of the box: 48 and 96 px):
    # the jitter of a half-hidden box is not a move. Asked on frames 0, 1, 3 and 7.
    backoff, o = _retry_run(30.0, pose_retry_s=0.6, pose_retry_doublings=2)
    assert backoff.estimates == 4 and o.counts["pose_retry_wait"] == 6


@pytest.mark.media
@pytest.mark.model
def test_pose_retry_in_the_open_plan_office_skips_only_tracks_whose_estimate_just_failed():
    """Real seated workers, some hidden behind screens: with the lever the bodyless boxes wait,
    everyone else is posed exactly as without it (each frame's estimate stands alone here)."""
    clip = frames(OFFICE)[:10]
    without, retry = pipeline(**ALL_OFF), pipeline(**{**ALL_OFF, "pose_retry_s": 0.6})
    skipped, before = 0, {}
    for f in clip:
        a = {p.track_id: p for p in without.process(f).persons}
        b = {p.track_id: p for p in retry.process(f).persons}
        assert a.keys() == b.keys()
        for k, p in b.items():
            if p.keypoints is not None:
                assert a[k].keypoints is not None and np.allclose(p.keypoints, a[k].keypoints)
            elif a[k].keypoints is not None:
                skipped += 1  # waiting: its previous estimate found no body
                assert k in before and before[k].keypoints is None, k
        before = b
    assert retry.options.counts["pose_retry_wait"] > 0
    counts = retry.options.counts
    assert counts["pose"] + counts["pose_retry_wait"] == without.options.counts["pose"]
    assert skipped <= retry.options.counts["pose_retry_wait"]


class _Crowd:
    """Six people side by side at rest; with `walker`, that one moves 30 px right on every call
    (more than `pose_budget_shift`, 10 %, of the 240-px box)."""

    any_size = True

    def __init__(self, walker: int | None = None) -> None:
        self.walker, self.calls = walker, 0

    def detect(self, image, imgsz=None, conf=None, square=False):  # noqa: ANN001, ANN202 - Detector's signature
        from vision.detect import Boxes

        x = 10.0 + 100.0 * np.arange(6)
        if self.walker is not None:
            x[self.walker] += 30.0 * self.calls
        self.calls += 1
        boxes = np.stack([x, np.full(6, 60.0), x + 80.0, np.full(6, 300.0)], axis=1)
        return Boxes(boxes, np.full(6, 0.9), ["person"] * 6)


def _crowd_run(
    walker: int | None = None, waiting: int = 0, **options: object
) -> tuple[list[dict[int, bool]], list[int]]:
    """Nine frames of the crowd: per frame, each track's "posed now" (a landmark model ran for
    it), and the landmark runs of that frame. `waiting`: the camera's frames waiting behind each."""
    rng = np.random.default_rng(0)
    pose = _Body()
    p = Pipeline(_Crowd(walker), pose, PipelineOptions(fps=5.0, **{**ALL_OFF, **TRACK_ONLY, **options}))  # type: ignore[arg-type]
    p.waiting = waiting
    posed, runs = [], []
    for i in range(9):
        before = pose.estimates + pose.follows
        obs = p.process(Frame("cam", 0.2 * i, i, rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)))
        runs.append(pose.estimates + pose.follows - before)
        assert len(obs.persons) == 6 and all(q.keypoints is not None for q in obs.persons)
        memo = {k: p._memo.get(k) for k in (q.track_id for q in obs.persons)}  # none in plain
        posed.append({k: m is not None and m.frame == p._frame_no for k, m in memo.items()})
    return posed, runs


def test_a_pose_budget_poses_a_still_crowd_in_turns_and_a_mover_on_every_frame():
    posed, runs = _crowd_run(pose_budget=2)
    assert runs[0] == 6  # nobody has landmarks yet: everyone is posed
    assert runs[1:] == [2] * 8  # then two a frame, the longest waiting first
    for track in posed[0]:  # ... so each is posed at least every third frame, and keeps landmarks between
        frames_posed = [i for i, f in enumerate(posed) if f[track]]
        assert max(np.diff(frames_posed)) <= 3, (track, frames_posed)
    # Whoever moves more than the budget's shift is posed on every frame, beyond the budget.
    posed, runs = _crowd_run(walker=2, pose_budget=2)
    mover = [k for k in posed[0] if all(f[k] for f in posed)]
    assert len(mover) == 1 and runs[1:] == [3] * 8
    # Without a budget (and in plain) everyone is posed on every frame.
    for options in ({"pose_budget": 0}, {"pose_budget": 2, "plain": True}):
        posed, runs = _crowd_run(**options)
        assert runs == [6] * 9


def test_a_camera_that_falls_behind_sheds_pose_work_before_frames():
    """With two or more of its frames waiting (`Pipeline.waiting`, set by the service), a camera's
    budget drops to two landmark runs a frame and a still person keeps landmarks up to 0.8 s old:
    the crowd of six is posed two at a time, each at least every third frame. One frame waiting
    changes nothing, nor does strain without a budget."""
    _, runs = _crowd_run(pose_budget=4)
    assert runs[1:] == [4] * 8
    posed, runs = _crowd_run(pose_budget=4, waiting=2)
    assert runs[0] == 6 and runs[1:] == [2] * 8
    for track in posed[0]:
        frames_posed = [i for i, f in enumerate(posed) if f[track]]
        assert max(np.diff(frames_posed)) <= 3, (track, frames_posed)
    assert _crowd_run(pose_budget=4, waiting=1)[1][1:] == [4] * 8
    assert _crowd_run(pose_budget=0, waiting=5)[1] == [6] * 9
    # A mover is still posed on every frame.
    posed, runs = _crowd_run(walker=2, pose_budget=4, waiting=3)
    assert len([k for k in posed[0] if all(f[k] for f in posed)]) == 1 and runs[1:] == [3] * 8


class _HiddenFirst(_Body):
    """`_Body`, except that the full estimate finds no body in the leftmost box; full estimates
    are noted by frame and box."""

    def __init__(self) -> None:
        super().__init__()
        self.frame, self.full = 0, []

    def estimate(self, image, box):  # noqa: ANN001, ANN202 - PoseEstimator's signature
        self.estimates += 1
        self.full.append((self.frame, float(box[0])))
        return None if box[0] < 50 else self.pose


def test_a_camera_that_falls_behind_refreshes_followed_poses_less_and_asks_a_hidden_box_later():
    """Six still people over 8 s, the leftmost without a body at every full estimate. Behind
    (two frames waiting), the followed five get their full estimate every 4 s instead of 2 s, and
    the hidden box, put last, waits once the budget is spent: asked at most every 2.4 s (the
    retry's longest wait), never dropped, instead of after 0.6, 1.2 and then every 2.4 s."""
    options = {**ALL_OFF, **TRACK_ONLY, "pose_budget": 4, "pose_retry_s": 0.6, "pose_retry_doublings": 2}

    def run(waiting: int) -> tuple[_HiddenFirst, dict[str, int]]:
        rng = np.random.default_rng(0)
        pose = _HiddenFirst()
        p = Pipeline(_Crowd(), pose, PipelineOptions(fps=5.0, **options))  # type: ignore[arg-type]
        p.waiting = waiting
        for i in range(40):
            pose.frame = i
            p.process(Frame("cam", 0.2 * i, i, rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)))
        return pose, p.options.counts

    on_time, counts = run(0)
    behind, strained = run(2)
    assert "pose_strain_wait" not in counts and strained["pose_strain_wait"] > 0
    hidden = [[f for f, x in pose.full if x < 50] for pose in (on_time, behind)]
    assert hidden[0] == [0, 3, 9, 21, 33]  # the backoff: 0.6, 1.2, then 2.4 s
    assert hidden[1][0] == 0 and len(hidden[1]) < len(hidden[0])
    assert max(np.diff(hidden[1] + [40])) <= 12  # never more than 2.4 s without asking
    seen = [[f for f, x in pose.full if x > 50] for pose in (on_time, behind)]
    assert len(seen[1]) < 0.7 * len(seen[0])
    for pose in (on_time, behind):  # each followed person still gets full estimates
        for x in 110.0 + 100.0 * np.arange(5):
            assert sum(1 for _, bx in pose.full if bx == x) >= 2


class _Office:
    """Two people at rest and a third, half hidden, whom the detector finds at 0.38: over the
    pipeline's person threshold (0.35), under ByteTrack's new-track threshold (0.4). From call
    `newcomer_at` on, a fourth person at 0.9 walks in."""

    any_size = True

    def __init__(self, newcomer_at: int | None = None) -> None:
        self.calls, self.newcomer_at = 0, newcomer_at

    def detect(self, image, imgsz=None, conf=None, square=False):  # noqa: ANN001, ANN202 - Detector's signature
        from vision.detect import Boxes

        boxes = [[20, 40, 100, 300], [200, 40, 280, 300], [400, 120, 450, 260]]
        scores = [0.9, 0.85, 0.38]
        if self.newcomer_at is not None and self.calls >= self.newcomer_at:
            boxes.append([520, 40, 600, 300])
            scores.append(0.9)
        self.calls += 1
        return Boxes(np.array(boxes, float), np.array(scores), ["person"] * len(boxes))


SLOW_EVERY3 = dict(detect_every=3, every_when_slow=True, wrist_crops=False)  # no crops: calls are frames


def _office_run(detector: _Office) -> list[bool]:
    """Twelve frames 0.2 s apart; which of them ran the detector (every 3rd while all are slow)."""
    rng = np.random.default_rng(1)
    options = PipelineOptions(fps=5.0, **{**ALL_OFF, **SLOW_EVERY3})  # type: ignore[arg-type]
    p = Pipeline(detector, _Body(), options)  # type: ignore[arg-type]
    ran = []
    for i in range(12):
        before = detector.calls
        p.process(Frame("cam", 0.2 * i, i, rng.integers(0, 255, (360, 640, 3), dtype=np.uint8)))
        ran.append(detector.calls > before)
    return ran


def test_a_faint_box_that_never_becomes_a_track_does_not_hold_detection_on_every_frame():
    """The crowded office was detected on 54 of its 62 frames: a half-hidden worker at a confidence
    under the new-track threshold looked like a newcomer on every detection. Only tracks the next
    detection must confirm hold the detector now."""
    ran = _office_run(_Office())
    # f0 and f1 detected (a speed needs two detections), then every third frame.
    assert ran == [True, True, False, False, True, False, False, True, False, False, True, False]
    # A real newcomer on the 3rd call (frame 4): frame 5 is detected to confirm him, then the
    # schedule resumes (his speed needs two detections: frame 5 and frame 6).
    ran = _office_run(_Office(newcomer_at=2))
    assert ran[4:8] == [True, True, True, False]


class _Square:
    """A detector that reads every picture in its square (`Detector.detect(square=True)`)."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector

    def __getattr__(self, name: str) -> Any:
        return getattr(self.detector, name)

    def detect(self, image, imgsz=None, conf=None, square=False):  # noqa: ANN001, ANN202 - Detector's signature
        return self.detector.detect(image, imgsz, conf, square=True)


@pytest.mark.media
@pytest.mark.model
def test_in_the_open_plan_office_a_faint_worker_does_not_hold_the_detector():
    """On the real office clip: a detection that finds a person box the tracker does not return
    (the half-hidden worker the detector sees at 0.35-0.4) leaves the next frame free to skip, as
    everyone's speed decides; after a detection that began a track, the next frame is always
    detected. The old rule (any box beyond the tracks' number) held the detector for every such
    next frame.

    Whether everyone is slow just then, so that a frame is actually skipped, depends on a few
    pixels of the boxes: on the Intel and AVX-512 EPYC hosts a skip followed such a detection
    within the first 40 frames, on an AVX2-only EPYC the clip's skips came after detections without
    one. The test holds on both: what such a detection leaves behind is no newcomer.

    Read in the detector's 640 square: at the frames' own aspect (640x384) the office's boxes move
    more from call to call and the schedule skips only 2 of 62 frames (4 in the square), none of
    them among the first 40."""
    shared = make_pipeline()
    options = PipelineOptions(fps=5.0, **{**ALL_OFF, **SLOW_EVERY3}, pose_filter=lambda box, obs: False)
    p = Pipeline(_Square(shared.detector), shared.pose, options)  # type: ignore[arg-type]
    tracker, update = p.tracker, p.tracker.update
    seen: list[tuple[bool, int]] = []  # per detection: a box beyond the tracks, tracks pending

    def watched(persons, shape):  # noqa: ANN001, ANN202 - PersonTracker.update's signature
        tracks = update(persons, shape)
        seen.append((len(persons) > len(tracks), tracker.pending))
        return tracks

    tracker.update = watched  # type: ignore[method-assign]
    detected = []
    newcomers = []  # after each detection: whether the schedule holds the detector for newcomers
    for f in frames(OFFICE)[:40]:
        before = len(seen)
        p.process(f)
        detected.append(len(seen) > before)
        if detected[-1]:
            newcomers.append(p._newcomers)
    after: list[tuple[bool, int, bool]] = []  # (beyond, pending, next frame detected)
    k = 0
    for i, ran in enumerate(detected[:-1]):
        if ran:
            beyond, pending = seen[k]
            after.append((beyond, pending, detected[i + 1]))
            k += 1
    assert all(nxt for _, pending, nxt in after if pending), after
    faint = [k for k, (beyond, pending) in enumerate(seen) if beyond and not pending]
    assert faint, seen  # the faint worker is there
    assert not any(newcomers[k] for k in faint), (seen, newcomers)
    assert all(newcomers[k] for k, (_, pending) in enumerate(seen) if pending), (seen, newcomers)


@pytest.mark.media
@pytest.mark.model
def test_the_pose_budget_in_the_open_plan_office_poses_fewer_and_leaves_nobody_without_landmarks():
    """Real seated workers, eleven and more: with a budget of four, fewer landmark runs, some poses
    carried, and as many people with landmarks on each frame (carried or fresh), give or take one
    whose followed pose went another way (4-8 a frame here, with or without the budget)."""
    clip = frames(OFFICE)[:10]
    track = {**ALL_OFF, "pose_track": True}
    free, budget = pipeline(**track), pipeline(**{**track, "pose_budget": 4})
    posed = []
    for f in clip:
        a = {p.track_id: p for p in free.process(f).persons}
        b = {p.track_id: p for p in budget.process(f).persons}
        assert a.keys() == b.keys() and len(a) > 4
        posed.append([sum(p.keypoints is not None for p in x.values()) for x in (a, b)])
    assert all(with_budget >= without - 1 for without, with_budget in posed), posed
    assert sum(b for _, b in posed) >= sum(a for a, _ in posed) - 2, posed
    counts = budget.options.counts
    assert counts["pose_budgeted"] > 0
    assert counts["pose"] < free.options.counts["pose"]


@pytest.mark.media
@pytest.mark.model
def test_in_the_open_plan_office_backoff_and_strain_pose_less_and_keep_the_landmarks():
    """Real seated workers, some hidden behind screens, over 4 s: the retry's backoff waits more
    and poses less (a hidden worker is asked less often), and a camera with two frames waiting
    poses fewer people a frame than with the budget alone (84 against 105 runs here) while every
    frame has as many people with landmarks, give or take one (the backoff may leave a box that
    was hidden without landmarks a frame longer), once the first frames' newcomers are posed.

    The backoff is judged over 8 s: over the first 4 s an AVX2-only EPYC waited 3 times with and
    without it (its full estimates find a hidden worker's body a little more often), over 8 s 30
    against 20 times (219 against 229 poses)."""
    clip = frames(OFFICE)[:20]
    base = {**ALL_OFF, "pose_track": True, "pose_retry_s": 0.6}

    def run(
        waiting: int = 0, clip: list[Frame] = clip, **options: object
    ) -> tuple[dict[str, int], list[int]]:
        p = pipeline(**{**base, **options})
        p.waiting = waiting
        posed = [sum(q.keypoints is not None for q in p.process(f).persons) for f in clip]
        return p.options.counts, posed

    longer = frames(OFFICE)[:40]
    plain_retry, posed = run(clip=longer)
    backoff, posed_backoff = run(clip=longer, pose_retry_doublings=2)
    assert backoff["pose_retry_wait"] > plain_retry["pose_retry_wait"]
    assert backoff["pose"] < plain_retry["pose"]
    assert all(abs(a - b) <= 1 for a, b in zip(posed, posed_backoff)), (posed, posed_backoff)
    budget, posed_budget = run(pose_budget=4)
    strained, posed_strained = run(waiting=2, pose_budget=4)
    assert strained["frames_strained"] == len(clip) and "frames_strained" not in budget
    assert strained["pose"] < 0.9 * budget["pose"]
    # A hidden worker's box is asked again later while behind, never without a wait.
    assert strained["pose_strain_wait"] > 0 and "pose_strain_wait" not in budget
    # After the first 8 frames: two landmark runs a frame need four frames to reach seven
    # newcomers, more where a full estimate finds no body, and four runs reach them sooner (an
    # AVX2-only EPYC: 3, 3, 3, 5, 5, 5 people against 3, 5, 5, 7, 7, 7 on the first six frames).
    assert all(b >= a - 1 for a, b in zip(posed_budget[8:], posed_strained[8:])), (
        posed_budget,
        posed_strained,
    )
