"""Drawing for people: boxes with track ids, skeletons, and the violations active on each person.

Built on supervision's annotators so a trainer's clip looks like every other
supervision-based tool. Invisible landmarks are zeroed, which supervision skips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import supervision as sv

from vision.observation import FrameObservation
from vision.pose import EDGES

_SKELETON = [(a + 1, b + 1) for a, b in EDGES]  # supervision numbers vertices from 1


class Annotator:
    def __init__(self) -> None:
        self.boxes = sv.BoxAnnotator(thickness=2)
        self.labels = sv.LabelAnnotator(text_scale=0.5, text_padding=4)
        self.edges = sv.EdgeAnnotator(color=sv.Color.from_hex("#00e5ff"), thickness=2, edges=_SKELETON)

    def draw(
        self,
        image: np.ndarray,
        obs: FrameObservation,
        active: Mapping[int, Sequence[str]] | None = None,
    ) -> np.ndarray:
        """Annotate a copy of `image`. `active` maps track id to the clause ids now violated."""
        scene = image.copy()
        if not obs.persons:
            return scene
        active = active or {}
        det = sv.Detections(
            xyxy=np.array([p.box for p in obs.persons], dtype=float),
            confidence=np.array([p.confidence for p in obs.persons], dtype=float),
            class_id=np.array([1 if active.get(p.track_id) else 0 for p in obs.persons]),
            tracker_id=np.array([p.track_id for p in obs.persons]),
        )
        labels = []
        for p in obs.persons:
            f = p.features
            text = f"#{p.track_id} {f.posture.value} {f.hands.value}"
            if f.phone.value not in ("none", "unknown"):
                text += f" phone:{f.phone.value}"
            if active.get(p.track_id):
                text += " ! " + ",".join(active[p.track_id])
            labels.append(text)
        scene = self.boxes.annotate(scene, det)
        scene = self.labels.annotate(scene, det, labels=labels)
        posed = [p for p in obs.persons if p.keypoints is not None and p.visibility is not None]
        if posed:
            xy = np.stack([np.where((p.visibility >= 0.5)[:, None], p.keypoints, 0.0) for p in posed])
            scene = self.edges.annotate(scene, sv.KeyPoints(xy=xy.astype(np.float32)))
        return scene
