"""BlazePose's landmark model run directly on a region of interest: MediaPipe's tracking mode,
without a graph per person.

MediaPipe Pose (`vision.pose`) runs two networks on every crop in static mode: a person detector
that finds the body and its alignment, then the landmark model on the rotated square that
detection gives. In a video, MediaPipe's own tracking mode skips the detector and takes the next
square from the previous frame's landmarks (the model outputs two extra "alignment" points, 33
and 34, for exactly that). Its graphs keep that state per graph, though, and a graph costs about
110 MB and a model reload to reset: one per tracked person does not fit a box watching eight
cameras. So this module runs the same landmark model (`pose_landmark_full.tflite` from the
mediapipe wheel, without its unused segmentation head: `lean_resources`, which MediaPipe's own
graph in `vision.pose` loads too) through LiteRT on a square the caller keeps per track, as MediaPipe's
`pose_landmark_by_roi` subgraph does: crop and rotate the square to 256 px, run, decode the 39
landmarks with sigmoid visibility, refine x/y from the heatmaps, project back; and
`roi_from_landmarks` is MediaPipe's `pose_landmarks_to_roi` (centre at point 33, side twice the
distance to point 34, scaled by 1.25, rotated so 33->34 points up).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vision.pose import L_HIP, L_SHOULDER, R_HIP, R_SHOULDER, Pose

log = logging.getLogger(__name__)

INPUT = 256  # px: the landmark model's square input
N_OUT = 39  # 33 body landmarks and 6 auxiliary ones (33, 34: alignment centre and scale point)
ALIGN_CENTRE, ALIGN_SCALE = 33, 34
ROI_SCALE = 1.25  # MediaPipe's RectTransformation of the alignment square
HEATMAP_KERNEL = 7  # RefineLandmarksFromHeatmap: window around each landmark, in heatmap cells
HEATMAP_MIN = 0.5  # ... refined only where the heatmap is this confident
SEGMENTATION_OUTPUT = "Identity_2"  # the person mask the landmark model also outputs (unused)
FLAG_OUTPUT = "Identity_1"  # the pose flag: what fills the mask's output slot in the lean model
# Paths of MediaPipe's resources, relative to its resource folder (the wheel's, or `lean_resources`).
LANDMARK_MODEL = "mediapipe/modules/pose_landmark/pose_landmark_full.tflite"
DETECTOR_MODEL = "mediapipe/modules/pose_detection/pose_detection.tflite"


@dataclass(frozen=True)
class Roi:
    """A rotated square in image pixels: centre, side, and rotation (radians, image axes: y down)."""

    cx: float
    cy: float
    side: float
    angle: float = 0.0

    def moved(self, dx: float, dy: float) -> Roi:
        return Roi(self.cx + dx, self.cy + dy, self.side, self.angle)

    def affine(self) -> np.ndarray:
        """The 2x3 matrix from model-input pixels (0..INPUT) to image pixels."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        k = self.side / INPUT
        a = np.array([[c * k, -s * k], [s * k, c * k]])
        t = np.array([self.cx, self.cy]) - a @ np.array([INPUT / 2, INPUT / 2])
        return np.hstack([a, t[:, None]])


def roi_from_points(centre: np.ndarray, scale_point: np.ndarray) -> Roi:
    """MediaPipe's AlignmentPointsRects + RectTransformation (scale 1.25, square)."""
    dx, dy = float(scale_point[0] - centre[0]), float(scale_point[1] - centre[1])
    radius = math.hypot(dx, dy)
    angle = math.pi / 2 - math.atan2(-dy, dx)
    angle = (angle + math.pi) % (2 * math.pi) - math.pi
    return Roi(float(centre[0]), float(centre[1]), 2 * radius * ROI_SCALE, angle)


def roi_from_pose(pose: Pose) -> Roi | None:
    """A square for the next frame: from the pose's alignment points where it has them (followed
    poses, and full estimates, which keep the square MediaPipe's landmark model ran on), else
    guessed:

    Centre at the hips' midpoint; up along hips -> shoulders; radius the farthest visible landmark
    from the centre (the circle the detector's scale point lies on, which encloses the body),
    grown by 10 % for what the landmarks do not reach (hair, shoes). BlazePose places hips it
    cannot see (behind a desk, below the frame) where the body implies them, as MediaPipe's own
    tracking uses them, so they are taken whatever their visibility. None for a degenerate pose.
    """
    if pose.aux is not None:
        return roi_from_points(pose.aux[0], pose.aux[1])
    kp, vis = pose.keypoints, pose.visibility
    hips = (kp[L_HIP] + kp[R_HIP]) / 2
    up = (kp[L_SHOULDER] + kp[R_SHOULDER]) / 2 - hips
    norm = float(np.hypot(*up))
    seen = kp[vis > 0.3]
    if norm < 1e-6 or not np.isfinite(norm) or len(seen) == 0:
        return None
    radius = 1.1 * float(np.max(np.hypot(*(seen - hips).T)))
    return roi_from_points(hips, hips + up / norm * radius)


def wheel_resources() -> Path:
    """The mediapipe wheel's resource folder: the one MediaPipe itself reads its models from."""
    import mediapipe

    return Path(mediapipe.__file__).parent.parent


def model_path() -> Path:
    return wheel_resources() / LANDMARK_MODEL


def without_segmentation(path: str | Path) -> bytes:
    """The landmark model at `path` with its segmentation head cut off, as a TFLite flatbuffer.

    Why: the network also decodes a 128x128 person mask (output `Identity_2`) that postwatch never
    uses, and TFLite runs every operator of a graph whatever outputs are read. The 46 operators
    that feed only that mask are about 40 % of a run (about 5.7 against 9.1 ms here). The mask's
    output slot is refilled with the pose flag tensor, so MediaPipe's graph, which splits the
    outputs by position and drops the mask when segmentation is off, reads the rest unchanged;
    every other output is bit for bit the whole model's (tests/test_landmarks.py).
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(Path(path).read_bytes(), 0)
    graph = model.subgraphs[0]
    names = {i: t.name.decode() if t.name else "" for i, t in enumerate(graph.tensors)}
    by_name = {names[i]: i for i in graph.outputs}
    if SEGMENTATION_OUTPUT not in by_name or FLAG_OUTPUT not in by_name:
        raise ValueError(f"{path}: no {SEGMENTATION_OUTPUT} output; not BlazePose's landmark model")
    outputs = [by_name[FLAG_OUTPUT] if names[i] == SEGMENTATION_OUTPUT else i for i in graph.outputs]
    needed, kept = set(outputs), []
    for op in reversed(graph.operators):  # TFLite keeps operators in execution order
        if any(o in needed for o in op.outputs):
            kept.append(op)
            needed.update(i for i in op.inputs if i >= 0)
    graph.operators, graph.outputs = kept[::-1], outputs
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


_LEAN_LOCK = threading.Lock()


def lean_resources() -> Path | None:
    """A MediaPipe resource folder whose pose landmark model has no segmentation head, or None
    where it cannot be written (the whole model is then used, only slower).

    `vision.pose` starts MediaPipe's graph on this folder and `LandmarkModel` loads its model, so
    full estimates and followed poses both skip the mask (about a third of a full estimate, two
    fifths of a follow). Written once per mediapipe version under `POSTWATCH_CACHE` (default
    ~/.cache/postwatch), from the wheel's own files, in about a second.
    """
    import mediapipe

    try:
        cache = Path(os.environ.get("POSTWATCH_CACHE") or Path.home() / ".cache" / "postwatch")
    except RuntimeError as e:  # no home folder (a service account without one): say so, go on
        log.warning(
            "no folder for the pose model without its mask (%s; set POSTWATCH_CACHE); using the whole model",
            e,
        )
        return None
    root = cache / f"mediapipe-{getattr(mediapipe, '__version__', 'unknown')}"
    lean = root / LANDMARK_MODEL
    with _LEAN_LOCK:
        if lean.is_file():
            return root
        try:
            for relative, content in (  # the lean model last: where it is, the folder is whole
                (DETECTOR_MODEL, lambda: (wheel_resources() / DETECTOR_MODEL).read_bytes()),
                (LANDMARK_MODEL, lambda: without_segmentation(model_path())),
            ):
                target = root / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                part = target.with_suffix(f".{os.getpid()}.part")
                part.write_bytes(content())
                os.replace(part, target)  # whole or not at all, whoever writes it at the same time
        except (OSError, ValueError) as e:
            log.warning("pose model without its mask not written to %s (%s); using the whole model", root, e)
            return None
    return root


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))  # no overflow for large logits


class LandmarkModel:
    """The BlazePose "full" landmark network on one ROI at a time (not thread-safe, like MediaPipe's)."""

    def __init__(self, path: str | Path | None = None, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if path is None:
            lean = lean_resources()
            path = lean / LANDMARK_MODEL if lean is not None else model_path()
        self._it = Interpreter(str(path), num_threads=threads)
        self._it.allocate_tensors()
        self._input = self._it.get_input_details()[0]["index"]
        outputs = {d["name"]: d["index"] for d in self._it.get_output_details()}
        # Identity: 39x5 landmarks, _1: pose flag, _3: 64x64x39 heatmap, _4: world (_2, the
        # segmentation mask, is cut off: `without_segmentation`)
        self._lm, self._flag = outputs["Identity"], outputs["Identity_1"]
        self._heat, self._world = outputs["Identity_3"], outputs["Identity_4"]

    def run(
        self, image: np.ndarray, roi: Roi, keep: np.ndarray | None = None, fill: int = 114
    ) -> tuple[Pose, float]:
        """The pose in `roi` and the model's confidence that a body is there (0..1).

        `keep` (an xyxy box): everything outside it is greyed in the model's input, as
        `vision.pose.crop_square` does, so a neighbour cannot pull the landmarks over.
        """
        m = roi.affine()
        crop = cv2.warpAffine(
            image,
            m,
            (INPUT, INPUT),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(fill, fill, fill),
        )
        if keep is not None:
            inv = cv2.invertAffineTransform(m)
            x1, y1, x2, y2 = (float(v) for v in keep)
            corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
            inside = np.zeros((INPUT, INPUT), np.uint8)
            poly = corners @ inv[:, :2].T + inv[:, 2]
            cv2.fillConvexPoly(inside, np.round(poly).astype(np.int32), 1)
            # The crop where the mask is set, grey elsewhere: one pass, not a boolean index (0.6 ms).
            crop = cv2.copyTo(crop, inside, np.full_like(crop, fill))
        x = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32)[None] / 255.0
        self._it.set_tensor(self._input, x)
        self._it.invoke()
        flag = float(self._it.get_tensor(self._flag).reshape(-1)[0])
        raw = self._it.get_tensor(self._lm).reshape(N_OUT, 5)
        heat = self._it.get_tensor(self._heat)[0]
        world = self._it.get_tensor(self._world).reshape(N_OUT, 3)
        xy = refine_from_heatmap(raw[:, :2].copy(), heat)
        img_xy = xy @ m[:, :2].T + m[:, 2]
        vis = _sigmoid(raw[:, 3])
        c, s = math.cos(roi.angle), math.sin(roi.angle)
        w = world.copy()
        w[:, 0], w[:, 1] = c * world[:, 0] - s * world[:, 1], s * world[:, 0] + c * world[:, 1]
        aux = img_xy[[ALIGN_CENTRE, ALIGN_SCALE]]
        pose = Pose(img_xy[:33].astype(float), w[:33].astype(float), vis[:33].astype(float), aux=aux)
        return pose, flag


def refine_from_heatmap(xy: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """MediaPipe's RefineLandmarksFromHeatmap: move each landmark (model-input px) to the
    confidence-weighted mean of the heatmap cells around it, where the heatmap is confident.

    Only each landmark's window is read (39 windows of 7x7 cells, not the 64x64x39 map: the whole
    map's sigmoid took a third of a followed pose's time around the network), all windows at once
    (a loop over them took 0.6 ms a pose). Cells of a window beyond the map's edge weigh nothing.
    """
    hh, hw, n = heat.shape
    half = HEATMAP_KERNEL // 2
    m = min(n, len(xy))
    if m == 0:
        return xy
    cx = (xy[:m, 0] / INPUT * hw).astype(int)  # truncated towards zero, as int() does
    cy = (xy[:m, 1] / INPUT * hh).astype(int)
    cells = np.arange(HEATMAP_KERNEL) - half
    gx, gy = cx[:, None] + cells, cy[:, None] + cells  # (m, 7): each window's columns and rows
    inside = ((gy >= 0) & (gy < hh))[:, :, None] & ((gx >= 0) & (gx < hw))[:, None, :]
    window = heat[
        np.clip(gy, 0, hh - 1)[:, :, None], np.clip(gx, 0, hw - 1)[:, None, :], np.arange(m)[:, None, None]
    ]
    weight = _sigmoid(window) * inside
    total = weight.sum(axis=(1, 2))
    use = inside.any(axis=(1, 2)) & (weight.max(axis=(1, 2)) >= HEATMAP_MIN)
    if use.any():
        mean_x = (weight.sum(axis=1) * gx).sum(axis=1)[use] / total[use]
        mean_y = (weight.sum(axis=2) * gy).sum(axis=1)[use] / total[use]
        rows = np.flatnonzero(use)
        xy[rows, 0] = mean_x / hw * INPUT
        xy[rows, 1] = mean_y / hh * INPUT
    return xy
