"""Frames in, `FrameObservation`s out: detect, track, pose, look at the hands, compute features.

The one vision path every front end (`inspect`, `analyze`, later `serve` and
`bench`) drives. Pose runs only on persons a `pose_filter` selects (all of
them by default), so a site can limit it to people in post or standby zones.

Phones are small: the full-frame detector at 640 finds a phone in hand in one
photo of seven. So each posed person's hands get a second look: a square crop
around the wrists (about a shoulder width each side), which the detector's
letterbox upscales. Crop detections are kept as evidence (`source="wrist"`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from vision.detect import Boxes, Detector
from vision.features import compute_features
from vision.observation import Detection, FrameObservation, PersonObservation
from vision.pose import L_SHOULDER, L_WRIST, R_SHOULDER, R_WRIST, PoseEstimator, crop_square
from vision.track import PersonTracker

if TYPE_CHECKING:
    from vision.sources import Frame

PoseFilter = Callable[[np.ndarray, FrameObservation], bool]
HAND_OBJECTS = ("cell phone", "remote", "book", "cup", "bottle", "wine glass")


@dataclass
class PipelineOptions:
    fps: float = 5.0  # analysis rate, for the tracker's lost buffer
    imgsz: int = 640
    person_conf: float = 0.35
    object_conf: float = 0.2
    wrist_crops: bool = True
    wrist_imgsz: int = 640  # fixed-size exports (TFLite) only take their own size
    lost_buffer_s: float = 3.0
    pose_filter: PoseFilter | None = None
    stages_ms: dict[str, float] = field(default_factory=dict)


class Pipeline:
    """One camera's vision state (its tracker) around shared models."""

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
        self.tracker = PersonTracker(self.options.fps, self.options.lost_buffer_s) if track else None

    def process(self, frame: Frame) -> FrameObservation:
        image = frame.image
        h, w = image.shape[:2]
        o = self.options
        boxes = self.detector.detect(image, imgsz=o.imgsz, conf=min(o.person_conf, o.object_conf))
        persons = _keep(boxes.of("person"), o.person_conf)
        objects = _keep(boxes.of(*HAND_OBJECTS, "tie"), o.object_conf)
        obs = FrameObservation(frame.camera, frame.t, frame.index, w, h)
        obs.objects = [
            Detection(lbl, float(c), b) for lbl, c, b in zip(objects.labels, objects.confidence, objects.xyxy)
        ]

        if self.tracker is not None:
            tracks = [(t.track_id, t.xyxy, t.confidence) for t in self.tracker.update(persons, (h, w))]
        else:  # a still image: number persons left to right
            order = np.argsort(persons.xyxy[:, 0]) if len(persons) else []
            tracks = [(i + 1, persons.xyxy[j], float(persons.confidence[j])) for i, j in enumerate(order)]

        ties = [d for d in obs.objects if d.label == "tie"]
        owner = _nearest_owner(ties, [box for _, box, _ in tracks])
        for k, (track_id, box, conf) in enumerate(tracks):
            person = PersonObservation(int(track_id), np.asarray(box, float), conf)
            if o.pose_filter is None or o.pose_filter(person.box, obs):
                pose = self.pose.estimate(image, person.box)
                if pose is not None:
                    person.keypoints, person.keypoints_world, person.visibility = (
                        pose.keypoints,
                        pose.world,
                        pose.visibility,
                    )
            held = [d for d in obs.objects if d.label in HAND_OBJECTS]
            if person.keypoints is not None and o.wrist_crops:
                held = held + self._wrist_detections(image, person)
            person.held = held
            person.features, person.evidence = compute_features(
                person.keypoints,
                person.keypoints_world,
                person.visibility,
                person.box,
                held,
                [t for t, o in zip(ties, owner) if o == k],
            )
            # Keep only the objects that ended up associated with this person's hands.
            person.held = [d for d in held if _near_any(d, person)]
            obs.persons.append(person)
        return obs

    def _wrist_detections(self, image: np.ndarray, person: PersonObservation) -> list[Detection]:
        """Detect hand-held objects in square crops around the wrists, mapped back to the frame."""
        kp, vis = person.keypoints, person.visibility
        assert kp is not None and vis is not None
        shoulder = float(np.linalg.norm(kp[L_SHOULDER] - kp[R_SHOULDER]))
        half = max(shoulder, 0.12 * person.height_px, 24.0)
        wrists = [kp[i] for i in (L_WRIST, R_WRIST) if vis[i] >= 0.2]
        if not wrists:
            return []
        if len(wrists) == 2 and np.linalg.norm(wrists[0] - wrists[1]) < half:
            wrists = [(wrists[0] + wrists[1]) / 2]
        out: list[Detection] = []
        for c in wrists:
            x0, y0, side = int(c[0] - half), int(c[1] - half), int(2 * half)
            crop = crop_square(image, x0, y0, side)
            found = self.detector.detect(crop, imgsz=self.options.wrist_imgsz, conf=self.options.object_conf)
            found = found.of(*HAND_OBJECTS)
            for lbl, conf, b in zip(found.labels, found.confidence, found.xyxy):
                out.append(Detection(lbl, float(conf), b + np.array([x0, y0, x0, y0], float), "wrist"))
        return out


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
