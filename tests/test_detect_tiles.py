"""Several pictures in one detector call (`Detector.detect_many`): the layout, the boxes on real frames."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_pipeline, media_path

from vision.detect import TILE_GAP, tile_layout
from vision.sources import open_source


def test_landscape_frames_go_one_above_the_other_and_portrait_ones_side_by_side():
    top, bottom = tile_layout([(720, 1280), (464, 848)], 640)
    assert top == (0, 0, 640, 316) and bottom == (0, 316 + TILE_GAP, 640, 316)
    left, right = tile_layout([(848, 480), (848, 480)], 640)
    assert left == (0, 0, 316, 640) and right == (316 + TILE_GAP, 0, 316, 640)
    assert len(tile_layout([(480, 640)] * 3, 640)) == 3
    assert tile_layout([(480, 640)], 640) == [(0, 0, 640, 640)]
    for n in (0, 5):
        with pytest.raises(ValueError, match="1 to 4 pictures"):
            tile_layout([(480, 640)] * n, 640)


def frame_at(name: str, k: int = 10) -> np.ndarray:
    with open_source(str(media_path(name)), fps=5) as source:
        for i, frame in enumerate(source):
            if i == k:
                return frame.image
    raise AssertionError(f"{name} has fewer than {k + 1} frames")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = np.maximum(a[:2], b[:2])
    x2, y2 = np.minimum(a[2:], b[2:])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.mark.media
@pytest.mark.model
def test_two_cameras_in_one_call_find_the_people_each_finds_alone():
    """The warehouse worker and the chair-clip man, each on half of the input, are found where a
    call of their own finds them, in their own frame's pixels."""
    detector = make_pipeline().detector
    frames = [
        frame_at("2_worker_hivis_hardhat_phone_call_warehouse.mp4"),
        frame_at("DE_intel_worker-zone-detection.mp4"),
    ]
    together = detector.detect_many(frames)
    assert len(together) == 2
    for image, boxes in zip(frames, together):
        alone = detector.detect(image).of("person")
        paired = boxes.of("person")
        assert len(alone) >= 1
        h, w = image.shape[:2]
        assert (
            (paired.xyxy >= 0).all()
            and (paired.xyxy[:, [0, 2]] <= w).all()
            and (paired.xyxy[:, [1, 3]] <= h).all()
        )
        for box in alone.xyxy:
            assert max(iou(box, other) for other in paired.xyxy) > 0.7


@pytest.mark.model
def test_torch_runs_on_one_thread_around_an_exported_detector():
    """torch only letterboxes and runs NMS around TFLite/ONNX weights; its spinning pool of one
    thread a core would take the core the other inference thread needs (docs/performance.md)."""
    import torch

    detector = make_pipeline().detector
    if str(detector.weights).endswith((".pt", ".torchscript")):
        pytest.skip("torch runs the model itself with .pt weights and keeps its threads")
    assert torch.get_num_threads() == 1
