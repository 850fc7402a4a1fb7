"""A track's categorical reading (its posture) voted over the last fraction of a second.

Why: BlazePose reads a posture per frame, and on a hard view it flips: a man bent over a
porch railing with his shins cut off by the frame reads standing, lying, standing, sitting in
four frames (the doorbell clip). Nobody lies down and gets up again within half a second, so a
frame's posture is the one its track showed most often over a short window. Counted, not
weighted by confidence: the per-value confidences are rules of thumb of different cues (a
flat trunk's "lying" says 0.7, a bent-over stance 0.6) and would tip every close vote one way.
A change that holds wins after about half the window; a one- or two-frame flip never does.

A frame without a reading (no pose, or the legs unseen) stays `unknown`: the vote only
steadies readings, it never invents one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from vision.observation import Label

POSTURE_WINDOW_S = 0.4  # three frames at 5 fps


@dataclass
class LabelVote:
    """Per-track vote over `window_s` seconds (inclusive of the current frame)."""

    window_s: float = POSTURE_WINDOW_S
    _seen: dict[int, deque[tuple[float, Label]]] = field(default_factory=dict)

    def vote(self, track_id: int, t: float, label: Label) -> Label:
        """The track's label at `t`: the value read most often in the window.

        Ties go to the current frame's value. The confidence is the winner's mean confidence
        times its share of the window (a value that won three frames to two is less sure than
        one that had all five)."""
        if not label.known:
            return label
        seen = self._seen.setdefault(track_id, deque())
        if seen and seen[-1][0] > t:  # a clock that went back (a looped file): start again
            seen.clear()
        while seen and seen[0][0] < t - self.window_s - 1e-9:
            seen.popleft()
        seen.append((t, label))
        count: dict[str, int] = {}
        conf: dict[str, float] = {}
        for _, past in seen:
            count[past.value] = count.get(past.value, 0) + 1
            conf[past.value] = conf.get(past.value, 0.0) + past.confidence
        value = label.value
        if count[value] < max(count.values()):
            value = max(count, key=lambda v: count[v])
        return Label(value, round(conf[value] / len(seen), 3))

    def forget(self, keep: set[int]) -> None:
        """Drop the tracks not in `keep` (gone from the tracker)."""
        for track_id in [k for k in self._seen if k not in keep]:
            del self._seen[track_id]
