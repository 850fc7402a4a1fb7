"""Frames in, `FrameObservation`s out: detect, track, pose, look at the hands, compute features.

The one vision path every front end (`inspect`, `analyze`, `serve`, `evaluate`,
`bench`) drives. Pose runs only on persons a `pose_filter` selects (all of
them by default), so a site can limit it to people in its zones
(`zone_pose_filter`).

Phones are small: the full-frame detector at 640 finds a phone in hand in one
photo of seven. So each posed person's hands get a second look: a square crop
around the wrists (about a shoulder width each side), which the detector's
letterbox upscales. Crop detections are kept as evidence (`source="wrist"`).

Throughput levers (issue 5; figures in docs/performance.md). On a 2-core box
the detector costs about 40 ms a call (160 ms on a slower host) and BlazePose about 35 ms a person, and
a posed person costs up to two more detector calls for the wrist crops, so a
plain frame with one person is ~150 ms: far from 8 cameras at 5 fps (25 ms a
frame). Each lever is a `PipelineOptions` switch; `plain=True` turns all of
them off, so the baseline stays one flag away and every figure is a ratio
against it. The rule for a lever to be on by default (`fast`): the evaluation
on ../shared/media stays within 2 points of plain (bench/accuracy_levers.py).
Each lever below met it when it was switched on, and `fast` as a whole meets
it in the latest runs (docs/performance.md):

* `motion_gate` (on): a downscaled grey frame is compared with the one of the
  last detection; when (almost) nothing changed, detection is skipped and the
  last tracks and objects are carried (nobody comes or goes without moving).
* `pose_reuse` (on): a track at rest (its box within a few % of where it came
  to rest for `pose_reuse_still_s`) whose pixels did not change since its last
  pose keeps its landmarks and wrist finds, for at most `pose_reuse_max_s`.
  Without the rest and pixel conditions, a walker's landmarks froze for a
  frame and walking went undetected.
* `pose_track` (on): a track posed on the previous frame (within `pose_track_gap_s`) is posed
  by BlazePose's landmark model alone, on the square its previous landmarks give
  (`vision.landmarks`): MediaPipe's tracking mode, without its person detector and without a
  graph per person. The full estimate runs again when the model loses the body, and at least
  every `pose_track_refresh_s`. On the labelled photos the landmarks land within 1 % of the
  person's height of the full estimate's (tests/test_landmarks.py). With `follow_hips_below`
  (0.7), a followed pose's hips may lie that share of the box's height below it: a worker seated
  behind a desk shows a box that ends at the desk, the followed hips lie behind it, and the
  strict check rejected those follows for a full estimate that found the same worker again
  (open-plan office, 40 frames: 6 lost follows against 30, 65 full estimates against 89).
* `wrist_gate` (on): a wrist crop only for a hand in front of the body, not for
  an arm hanging at the side or held behind the back.
* `wrist_every=k` (5): a track's wrist crops run on every k-th pose; between,
  their finds move with the hands (a phone in hand stays for seconds).
* `wrist_imgsz` (640, so off): the wrist crops' detector input, where the weights
  take any size (`Detector.any_size`: the int8 TFLite model through
  `vision.litert`, the OpenVINO model `vision.convert` makes, `.pt` files). At
  320 a crop costs about half, but the labelled photos lost a phone and a book.
* `video_imgsz` (544): a video frame's detector input, its long side (a 16:9 frame at 544x320
  instead of 640x384), where the weights take any size; still images keep `imgsz` (640), as they
  keep the square. The detector costs about three quarters. The evaluation moves a lot with this
  size, as with anything that moves the person boxes by a few pixels (video F1 against plain's
  53.3, one run: 52.8 at 640, 45.9 at 576, 52.5 at 544, 55.2 at 512, 50.8 at 480), and at 512 the
  built-in demo's folded arms flickered enough to lose its alert: 544 is the smallest size that
  keeps both (docs/performance.md).
* `wrist_native` (on): a video frame's crop at its own size instead (its side
  rounded up to 320, 480 or 640), so a hundred-pixel crop from a CCTV frame is
  no longer upscaled to 640. A still image's crops keep `wrist_imgsz`, as its
  frame keeps the detector's square: with native crops the labelled photos lost
  a phone. Any-size weights only.
* `wrist_video_imgsz` (480): the largest input of a video frame's crop; a larger
  crop is scaled down to it. A close-up worker's hands make crops of 700 to 900
  pixels: each was a 640 square, two to three times a whole frame's detector call
  (52 against 23 ms on a 2-core Xeon), and a 480 square is about half that. The
  warehouse worker's phone at his ear is still found by his crops on 123 of 129
  frames (128 at 640, 78 at 320; with the frame's own detections 127, 129 and
  102), and the evaluation did not move. Still images keep `wrist_imgsz`.
* `detect_every=k` (3) with `every_when_slow` (on): the detector runs on
  every k-th frame while everyone in view moves under `every_slow_bh_s` of
  their height a second (desks and posts at rest), and on every frame once
  someone walks; the frames between move each box on at its track's velocity,
  and the tracker coasts through them (`PersonTracker.coast`: one Kalman step a
  frame, so its motion model and lost buffer count frames, not updates).
  Without `every_when_slow` the walking events, whose speed is read from the
  foot point frame to frame, fall apart at 5 fps (-10 points). Before the
  tracker coasted, a small slow walker who turned between two detections got a
  new id (the CAVIAR walk-out).
* `pose_retry_s` (0.6 s): when MediaPipe's full estimate found no body in a track's
  box (a seated worker hidden behind a screen, a neighbour's body rejected), the
  track is not posed again for this long unless its box moves or grows by more
  than `pose_retry_shift` of its height. Each failed estimate costs two
  MediaPipe runs (both crops of `PoseEstimator.attempts`); in the open-plan
  office a third of the estimates failed, frame after frame. After each further
  miss in a row the wait and the move both double, `pose_retry_doublings` (2)
  times at most: a half-hidden worker's box jitters by 15-70 % of its height
  from frame to frame, which read as a move.
* `frame_clock` (on): the ages above (tracking's gap and refresh, reuse, retry) count this
  camera's analysed frames at `fps` where that is less than the seconds passed. A service that
  falls behind (each camera analysed once in a second or more) otherwise found every track too old
  to follow or reuse, and each pose became a full estimate, the dearest kind, just when time was
  shortest. At the analysis rate it changes nothing.
* `pose_budget` (4): at most this many landmark runs (followed or full) per frame of a camera.
  Beyond them, a person whose box stayed within `pose_budget_shift` of its height and whose
  last landmarks are at most `pose_budget_max_s` old keeps those landmarks and wrist finds,
  moved with the box, as `pose_reuse` does. The persons posed longest ago (and those never posed)
  go first, so in a crowd of still people each is posed every few frames; whoever moves, or is
  due, is posed on every frame whatever the budget. In the benchmark's open-plan office (eleven
  seated workers) poses were six in ten of all the CPU of eight cameras; a scene of four people or
  fewer is posed as before. A camera's frames are analysed one at a time, so the office's frame
  cost is also its frame rate: at 8 cameras it was analysed at 4.1-4.7 frames a second without the
  budget and 4.9 with it. (With frames detected at 640, it once split the office's sitting into two
  more pieces, 1.9 points of video F1; at 512 the evaluation is the same with or without it.)
* `pose_budget_strained` (2) and `pose_budget_strained_max_s` (0.8 s): the budget while the
  camera falls behind (`Pipeline.waiting`, set by the service: at least `strain_waiting` more of
  its frames wait behind this one). A camera's frames are analysed one at a time, and the capture
  thread drops the oldest waiting frame when its queue is full; a dropped frame loses every
  person's observation, while a still person's landmarks kept two frames longer lose little. So
  under load the pose work is shed first. Two more sheddings while behind: a followed pose gets
  its full estimate every 2 x `pose_track_refresh_s`, and a box without a body at its last
  estimate (the dearest pose, and the least likely to find one) goes last and, once the budget
  is spent, waits, up to the retry's longest wait (`pose_retry_s` x 2^`pose_retry_doublings`).
  In the benchmark's office, held behind for 150 frames: 111 against 154 ms of CPU a frame.
* `pose_filter` (`serve` sets `zone_pose_filter` for a camera with zones):
  pose only for persons standing in a post, standby, staff-only or work zone.

Not a lever: each track's posture is voted over `posture_window_s` (0.4 s, three frames at
5 fps; `vision.smooth`), so a one-frame flip of BlazePose's reading (a man bent over a railing
reads lying for a frame) does not reach the rules. A real change shows one frame later.

Carried and reused results are what the plain pipeline found one or a few
frames earlier: the rules see a frame that lags, never one that invents.
Still images (`track=False`) always run every stage, read by the detector in its square with
full-size wrist crops; video frames are read at their own aspect where the detector takes any size
(`Detector.detect`, `vision.litert`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from vision.detect import Boxes, Detector
from vision.features import Body, compute_features, hand_pose
from vision.landmarks import roi_from_pose
from vision.observation import Detection, FrameObservation, PersonObservation
from vision.pose import L_SHOULDER, L_WRIST, R_SHOULDER, R_WRIST, Pose, PoseEstimator, crop_square
from vision.smooth import POSTURE_WINDOW_S, LabelVote
from vision.track import PersonTracker

if TYPE_CHECKING:
    from vision.sources import Frame

PoseFilter = Callable[[np.ndarray, FrameObservation], bool]
HAND_OBJECTS = ("cell phone", "remote", "book", "cup", "bottle", "wine glass")
MODES = ("plain", "fast")
#: Zone kinds whose occupants are posed by `zone_pose_filter`: every kind whose rules or staff
#: checks read landmarks (person clauses in post/standby, uniforms in staff-only and work zones).
POSED_ZONE_KINDS = ("post", "standby", "staff_only", "work")
#: Hand positions (`vision.features.hand_pose`) where a wrist crop cannot show a phone in use.
HANDS_AWAY = ("at_sides", "behind")
MOTION_WIDTH = 160  # px: the grey frame motion is measured on (noise and cost both shrink with it)
STAGES = ("motion", "detect", "track", "pose", "wrist", "features")


@dataclass
class PipelineOptions:
    """How one camera's frames are analysed. Lever defaults are documented in docs/performance.md.

    `stages_ms` and `counts` are accumulators the pipeline adds to on every frame (milliseconds per
    stage, and how often each stage ran or was skipped); pipelines sharing one options object add
    to the same totals, which is what the benchmark wants for "all cameras".
    """

    fps: float = 5.0  # analysis rate, for the tracker's lost buffer
    imgsz: int = 640
    # A video frame's detector input (its long side) where the weights take any size; still images
    # keep `imgsz`. 544: 0.72 of 640's pixels, the evaluation within the line (module doc).
    video_imgsz: int = 544
    person_conf: float = 0.35
    object_conf: float = 0.2
    wrist_crops: bool = True
    # Crops' detector input where the weights take any size (fixed exports such as TFLite: their own).
    # 640: at 320 a phone and a book were lost on the labelled photos (docs/performance.md, `wristsz320`).
    wrist_imgsz: int = 640
    # ... or, with `wrist_native`, the crop's own side rounded up to a multiple of `wrist_step`, between
    # `wrist_min_imgsz` and `wrist_imgsz`: a crop is never downscaled, a small one is upscaled less,
    # and the few sizes keep the detector's compiled shapes few (vision.detect.OpenVINOShapes).
    wrist_native: bool = True
    wrist_min_imgsz: int = 320
    wrist_step: int = 160
    wrist_video_imgsz: int = 480  # ... and a video frame's crop at most this (module doc)
    lost_buffer_s: float = 3.0
    pose_filter: PoseFilter | None = None
    # -- throughput levers (module doc); `plain` switches every one of them off -------------------
    plain: bool = False
    motion_gate: bool = True
    motion_delta: int = 16  # grey levels (of 255) a blurred pixel must change by to count as moved
    motion_share: float = 0.002  # share of the frame that must change to run the detector again
    motion_max_skip_s: float = 2.0  # detect at least this often even in a still scene
    detect_every: int = 3
    every_when_slow: bool = True  # ... only while everyone in view moves slower than ...
    every_slow_bh_s: float = 0.15  # ... this share of their height a second (3 % a frame at 5 fps)
    pose_reuse: bool = True
    pose_reuse_share: float = 0.02  # share of a person's box that may change while landmarks are reused
    pose_reuse_shift: float = 0.04  # box centre/size change, in box heights, still "barely moved"
    pose_reuse_max_s: float = 1.0  # re-estimate at least this often
    pose_reuse_still_s: float = 0.6  # ... and only for a track whose box has been still this long
    pose_track: bool = True
    pose_track_gap_s: float = 1.0  # follow a track's landmarks only from a pose at most this old ...
    pose_track_refresh_s: float = 2.0  # ... and run the full MediaPipe estimate at least this often
    # A followed pose's hips may lie this share of its box's height below the box (module doc).
    follow_hips_below: float = 0.7
    wrist_gate: bool = True
    # Run a track's wrist crops on every k-th pose, carry their finds between (3 and 5 scored the same).
    wrist_every: int = 5
    pose_budget: int = 4  # landmark runs a frame of a camera; 0: no limit
    pose_budget_max_s: float = 0.4  # beyond it, keep a still person's landmarks at most this long ...
    pose_budget_shift: float = 0.1  # ... while their box moves less than this share of their height
    # While `Pipeline.waiting` >= `strain_waiting` (the camera falls behind): this budget and age.
    strain_waiting: int = 2
    pose_budget_strained: int = 2
    pose_budget_strained_max_s: float = 0.8
    pose_retry_s: float = 0.6  # after a full estimate found no body in a track's box, wait this long ...
    pose_retry_shift: float = 0.1  # ... unless the box moved or grew by more than this share of its height
    # Both double after each further miss in a row, this many times at most (0.6 s and 10 % of the
    # height, then 1.2 s and 20 %, then 2.4 s and 40 %): a worker hidden behind a screen is asked
    # less and less often, and the jitter of a half-hidden box no longer counts as a move.
    pose_retry_doublings: int = 2
    # The ages above (reuse, track, refresh, retry) count this camera's analysed frames at `fps`
    # where that is less than the seconds passed: a box that falls behind keeps the 5 fps schedule.
    frame_clock: bool = True
    # Not a lever (plain has it too): a track's posture is voted over this window (vision.smooth);
    # 0 reads every frame on its own.
    posture_window_s: float = POSTURE_WINDOW_S
    stages_ms: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def for_mode(cls, mode: str, **kwargs: Any) -> PipelineOptions:
        """`plain` (every lever off: the baseline) or `fast` (the defaults), with overrides."""
        if mode not in MODES:
            raise ValueError(f"unknown pipeline mode {mode!r}; use one of {', '.join(MODES)}")
        return cls(plain=mode == "plain", **kwargs)

    # The effective switches: what `plain` leaves of each lever.
    @property
    def gating(self) -> bool:
        return self.motion_gate and not self.plain

    @property
    def retry_s(self) -> float:
        return 0.0 if self.plain else float(self.pose_retry_s)

    def frame_size(self, still: bool, any_size: bool) -> int:
        """The detector input for a frame: `video_imgsz` for a video frame where the weights take
        any size, else `imgsz` (still images, fixed exports, plain)."""
        return self.imgsz if self.plain or still or not any_size else int(self.video_imgsz)

    @property
    def wrist_size(self) -> int:
        return self.imgsz if self.plain else int(self.wrist_imgsz)

    def wrist_input(self, side: int) -> int:
        """The detector input for a wrist crop of `side` pixels (any-size weights only)."""
        if self.plain or not self.wrist_native:
            return self.wrist_size
        step = max(32, int(self.wrist_step))
        own = -(-int(side) // step) * step
        return int(min(self.wrist_size, int(self.wrist_video_imgsz), max(self.wrist_min_imgsz, own)))

    @property
    def clocked(self) -> bool:
        return self.frame_clock and not self.plain

    @property
    def every(self) -> int:
        return 1 if self.plain else max(1, int(self.detect_every))

    @property
    def reusing(self) -> bool:
        return self.pose_reuse and not self.plain

    @property
    def tracking(self) -> bool:
        return self.pose_track and not self.plain

    @property
    def budget(self) -> int:
        return 0 if self.plain else max(0, int(self.pose_budget))

    @property
    def crops_every(self) -> int:
        return 1 if self.plain else max(1, int(self.wrist_every))

    @property
    def wrist_gating(self) -> bool:
        return self.wrist_gate and not self.plain

    @property
    def filtering(self) -> PoseFilter | None:
        return None if self.plain else self.pose_filter

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n


@dataclass
class _PoseMemo:
    """A track's last pose estimate: where the box was, what the pixels looked like, what was found;
    and its last wrist crops: what they found, where the wrists were, how many poses ago."""

    t: float
    box: np.ndarray
    small: np.ndarray | None  # the motion image of that frame
    pose: Pose | None
    wrist: list[Detection]  # the wrist finds used with this pose (cropped or carried)
    crop_found: list[Detection]
    crop_wrists: np.ndarray | None  # (2, 2) wrist positions when the crops ran; NaN where unseen
    crop_age: int = 0  # poses since the crops ran
    full_t: float = 0.0  # when MediaPipe's full estimate (its person detector included) last ran
    frame: int = 0  # the camera's analysed frame of `t` ...
    full_frame: int = 0  # ... and of `full_t` (`Pipeline._age`)
    misses: int = 0  # full estimates in a row, up to `t`, that found no body in the box


@dataclass
class _Velocity:
    """A track's box at its last detection and how fast it moved since the one before: in pixels a
    frame (to move boxes on between detections) and a second (to judge who moves; None until a
    track has been detected twice close enough in time)."""

    frame: int
    t: float
    box: np.ndarray
    per_frame: np.ndarray
    per_s: np.ndarray | None


class _Clock:
    """Adds the time of each `with` block to a stage in the options' `stages_ms`."""

    def __init__(self, options: PipelineOptions, stage: str) -> None:
        self.options, self.stage = options, stage

    def __enter__(self) -> _Clock:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        ms = (time.perf_counter() - self.t0) * 1000.0
        self.options.stages_ms[self.stage] = self.options.stages_ms.get(self.stage, 0.0) + ms


class Pipeline:
    """One camera's vision state (its tracker, carried detections, pose memory) around shared models."""

    def __init__(
        self,
        detector: Detector,
        pose: PoseEstimator,
        options: PipelineOptions | None = None,
        camera: str = "cam0",
        track: bool = True,
    ) -> None:
        self.detector = detector
        self.pose = pose
        self.options = options or PipelineOptions()
        self.camera = camera
        # The tracker coasts through the frames every-k-th detection skips, so its lost buffer
        # counts analysed frames whatever k is.
        self.tracker = PersonTracker(self.options.fps, self.options.lost_buffer_s) if track else None
        self._since_detect = 0  # frames since the last detector run
        self._detect_t: float | None = None
        self._detect_small: np.ndarray | None = None
        self._carry: tuple[list[tuple[int, np.ndarray, float]], list[Detection]] | None = None
        self._shown: list[tuple[int, np.ndarray, float]] = []  # the boxes of the last frame
        self._small_of: tuple[Frame, np.ndarray | None] | None = None  # needs_detection -> process
        self._newcomers = False  # the last detection found people the tracker has not confirmed yet
        self._velocity: dict[int, _Velocity] = {}  # track id -> its box at its last detection, and speed
        self._still_since: dict[int, tuple[float, np.ndarray]] = {}  # id -> (since when, box then)
        self._memo: dict[int, _PoseMemo] = {}
        self._posture = LabelVote(self.options.posture_window_s)
        self._width = 1
        self._frame_no = 0
        # Frames of this camera waiting behind the one being analysed: the service sets it (module
        # doc, `pose_budget_strained`); a caller that never falls behind leaves it at 0.
        self.waiting = 0

    @property
    def detect_conf(self) -> float:
        """The confidence the detector is run at (persons and objects are filtered after)."""
        return min(self.options.person_conf, self.options.object_conf)

    def needs_detection(self, frame: Frame) -> bool:
        """Whether `process(frame)` will run the detector (motion gating and every-k-th decide).

        Why ask first: an inference thread serving several cameras detects two of their frames in
        one call (`Detector.detect_many`) and hands each its boxes through `process(frame, boxes)`.
        """
        return self._skip_reason(frame.t, self._small(frame)) is None

    def detect_many(self, images: Sequence[np.ndarray]) -> list[Boxes]:
        """Several cameras' frames (this one's among them) detected in one call, at this pipeline's
        size and confidence; each pipeline then gets its own through `process(frame, boxes)`."""
        o = self.options
        o.count("detect_calls")
        with _Clock(o, "detect"):
            return self.detector.detect_many(images, imgsz=o.imgsz, conf=self.detect_conf)

    def _small(self, frame: Frame) -> np.ndarray | None:
        """The frame's motion image (computed once per frame), where a lever reads it."""
        o = self.options
        if self.tracker is None or not (o.gating or o.reusing):
            return None
        if self._small_of is not None and self._small_of[0] is frame:
            return self._small_of[1]
        with _Clock(o, "motion"):
            small = motion_image(frame.image)
        self._small_of = (frame, small)
        return small

    def process(self, frame: Frame, boxes: Boxes | None = None) -> FrameObservation:
        """One frame's observation. `boxes`: this frame's detections, made by the caller (see
        `needs_detection`); used only where the detector would run, ignored where it would not."""
        image = frame.image
        h, w = image.shape[:2]
        o = self.options
        o.count("frames")
        self._width = w
        small = self._small(frame)
        self._small_of = None
        self._frame_no += 1
        why = self._skip_reason(frame.t, small)
        if why is None:
            tracks, objects = self._detect(image, (h, w), boxes)
            self._carry = (tracks, objects)
            self._since_detect, self._detect_t, self._detect_small = 0, frame.t, small
            self._learn_velocity(tracks, frame.t)
        else:
            assert self._carry is not None
            self._since_detect += 1
            o.count("detect_skipped")
            objects = self._carry[1]
            # Between k-th frames people keep walking: move each box on at its track's velocity (so a
            # walker's foot point does not stall and jump, which reads as standing); in a still
            # frame nothing moved, so the last boxes stay.
            if why == "kth":
                with _Clock(o, "track"):
                    self.tracker.coast()  # type: ignore[union-attr]  # a skip needs a tracker
                tracks = self._extrapolated()
            else:
                tracks = self._shown
        self._shown = tracks
        obs = FrameObservation(frame.camera, frame.t, frame.index, w, h)
        obs.objects = list(objects)

        ties = [d for d in obs.objects if d.label == "tie"]
        owner = _nearest_owner(ties, [box for _, box, _ in tracks])
        pose_filter = o.filtering
        people = [PersonObservation(int(i), np.array(box, float), conf) for i, box, conf in tracks]  # copies
        wrists: dict[int, list[Detection]] = {}
        runs = 0  # landmark runs on this frame, against the pose budget
        budget, keep_s = o.budget, o.pose_budget_max_s
        strained = budget > 0 and self.waiting >= o.strain_waiting
        if strained:
            budget, keep_s = min(budget, max(1, o.pose_budget_strained)), o.pose_budget_strained_max_s
            o.count("frames_strained")
        for k in self._pose_order(people, frame.t, budget, strained):
            person = people[k]
            if pose_filter is not None and not pose_filter(person.box, obs):
                o.count("pose_filtered")
                continue
            spent = 0 < budget <= runs
            pose, wrists[k] = self._pose_and_wrists(
                image, person, frame.t, small, carry=keep_s if spent else None, strained=strained
            )
            runs += self._posed_now(person.track_id)
            if pose is not None:
                person.keypoints, person.keypoints_world, person.visibility = (
                    pose.keypoints,
                    pose.world,
                    pose.visibility,
                )
        for k, person in enumerate(people):
            wrist = wrists.get(k, [])
            with _Clock(o, "features"):
                held = [d for d in obs.objects if d.label in HAND_OBJECTS] + wrist
                person.held = held
                person.features, person.evidence = compute_features(
                    person.keypoints,
                    person.keypoints_world,
                    person.visibility,
                    person.box,
                    held,
                    [t for t, o_ in zip(ties, owner) if o_ == k],
                )
                # Keep only the objects that ended up associated with this person's hands.
                person.held = [d for d in held if _near_any(d, person)]
                if self.tracker is not None and o.posture_window_s > 0:
                    person.features.posture = self._posture.vote(
                        person.track_id, frame.t, person.features.posture
                    )
            obs.persons.append(person)
        self._forget(frame.t, {p.track_id for p in obs.persons})
        return obs

    # -- detection ---------------------------------------------------------------------------------

    def _skip_reason(self, t: float, small: np.ndarray | None) -> str | None:
        """Why this frame may carry the last detection ("kth", "still"), or None: run the detector."""
        o = self.options
        if self.tracker is None or self._carry is None or self._detect_t is None:
            return None
        if self._since_detect + 1 < o.every and (not o.every_when_slow or self._all_slow()):
            return "kth"
        if o.gating and small is not None and self._detect_small is not None:
            still = changed_share(small, self._detect_small, o.motion_delta) < o.motion_share
            if still and t - self._detect_t < o.motion_max_skip_s:
                return "still"
        return None

    def _all_slow(self) -> bool:
        """Every person of the last detection has been seen twice and moves under `every_slow_bh_s`
        of their height a second (box edges included: standing up moves the top edge).

        Per second, not per frame: under load the service drops frames, and a person at a desk
        then moves further between two analysed frames without moving any faster.
        """
        o = self.options
        assert self._carry is not None
        if self._newcomers:  # detected but not yet a track: the tracker needs them again next frame
            return False
        for track_id, box, _ in self._carry[0]:
            seen = self._velocity.get(track_id)
            if seen is None or seen.per_s is None:
                return False
            height = max(float(box[3] - box[1]), 1.0)
            if float(np.abs(seen.per_s).max()) > o.every_slow_bh_s * height:
                return False
        return True

    def _learn_velocity(self, tracks: list[tuple[int, np.ndarray, float]], t: float) -> None:
        """Each track's box velocity between its last two detections: in pixels a frame (to move
        boxes on between detections) and in pixels a second (to judge who moves)."""
        now, every = self._frame_no, self.options.every
        known = self._velocity
        for track_id, box, _ in tracks:
            box = np.asarray(box, float)
            before = known.get(track_id)
            gap = now - before.frame if before is not None else 0
            if before is not None and 0 < gap <= 2 * every:
                dt = t - before.t
                per_s = (box - before.box) / dt if dt > 0 else None
                known[track_id] = _Velocity(now, t, box, (box - before.box) / gap, per_s)
            else:
                known[track_id] = _Velocity(now, t, box, np.zeros(4), None)
        for track_id in [k for k, v in known.items() if now - v.frame > 4 * every]:
            del known[track_id]

    def _extrapolated(self) -> list[tuple[int, np.ndarray, float]]:
        """The last detection's tracks moved on by their velocity to this frame."""
        assert self._carry is not None
        out = []
        for track_id, box, conf in self._carry[0]:
            seen = self._velocity.get(track_id)
            moved = box if seen is None else seen.box + seen.per_frame * (self._frame_no - seen.frame)
            out.append((track_id, moved, conf))
        return out

    def _detect(
        self, image: np.ndarray, shape: tuple[int, int], given: Boxes | None = None
    ) -> tuple[list[tuple[int, np.ndarray, float]], list[Detection]]:
        o = self.options
        o.count("detect")
        if given is not None:
            o.count("detect_shared")
            boxes = given
        else:
            with _Clock(o, "detect"):
                # A still image is read in the square (it is not throughput-bound, and a person cut
                # off by its edge is read more surely there: Detector.detect), a video frame at its
                # own aspect where the detector takes any size.
                still = self.tracker is None
                detector = self._detector_for(still)
                size = o.frame_size(still, bool(getattr(detector, "any_size", False)))
                boxes = detector.detect(image, size, self.detect_conf, square=still)
        persons = _keep(boxes.of("person"), o.person_conf)
        found_people = len(persons)
        objects = _keep(boxes.of(*HAND_OBJECTS, "tie"), o.object_conf)
        found = [
            Detection(lbl, float(c), b) for lbl, c, b in zip(objects.labels, objects.confidence, objects.xyxy)
        ]
        with _Clock(o, "track"):
            if self.tracker is not None:
                tracks = [(t.track_id, t.xyxy, t.confidence) for t in self.tracker.update(persons, shape)]
            else:  # a still image: number persons left to right
                order = np.argsort(persons.xyxy[:, 0]) if len(persons) else []
                tracks = [(i + 1, persons.xyxy[j], float(persons.confidence[j])) for i, j in enumerate(order)]
        # Newcomers: tracks begun on this detection that the next one must confirm. Counting every
        # person box over the tracks' number instead kept a crowded office detected on every frame:
        # a half-hidden worker at a confidence under ByteTrack's new-track threshold never becomes a
        # track, yet looked new on every detection.
        self._newcomers = self.tracker.pending > 0 if self.tracker is not None else found_people > len(tracks)
        return tracks, found

    def _detector_for(self, still: bool) -> Detector:
        """The detector a picture runs on: a video frame and its wrist crops on the detector's video
        model where it has one (`Detector.video`: another runtime, faster on this CPU), a still
        image on its own weights. Paired detection (`detect_many`) keeps the own weights."""
        video = None if still else getattr(self.detector, "video", None)
        return video if video is not None else self.detector

    # -- pose and hands ----------------------------------------------------------------------------

    def _pose_order(
        self, people: list[PersonObservation], t: float, budget: int, strained: bool = False
    ) -> list[int]:
        """The order persons are posed in: as detected, or under a pose budget those never posed
        (or without a body last time) first, then those whose landmarks are oldest. While the
        camera falls behind (`strained`), a box without a body last time goes last: its full
        estimate is the dearest pose and the least likely to find one."""
        if budget <= 0 or self.tracker is None or len(people) <= budget:
            return list(range(len(people)))

        def due(k: int) -> tuple[int, float]:
            memo = self._memo.get(people[k].track_id)
            if memo is None:
                return (0, 0.0)
            if memo.pose is None:
                return (2, 0.0) if strained and memo.misses > 0 else (0, 0.0)
            return (1, -self._age(t, memo.t, memo.frame))

        return sorted(range(len(people)), key=due)

    def _pose_and_wrists(
        self,
        image: np.ndarray,
        person: PersonObservation,
        t: float,
        small: np.ndarray | None,
        carry: float | None = None,
        strained: bool = False,
    ) -> tuple[Pose | None, list[Detection]]:
        """The person's landmarks and wrist-crop detections: estimated, or reused when nothing moved,
        or (`carry`: this frame's pose budget is spent) kept from a pose at most `carry` seconds old
        when the box barely moved. While the camera falls behind (`strained`), a followed pose's
        full estimate comes half as often, and once the budget is spent a box without a body at its
        last estimate waits for a later frame, up to the retry's longest wait. Only a landmark run
        writes the track's memo (`_posed_now`)."""
        o = self.options
        memo = self._memo.get(person.track_id) if self.tracker is not None else None
        still = self._still_for(person, t) if o.reusing else 0.0
        if (
            o.reusing
            and memo is not None
            and still >= o.pose_reuse_still_s
            and self._reusable(memo, person.box, t, small)
        ):
            o.count("pose_reused")
            return _carried(memo, person.box)
        if o.retry_s > 0 and memo is not None and memo.pose is None and memo.full_t == memo.t:
            # No body in this box at its last full estimate: do not ask again yet.
            age = self._age(t, memo.t, memo.frame)
            backoff = 2.0 ** min(max(memo.misses - 1, 0), o.pose_retry_doublings)
            if age < backoff * o.retry_s - 1e-6 and _barely_moved(  # times are sums of floats
                person.box, memo.box, backoff * o.pose_retry_shift, person.height_px
            ):
                o.count("pose_retry_wait")
                return None, []
            if strained and carry is not None and age < o.retry_s * 2.0**o.pose_retry_doublings - 1e-6:
                o.count("pose_strain_wait")  # behind, budget spent: up to the longest wait, moved or not
                return None, []
        if (
            carry is not None
            and memo is not None
            and memo.pose is not None
            and self._age(t, memo.t, memo.frame) <= carry + 1e-6
            and _barely_moved(person.box, memo.box, o.pose_budget_shift, person.height_px)
        ):
            o.count("pose_budgeted")  # posed a moment ago and barely moved: the others go first
            return _carried(memo, person.box)
        o.count("pose")
        refresh_s = o.pose_track_refresh_s * (2 if strained else 1)
        with _Clock(o, "pose"):
            pose, full_t, full_frame = None, t, self._frame_no
            if (
                o.tracking
                and memo is not None
                and memo.pose is not None
                and self._age(t, memo.t, memo.frame) <= o.pose_track_gap_s
                and self._age(t, memo.full_t, memo.full_frame) < refresh_s
            ):
                roi = roi_from_pose(memo.pose)
                if roi is not None:
                    shift = _centre(person.box) - _centre(memo.box)
                    moved = roi.moved(float(shift[0]), float(shift[1]))
                    pose = self.pose.follow(image, person.box, moved, hips_below=o.follow_hips_below)
                    o.count("pose_tracked" if pose is not None else "pose_track_lost")
                    full_t, full_frame = memo.full_t, memo.full_frame
            if pose is None:
                pose, full_t, full_frame = self.pose.estimate(image, person.box), t, self._frame_no
        wrist: list[Detection] = []
        found, wrists, age = [], None, 0
        if pose is not None and o.wrist_crops:
            now = _wrists(pose)
            if memo is not None and memo.crop_wrists is not None and memo.crop_age + 1 < o.crops_every:
                # Carry the last crops' finds with the hands: a phone in hand stays for seconds.
                o.count("wrist_carried")
                found, wrists, age = memo.crop_found, memo.crop_wrists, memo.crop_age + 1
                shift = _mean_shift(wrists, now, _centre(person.box) - _centre(memo.box))
                wrist = [_shifted(d, shift) for d in found]
            else:
                with _Clock(o, "wrist"):
                    wrist = self._wrist_detections(image, pose, person.height_px)
                found, wrists = wrist, now
        if self.tracker is not None and (
            o.reusing or o.crops_every > 1 or o.tracking or o.retry_s > 0 or o.budget > 0
        ):
            self._memo[person.track_id] = _PoseMemo(
                t,
                person.box.copy(),
                small,
                pose,
                wrist,
                found,
                wrists,
                age,
                full_t,
                self._frame_no,
                full_frame,
                (memo.misses if memo is not None else 0) + 1 if pose is None and full_t == t else 0,
            )
        return pose, wrist

    def _posed_now(self, track_id: int) -> bool:
        """Whether a landmark model ran for this track on this frame: only such a run writes its memo
        (reused, carried and waiting tracks keep the one of their last run)."""
        memo = self._memo.get(track_id)
        return memo is not None and memo.frame == self._frame_no

    def _age(self, t: float, since_t: float, since_frame: int) -> float:
        """Seconds since `since_t`, for the pose schedule; with `frame_clock`, at most this camera's
        analysed frames since then at `fps`.

        Why: the schedule was tuned (and is evaluated) at 5 analysed frames a second. A service that
        falls behind analyses each camera less often, say once in 1.2 s; counted in seconds, every
        track then looked too old to follow or reuse, and each pose became a full estimate, the
        dearest kind, just when time was shortest. Counted in frames, the schedule stays the same.
        The tracker's lost buffer counts frames for the same reason.
        """
        real = t - since_t
        if not self.options.clocked:
            return real
        return min(real, (self._frame_no - since_frame) / max(self.options.fps, 1e-6))

    def _still_for(self, person: PersonObservation, t: float) -> float:
        """Seconds this track's box has stayed within `pose_reuse_shift` of where it came to rest.

        Why: a walker's box can move less than the shift limit between two frames (walking toward
        the camera), yet their pose changes every step; only a person at rest gets landmarks reused.
        """
        o = self.options
        rest = self._still_since.get(person.track_id)
        if rest is None or not _barely_moved(person.box, rest[1], o.pose_reuse_shift, person.height_px):
            self._still_since[person.track_id] = (t, person.box.copy())
            return 0.0
        return t - rest[0]

    def _reusable(self, memo: _PoseMemo, box: np.ndarray, t: float, small: np.ndarray | None) -> bool:
        """A track's last pose still holds: recent, box barely moved, and its pixels did not change."""
        o = self.options
        if self._age(t, memo.t, memo.frame) > o.pose_reuse_max_s or small is None or memo.small is None:
            return False
        if memo.small.shape != small.shape:
            return False
        if not _barely_moved(np.asarray(box, float), memo.box, o.pose_reuse_shift, memo.box[3] - memo.box[1]):
            return False
        scale = small.shape[1] / max(self._width, 1)
        x1, y1, x2, y2 = _small_rect(np.asarray(box, float), memo.box, scale, small.shape)
        if x2 <= x1 or y2 <= y1:
            return False
        share = changed_share(small[y1:y2, x1:x2], memo.small[y1:y2, x1:x2], o.motion_delta)
        return share < o.pose_reuse_share

    def _wrist_detections(self, image: np.ndarray, pose: Pose, height_px: float) -> list[Detection]:
        """Detect hand-held objects in square crops around the wrists, mapped back to the frame.

        With `wrist_gate`, a hand hanging at the side or held behind the back gets no crop: a phone
        there is not in use, and each crop costs a full detector call.
        """
        o = self.options
        kp, vis = pose.keypoints, pose.visibility
        shoulder = float(np.linalg.norm(kp[L_SHOULDER] - kp[R_SHOULDER]))
        half = max(shoulder, 0.12 * height_px, 24.0)
        sides = [(s, i) for s, i in (("left", L_WRIST), ("right", R_WRIST)) if vis[i] >= 0.2]
        if o.wrist_gating and sides:
            body = Body(kp, pose.world, vis)
            kept = [(s, i) for s, i in sides if hand_pose(body, s)[0] not in HANDS_AWAY]
            o.count("wrist_gated", len(sides) - len(kept))
            sides = kept
        wrists = [kp[i] for _, i in sides]
        if not wrists:
            return []
        if len(wrists) == 2 and np.linalg.norm(wrists[0] - wrists[1]) < half:
            wrists = [(wrists[0] + wrists[1]) / 2]
        out: list[Detection] = []
        for c in wrists:
            o.count("wrist_crops")
            x0, y0, side = int(c[0] - half), int(c[1] - half), int(2 * half)
            crop = crop_square(image, x0, y0, side)
            # A still image's crops keep the full input, as its frame keeps the square (`_detect`).
            size = o.wrist_size if self.tracker is None else o.wrist_input(side)
            found = self._detector_for(self.tracker is None).detect(crop, imgsz=size, conf=o.object_conf)
            found = found.of(*HAND_OBJECTS)
            for lbl, conf, b in zip(found.labels, found.confidence, found.xyxy):
                out.append(Detection(lbl, float(conf), b + np.array([x0, y0, x0, y0], float), "wrist"))
        return out

    def _forget(self, t: float, seen: set[int]) -> None:
        """Drop the pose memory of tracks gone for longer than the tracker keeps them."""
        stale = [
            k
            for k, m in self._memo.items()
            if k not in seen and self._age(t, m.t, m.frame) > self.options.lost_buffer_s
        ]
        for k in stale:
            del self._memo[k]
        for k in [k for k in self._still_since if k not in seen]:
            del self._still_since[k]
        self._posture.forget(seen | set(self._memo))


def motion_image(image: np.ndarray, width: int = MOTION_WIDTH) -> np.ndarray:
    """The frame as a small blurred grey image: what motion is measured on.

    Why small and blurred: compression noise and sensor grain flicker single pixels from frame to
    frame; averaging them away (INTER_AREA, then a 3x3 blur) leaves changes the size of a hand.
    About 0.5 ms for a 848x480 frame.
    """
    h, w = image.shape[:2]
    size = (width, max(1, int(round(h * width / max(w, 1)))))
    grey = cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    return cv2.GaussianBlur(grey, (3, 3), 0)


def changed_share(a: np.ndarray, b: np.ndarray, delta: int = 16) -> float:
    """Share of pixels whose grey level differs by more than `delta` between two motion images."""
    if a.size == 0:
        return 0.0
    return float(np.count_nonzero(cv2.absdiff(a, b) > delta)) / a.size


def zone_pose_filter(zones: Iterable[Any], kinds: Sequence[str] = POSED_ZONE_KINDS) -> PoseFilter | None:
    """A `pose_filter` that poses only persons standing in one of the camera's zones of `kinds`.

    Why: person clauses judge only who stands in a post or standby zone (`CameraRules`), and
    uniforms are matched for staff-only and work zones; a customer crossing the lobby costs a pose
    and two wrist crops for nothing. The feet are taken from the box (the landmarks are what is
    being saved), at its bottom centre, a quarter in from its corners and a tenth of its height
    below, so a person whose box ends just short of the polygon (legs hidden by the desk) is still
    posed. `zones` are
    `calibration.site.Zone`s (anything with `kind` and `contains((x, y))`). None when the camera
    has no such zone: then everybody is judged, and everybody is posed.
    """
    chosen = [z for z in zones if getattr(z, "kind", None) in kinds]
    if not chosen:
        return None

    def in_zone(box: np.ndarray, _obs: FrameObservation) -> bool:
        x1, y1, x2, y2 = (float(v) for v in box)
        cx, bw, up = (x1 + x2) / 2, x2 - x1, 0.1 * (y2 - y1)
        points = [(cx, y2), (x1 + 0.25 * bw, y2), (x2 - 0.25 * bw, y2), (cx, y2 + up)]
        return any(z.contains(p) for z in chosen for p in points)

    return in_zone


def options_for_camera(camera: Any, mode: str = "fast", **kwargs: Any) -> PipelineOptions:
    """The options `serve` gives a site camera: its analysis rate and, in `fast` mode, a pose
    filter on its zones (`zone_pose_filter`). `camera` is a `calibration.site.Camera`."""
    pose_filter = zone_pose_filter(getattr(camera, "zones", []) or []) if mode == "fast" else None
    return PipelineOptions.for_mode(mode, fps=float(camera.fps), pose_filter=pose_filter, **kwargs)


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], float)


def _shifted(d: Detection, shift: np.ndarray) -> Detection:
    offset = np.array([shift[0], shift[1], shift[0], shift[1]], float)
    return Detection(d.label, d.confidence, d.box + offset, d.source)


def _barely_moved(box: np.ndarray, since: np.ndarray, share: float, height: float) -> bool:
    """No corner of `box` moved from `since` by more than `share` of `height` (at least a pixel):
    the one test of "still" behind pose reuse, the budget's carry and the retry's wait."""
    return bool(np.abs(box - since).max() <= share * max(float(height), 1.0))


def _carried(memo: _PoseMemo, box: np.ndarray) -> tuple[Pose | None, list[Detection]]:
    """A track's last landmarks and wrist finds, moved with its box since then."""
    shift = _centre(box) - _centre(memo.box)
    return _shifted_pose(memo.pose, shift), [_shifted(d, shift) for d in memo.wrist]


def _shifted_pose(pose: Pose | None, shift: np.ndarray) -> Pose | None:
    """The same landmarks moved with the box (world landmarks are hip-centred: unchanged)."""
    if pose is None:
        return None
    aux = None if pose.aux is None else pose.aux + shift
    return Pose(pose.keypoints + shift, pose.world, pose.visibility, aux)


def _wrists(pose: Pose) -> np.ndarray:
    """Both wrists' image positions, NaN where BlazePose barely sees them."""
    out = pose.keypoints[[L_WRIST, R_WRIST]].astype(float).copy()
    out[pose.visibility[[L_WRIST, R_WRIST]] < 0.2] = np.nan
    return out


def _mean_shift(before: np.ndarray, now: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """How far the hands moved (mean over wrists seen both times), else how far the box moved."""
    moved = now - before
    seen = ~np.isnan(moved).any(axis=1)
    return moved[seen].mean(axis=0) if seen.any() else fallback


def _small_rect(
    box: np.ndarray, before: np.ndarray, scale: float, shape: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """The union of two boxes in motion-image pixels, clipped to the image."""
    x1 = int(np.floor(min(box[0], before[0]) * scale))
    y1 = int(np.floor(min(box[1], before[1]) * scale))
    x2 = int(np.ceil(max(box[2], before[2]) * scale))
    y2 = int(np.ceil(max(box[3], before[3]) * scale))
    return max(x1, 0), max(y1, 0), min(x2, shape[1]), min(y2, shape[0])


def _keep(boxes: Boxes, conf: float) -> Boxes:
    idx = [i for i, c in enumerate(boxes.confidence) if c >= conf]
    return Boxes(boxes.xyxy[idx].reshape(-1, 4), boxes.confidence[idx], [boxes.labels[i] for i in idx])


def _nearest_owner(items: list[Detection], boxes: list[np.ndarray]) -> list[int]:
    """For each item, the box (index) containing it whose centre line is nearest; -1 for none."""
    owners = []
    for d in items:
        cx, cy = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
        best, best_dx = -1, float("inf")
        for i, b in enumerate(boxes):
            if b[0] <= cx <= b[2] and b[1] <= cy <= b[3]:
                dx = abs(cx - (b[0] + b[2]) / 2) / max(b[2] - b[0], 1.0)
                if dx < best_dx:
                    best, best_dx = i, dx
        owners.append(best)
    return owners


def _near_any(d: Detection, person: PersonObservation) -> bool:
    if d.source == "wrist":
        return True
    x1, y1, x2, y2 = person.box
    cx, cy = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
    return bool(x1 <= cx <= x2 and y1 <= cy <= y2)
