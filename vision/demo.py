"""The built-in demo clip: a slow camera move over Ultralytics' `bus.jpg`.

Ultralytics ships two real photos with its package, so the README's main
command works on any machine without `../shared`. A few seconds of gentle
zoom and pan turn the photo into a video the tracker and the time-aware rules
can run on (a person who holds a pose long enough raises an alert).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vision.sources import SourceError


def bundled_image(name: str = "bus.jpg") -> Path:
    from ultralytics.utils import ASSETS

    path = Path(ASSETS) / name
    if not path.exists():
        raise SourceError(
            f"Ultralytics' bundled image {name} is missing from {ASSETS}; reinstall ultralytics."
        )
    return path


def make_demo_clip(
    out: Path, seconds: float = 8.0, fps: float = 10.0, size: tuple[int, int] = (540, 720)
) -> Path:
    """Write the demo MP4 (width x height = `size`) and return its path."""
    image = cv2.imread(str(bundled_image()))
    h, w = image.shape[:2]
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise SourceError(f"Cannot write the demo clip to {out}.")
    n = int(seconds * fps)
    for i in range(n):
        k = i / max(n - 1, 1)
        zoom = 1.0 + 0.08 * np.sin(np.pi * k)  # in and back out
        cw, ch = w / zoom, h / zoom
        x0 = (w - cw) * (0.5 + 0.3 * np.sin(2 * np.pi * k) / 2)
        y0 = (h - ch) / 2
        m = np.array([[size[0] / cw, 0, -x0 * size[0] / cw], [0, size[1] / ch, -y0 * size[1] / ch]])
        writer.write(cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR))
    writer.release()
    return out
