"""Stable person ids across frames: ByteTrack as Ultralytics ships it.

One `PersonTracker` per camera. The lost-track buffer is given in seconds and
turned into frames at the analysis rate, so a person hidden behind a customer
for a moment keeps their id whatever the fps.
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
            fuse_score=True,
        )
        self._tracker = BYTETracker(self.args)

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
