"""Body landmarks with MediaPipe BlazePose, run on one person's crop.

BlazePose expects a single, roughly centred body with some margin: a tight
detector box often cuts off wrists or feet and the model then finds nothing.
So each crop is padded and squared (filled with grey outside the frame), and
one wider retry is made when the first pass misses.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from vision.landmarks import LandmarkModel, Roi

# BlazePose landmark indices used across postwatch.
NOSE, L_EYE, R_EYE, L_EAR, R_EAR, L_MOUTH, R_MOUTH = 0, 2, 5, 7, 8, 9, 10
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 11, 12, 13, 14, 15, 16
L_PINKY, R_PINKY, L_INDEX, R_INDEX, L_THUMB, R_THUMB = 17, 18, 19, 20, 21, 22
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 23, 24, 25, 26, 27, 28
L_HEEL, R_HEEL, L_FOOT, R_FOOT = 29, 30, 31, 32
N_LANDMARKS = 33

#: Skeleton edges for drawing (pairs of landmark indices), face left out.
EDGES: tuple[tuple[int, int], ...] = (
    (L_SHOULDER, R_SHOULDER), (L_SHOULDER, L_ELBOW), (L_ELBOW, L_WRIST), (R_SHOULDER, R_ELBOW),
    (R_ELBOW, R_WRIST), (L_SHOULDER, L_HIP), (R_SHOULDER, R_HIP), (L_HIP, R_HIP), (L_HIP, L_KNEE),
    (L_KNEE, L_ANKLE), (R_HIP, R_KNEE), (R_KNEE, R_ANKLE), (L_ANKLE, L_HEEL), (L_HEEL, L_FOOT),
    (L_ANKLE, L_FOOT), (R_ANKLE, R_HEEL), (R_HEEL, R_FOOT), (R_ANKLE, R_FOOT), (L_WRIST, L_INDEX),
    (R_WRIST, R_INDEX),
)  # fmt: skip


@dataclass
class Pose:
    keypoints: np.ndarray  # (33, 2) image pixels
    world: np.ndarray  # (33, 3) metres, hip-centred
    visibility: np.ndarray  # (33,)
    aux: np.ndarray | None = None  # (2, 2) image px: BlazePose's alignment points 33 and 34, where known


def padded_square(box: np.ndarray, pad: float, shape: tuple[int, int]) -> tuple[int, int, int]:
    """The square (x0, y0, side) around a box grown by `pad` of its height on every side."""
    x1, y1, x2, y2 = (float(v) for v in box)
    h = max(y2 - y1, 1.0)
    side = int(round(max(x2 - x1, y2 - y1) + 2 * pad * h))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), max(side, 8)


def grow(box: np.ndarray, margin: float) -> np.ndarray:
    """The box grown by `margin` of its height on every side."""
    x1, y1, x2, y2 = (float(v) for v in box)
    m = margin * (y2 - y1)
    return np.array([x1 - m, y1 - m, x2 + m, y2 + m])


def crop_square(
    image: np.ndarray, x0: int, y0: int, side: int, keep: np.ndarray | None = None, fill: int = 114
) -> np.ndarray:
    """Cut a square from the image, filling what lies outside the frame with grey.

    With `keep` (an xyxy box), only that region is copied: neighbours standing
    beside the person are greyed out so BlazePose cannot pick them instead.
    """
    h, w = image.shape[:2]
    out = np.full((side, side, 3), fill, dtype=image.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if keep is not None:
        kx1, ky1, kx2, ky2 = (int(round(v)) for v in keep)
        sx0, sy0, sx1, sy1 = max(sx0, kx1), max(sy0, ky1), min(sx1, kx2), min(sy1, ky2)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


class PoseEstimator:
    """One MediaPipe Pose graph, reused for every crop (it is not thread-safe)."""

    def __init__(
        self,
        min_confidence: float = 0.5,
        max_side: int = 512,
        attempts: tuple[tuple[float, float | None], ...] = ((0.15, 0.08), (0.3, None)),
    ) -> None:
        self._pose = _pose_graph(min_confidence)
        self.max_side = max_side
        self.attempts = attempts
        self.min_tracking = 0.5  # MediaPipe's min_tracking_confidence: below it, detect afresh
        self._landmarks: LandmarkModel | None = None

    def close(self) -> None:
        self._pose.close()

    def follow(self, image: np.ndarray, box: np.ndarray, roi: Roi, hips_below: float = 0.0) -> Pose | None:
        """Landmarks of the person in `box` from the square their previous landmarks give
        (`vision.landmarks`: MediaPipe's tracking mode, without its person detector), or None
        where the model no longer sees a body there or the body is not this box's.

        `hips_below`: the hips may lie this share of the box's height below its bottom edge and
        still count as inside. A worker seated behind a desk shows a box that ends at the desk;
        the followed landmarks place the hips behind it, where they are, and were rejected, after
        which a full estimate (two to three times the cost) found the same worker again."""
        if self._landmarks is None:
            from vision.landmarks import LandmarkModel

            self._landmarks = LandmarkModel()
        pose, flag = self._landmarks.run(image, roi, keep=grow(box, self.attempts[0][1] or 0.0))
        low = hips_below * (float(box[3]) - float(box[1]))  # of the box itself, not the opened one
        kept = _belongs_to_box(pose.keypoints, pose.visibility, _beyond(box, image), low, own=box)
        if flag < self.min_tracking or not kept:
            return None
        return pose

    def estimate(self, image: np.ndarray, box: np.ndarray) -> Pose | None:
        """Landmarks of the person in `box`, or None when BlazePose finds no body
        that belongs to this box (a neighbour's body in the margin is rejected; a box that touches
        the frame's edge is open beyond it, `_beyond`, as for a followed pose). The pose's
        `aux` holds the alignment points of the square MediaPipe's landmark model ran on."""
        judged = _beyond(box, image)
        for pad, margin in self.attempts:
            x0, y0, side = padded_square(box, pad, image.shape[:2])
            keep = None if margin is None else grow(box, margin)
            crop = crop_square(image, x0, y0, side, keep)
            if side > self.max_side:
                crop = cv2.resize(crop, (self.max_side, self.max_side), interpolation=cv2.INTER_AREA)
            result = self._pose.process(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
            if result.pose_landmarks is None:
                continue
            lm = result.pose_landmarks.landmark
            kp = np.array([[p.x, p.y] for p in lm], dtype=float) * side + np.array([x0, y0], float)
            vis = np.array([p.visibility for p in lm], dtype=float)
            world = np.array([[p.x, p.y, p.z] for p in result.pose_world_landmarks.landmark], dtype=float)
            if _belongs_to_box(kp, vis, judged, own=box):
                return Pose(kp, world, vis, _alignment_points(result.pose_rect_from_detection, x0, y0, side))
        return None


def _pose_graph(min_confidence: float) -> Any:
    """MediaPipe's pose graph as `mp.solutions.pose.Pose(static_image_mode=True)` builds it, with two
    differences that leave its landmarks as they were:

    * it also hands out the square its landmark model ran on for this crop, from its own person
      detector (`pose_rect_from_detection`), where a followed pose (`PoseEstimator.follow`) then
      starts on the next frame. Before, that square was guessed from the hips and the farthest
      landmark, which for a worker seated behind a desk (hips hidden, placed low) often framed the
      body so that the followed landmarks left the box, and a full estimate followed: in the
      open-plan office more than twice as many follows failed (tests/test_landmarks.py). Not
      `pose_rect_from_landmarks`, the square MediaPipe would track in: the graph smooths the
      alignment points behind it over time even on still images, so it drifted toward whoever the
      graph had estimated before;
    * it loads the landmark model without its segmentation head (`vision.landmarks.lean_resources`),
      about a third of a full estimate. SolutionBase points MediaPipe's (global) resource folder at
      the wheel just before it starts the graph, which loads the models; here it is pointed at the
      lean folder instead, under a lock.
    """
    from mediapipe.python import solution_base

    from vision.landmarks import lean_resources

    lean = lean_resources()
    with _GRAPH_LOCK:
        original = solution_base.resource_util.set_resource_dir
        if lean is not None:
            solution_base.resource_util.set_resource_dir = lambda _wheel: original(str(lean))
        try:
            return solution_base.SolutionBase(
                binary_graph_path="mediapipe/modules/pose_landmark/pose_landmark_cpu.binarypb",
                side_inputs={
                    "model_complexity": 1,  # the "full" model the 0.10.21 wheel carries
                    "smooth_landmarks": False,
                    "enable_segmentation": False,
                    "smooth_segmentation": False,
                    "use_prev_landmarks": False,  # static images: the person detector runs every time
                },
                calculator_params={
                    "posedetectioncpu__TensorsToDetectionsCalculator.min_score_thresh": min_confidence,
                    # min_tracking_confidence, as mp.solutions.pose.Pose sets it (unused on still images)
                    "poselandmarkbyroicpu__tensorstoposelandmarksandsegmentation__"
                    "ThresholdingCalculator.threshold": 0.5,
                },
                outputs=["pose_landmarks", "pose_world_landmarks", "pose_rect_from_detection"],
            )
        finally:
            solution_base.resource_util.set_resource_dir = original


_GRAPH_LOCK = threading.Lock()


def _alignment_points(rect: Any, x0: int, y0: int, side: int) -> np.ndarray | None:
    """The alignment centre and scale point (image px) behind one of MediaPipe's squares (a
    `NormalizedRect` on the crop at (x0, y0) of `side` px): what `vision.landmarks.roi_from_points`
    turns back into that square."""
    from vision.landmarks import ROI_SCALE

    if rect is None or not rect.width > 0:
        return None
    cx, cy = x0 + rect.x_center * side, y0 + rect.y_center * side
    radius = rect.width * side / (2 * ROI_SCALE)
    a = float(rect.rotation)
    return np.array([[cx, cy], [cx + radius * np.sin(a), cy - radius * np.cos(a)]])


def _beyond(box: np.ndarray, image: np.ndarray) -> np.ndarray:
    """The box, open beyond each side where it touches the frame's edge: a person cut off by the
    frame has hips (or feet) below it, which the landmark model places there, visible or not."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    far = 2.0 * max(x2 - x1, y2 - y1)
    ex, ey = 0.02 * w, 0.02 * h  # detector boxes stop a few pixels short of the edge
    return np.array(
        [
            x1 - far if x1 <= ex else x1,
            y1 - far if y1 <= ey else y1,
            x2 + far if x2 >= w - ex else x2,
            y2 + far if y2 >= h - ey else y2,
        ]
    )


def _belongs_to_box(
    kp: np.ndarray,
    vis: np.ndarray,
    box: np.ndarray,
    hips_below_px: float = 0.0,
    own: np.ndarray | None = None,
) -> bool:
    """Most visible torso landmarks must fall inside the (slightly grown) person box; the hips
    may lie `hips_below_px` further down (`PoseEstimator.follow`).

    `own`: the person's box where `box` is that box opened beyond the frame's edge (`_beyond`).
    The margins are a share of the person's own size: taken from the opened box, several times
    larger, a box at the frame's left edge let a neighbour's torso half a width to its right in.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    ox1, oy1, ox2, oy2 = (float(v) for v in (box if own is None else own))
    mx, my = 0.15 * (ox2 - ox1), 0.1 * (oy2 - oy1)
    torso = [L_SHOULDER, R_SHOULDER, L_HIP, R_HIP]
    seen = [i for i in torso if vis[i] > 0.3] or torso
    bottom = {i: y2 + my + (hips_below_px if i in (L_HIP, R_HIP) else 0.0) for i in seen}
    inside = [(x1 - mx <= kp[i, 0] <= x2 + mx) and (y1 - my <= kp[i, 1] <= bottom[i]) for i in seen]
    return sum(inside) >= max(1, int(np.ceil(0.75 * len(seen))))
