"""Small pure-numpy geometry the rules share: yaw angles and the floor homography.

Why here and not in `calibration.site`: a check sees only a `PersonObservation`, never the
site, so the site context reaches it as plain data in `person.evidence` (a yaw in degrees,
a 3x3 matrix as nested lists). These helpers read that data back and do the arithmetic
without cv2 or pydantic, so the rules stay testable on recorded observations.

Conventions:

* yaws are `Features.body_yaw_deg`'s: 0 = facing the camera, positive = turned to the
  person's left (image right); any real number is accepted and wrapped to (-180, 180];
* the floor homography maps image pixels (x, y, 1) to floor metres (X, Y, w) as
  `calibration.site.FloorScale.matrix()` does; a point is (X / w, Y / w).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: `person.evidence` key of the image-to-floor homography (3x3 nested lists, FloorScale.matrix()).
FLOOR_H_KEY = "floor_h"
#: |w| below this (relative to the matrix scale) means the point is on the horizon: no floor position.
_HORIZON_EPS = 1e-9

XY = tuple[float, float]


def wrap_deg(angle: float) -> float:
    """The angle wrapped to (-180, 180] degrees, so that 350 and -10 compare equal."""
    a = math.fmod(float(angle), 360.0)
    if a <= -180.0:
        a += 360.0
    elif a > 180.0:
        a -= 360.0
    return a


def yaw_difference_deg(a: float, b: float) -> float:
    """The unsigned angle between two yaws, in [0, 180]: how far one has to turn to face the other way.

    Why wrapped: a body yaw of 170 and a door yaw of -170 are 20 degrees apart, not 340.
    """
    return abs(wrap_deg(float(a) - float(b)))


def as_homography(value: Any) -> np.ndarray | None:
    """A 3x3 float matrix from nested lists (or an array), None when it cannot be one.

    None for a wrong shape, a non-finite entry or a singular matrix: a broken floor scale
    must turn the metric checks off (the caller falls back), never raise mid-stream.
    """
    if value is None:
        return None
    try:
        h = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    if h.shape != (3, 3) or not np.all(np.isfinite(h)):
        return None
    scale = float(np.max(np.abs(h)))
    if scale <= 0 or abs(float(np.linalg.det(h / scale))) < 1e-12:
        return None
    return h


def floor_homography(evidence: Mapping[str, Any]) -> np.ndarray | None:
    """The floor homography the session put in a person's evidence (`FLOOR_H_KEY`), if usable."""
    return as_homography(evidence.get(FLOOR_H_KEY))


def to_floor(h: np.ndarray, xy: Sequence[float]) -> XY | None:
    """Project one image point (pixels) to the floor (metres); None on the horizon line.

    Same arithmetic as `FloorScale.to_floor`, without building the matrix again.
    """
    p = h @ np.array([float(xy[0]), float(xy[1]), 1.0])
    w = float(p[2])
    if not math.isfinite(w) or abs(w) <= _HORIZON_EPS * max(float(np.max(np.abs(h))), 1.0):
        return None
    return float(p[0] / w), float(p[1] / w)


def floor_distance_m(h: np.ndarray, a: Sequence[float], b: Sequence[float]) -> float | None:
    """Floor distance in metres between two image points, None when either has no floor position."""
    fa, fb = to_floor(h, a), to_floor(h, b)
    if fa is None or fb is None:
        return None
    return math.hypot(fa[0] - fb[0], fa[1] - fb[1])
