"""What rules produce: one `Violation` per behaviour held long enough.

A violation is open (`end_s is None`) while the behaviour lasts and closed
when it stops; the service turns it into a stored, numbered alert.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Violation:
    clause: str  # stable id from the conduct map, e.g. "d5.stance.01"
    camera: str
    track_id: int | None  # None for zone-level clauses (an empty post)
    start_s: float  # when the behaviour began (not when the sustain elapsed)
    end_s: float | None = None  # None while ongoing
    confidence: float = 0.0
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    snapshot_t: float | None = None  # the frame where the violation was clearest
    snapshot: str | None = None  # path of that frame, once written

    @property
    def open(self) -> bool:
        return self.end_s is None

    def duration(self, now: float | None = None) -> float:
        end = self.end_s if self.end_s is not None else now
        return 0.0 if end is None else max(0.0, end - self.start_s)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["duration_s"] = round(self.duration(), 3)
        for key in ("start_s", "end_s", "snapshot_t", "confidence"):
            if out[key] is not None:
                out[key] = round(float(out[key]), 3)
        return out
