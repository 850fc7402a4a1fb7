"""Stable person ids across frames: ByteTrack as Ultralytics ships it.

One `PersonTracker` per camera. The lost-track buffer is given in seconds and
turned into frames at the analysis rate, so a person hidden behind a customer
for a moment keeps their id whatever the fps.

On a frame the detector skips, `coast()` moves every track on by one step of its
Kalman filter. Why: ByteTrack predicts one step per update, so when it was fed
only every third frame it read a walker's three frames of movement as one, its
velocity estimate went wrong whenever the gap changed, and a small walker got a
new id. Coasted, the filter steps once per analysed frame however often the
detector runs, and the lost buffer counts frames, not updates.

Matching is on box overlap alone (`fuse_score` off). ByteTrack's default
multiplies the overlap by the detection's confidence: a far, 17-px-wide walker
detected at 0.44 then needed an overlap of 0.45 with his track, which one
small turn between two detections breaks, and he became someone new.

numpy's BLAS runs on one thread once a tracker exists (`single_thread_blas`). Why: the Kalman
filter's small matrix products wake OpenBLAS's worker thread, which then spins for many
milliseconds waiting for more; every tracker update left it spinning through the pose and
detector calls that followed, on the core the other inference thread needed. In the benchmark's
open-plan office that was 40 % of the CPU the camera used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vision.detect import Boxes


@dataclass
class Track:
    track_id: int
    xyxy: np.ndarray  # (4,)
    confidence: float


class PersonTracker:
    def __init__(
        self,
        fps: float = 5.0,
        lost_buffer_s: float = 3.0,
        high_thresh: float = 0.35,
        low_thresh: float = 0.1,
        new_track_thresh: float = 0.4,
        match_thresh: float = 0.8,
    ) -> None:
        from ultralytics.trackers.byte_tracker import BYTETracker
        from ultralytics.utils import IterableSimpleNamespace

        self.args = IterableSimpleNamespace(
            tracker_type="bytetrack",
            track_high_thresh=high_thresh,
            track_low_thresh=low_thresh,
            new_track_thresh=new_track_thresh,
            track_buffer=max(1, int(round(lost_buffer_s * fps))),
            match_thresh=match_thresh,
            fuse_score=False,
        )
        self._tracker = BYTETracker(self.args)
        single_thread_blas()

    def update(self, persons: Boxes, shape: tuple[int, int]) -> list[Track]:
        """Associate this frame's person boxes with the running tracks.

        Returns one `Track` per confirmed track matched in this frame (a track
        that is lost this frame is not returned, but keeps its id for the
        buffer's length).
        """
        from ultralytics.engine.results import Boxes as UBoxes

        data = np.zeros((len(persons), 6), dtype=np.float32)
        if len(persons):
            data[:, :4] = persons.xyxy
            data[:, 4] = persons.confidence
        out = self._tracker.update(UBoxes(data, shape))
        return [Track(int(row[4]), np.asarray(row[:4], float), float(row[5])) for row in out]

    @property
    def pending(self) -> int:
        """New tracks started by the last update and not yet confirmed: ByteTrack keeps one only if
        the next update detects it again, so a frame skipped now would drop it. A detection under
        `new_track_thresh` that matched nothing starts no track and is not counted: it will never
        become one, however often the detector runs."""
        return sum(1 for t in self._tracker.tracked_stracks if not t.is_activated)

    def coast(self) -> list[Track]:
        """A frame without detections: step every confirmed and lost track's Kalman filter once
        (as `update` does before it matches) and age the lost ones. Returns the confirmed
        tracks at their predicted boxes. Unconfirmed tracks are left alone: they must be
        detected again on the next update, as ByteTrack wants, or they are dropped."""
        tracker = self._tracker
        tracker.frame_id += 1
        confirmed = [t for t in tracker.tracked_stracks if t.is_activated]
        tracker.multi_predict(confirmed + list(tracker.lost_stracks))
        # Lost past the buffer: removed now, as `update` would have on this frame; else the next
        # detection could still revive a track gone for longer than the buffer. `track_buffer` is
        # ByteTrack's own limit here: its frame_rate is left at 30, where the two are equal.
        stale = [t for t in tracker.lost_stracks if tracker.frame_id - t.end_frame > self.args.track_buffer]
        for t in stale:
            t.mark_removed()
        tracker.lost_stracks = [t for t in tracker.lost_stracks if t not in stale]
        tracker.removed_stracks.extend(stale)
        return [Track(int(t.track_id), np.asarray(t.xyxy, float), float(t.score)) for t in confirmed]


def single_thread_blas() -> None:
    """Limit the BLAS libraries loaded in this process (numpy's OpenBLAS) to one thread.

    Process-wide, like `vision.detect._torch_single_thread`: postwatch's numpy work is small
    (Kalman filters, landmark geometry), where a second BLAS thread only spins. Measured with
    `time.process_time() - time.thread_time()` around tracker updates: 7 ms of another thread's
    CPU per update before, none after (tests/test_track.py).
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
