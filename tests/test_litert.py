"""The TFLite export at other input sizes (`vision.litert`): the rewritten file, and its detections
on real frames against the export's own 640 square."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import weights
from test_convert import bus, people, same_as_predictor
from test_detect_tiles import frame_at, iou

pytestmark = pytest.mark.model


def tflite_weights() -> Path:
    found = weights()
    if not found.endswith(".tflite"):
        pytest.skip(f"the TFLite export is needed here, not {found}")
    return Path(found)


def interpreter(content: bytes):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=content, num_threads=1)
    it.allocate_tensors()
    return it


def run(it, x: np.ndarray) -> np.ndarray:
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def test_decoding_constants_are_the_exports_own_at_its_size():
    """The anchors and stride scales computed for 640x640 are the ones the file carries (otherwise
    `resized_model` refuses it), and for 384x640 they cover 80x48 + 40x24 + 20x12 cells, normalised
    by width and height apart."""
    from vision.litert import decoding_constants

    points, scales = decoding_constants(384, 640)
    assert points.shape == (1, 2, 3840 + 960 + 240) and scales.shape == (1, 4, 5040)
    assert points[0, 0, 0] == pytest.approx(4 / 640) and points[0, 1, 0] == pytest.approx(4 / 384)
    assert points[0, 1, 3839] == pytest.approx(380 / 384)  # the last cell of the stride-8 grid
    assert scales[0, :, -1] == pytest.approx([32 / 640, 32 / 384, 32 / 640, 32 / 384])


def test_at_its_own_size_the_copy_computes_what_the_export_does():
    from vision.litert import resized_model

    data = tflite_weights().read_bytes()
    x = np.random.default_rng(0).random((1, 640, 640, 3), dtype=np.float32)
    assert np.array_equal(run(interpreter(data), x), run(interpreter(resized_model(data, 640, 640)), x))


def test_other_sizes_give_a_graph_of_their_own_anchors():
    from vision.litert import resized_model

    data = tflite_weights().read_bytes()
    for h, w, anchors in ((384, 640, 5040), (320, 320, 2100), (640, 480, 6300)):
        it = interpreter(resized_model(data, h, w))
        assert list(it.get_input_details()[0]["shape"]) == [1, h, w, 3]
        out = run(it, np.full((1, h, w, 3), 114 / 255, np.float32))
        assert out.shape == (1, 84, anchors)
        assert out[0, 4:].max() < 0.25  # a grey picture holds nothing


def test_models_it_cannot_resize_are_refused_with_the_reason():
    """BlazePose's landmark model is a TFLite file too, but not a YOLOv8 detector; sizes must be
    multiples of the coarsest stride."""
    from vision.landmarks import model_path
    from vision.litert import resized_model

    with pytest.raises(ValueError, match="multiple of 32"):
        resized_model(tflite_weights().read_bytes(), 360, 640)
    with pytest.raises(ValueError):
        resized_model(model_path().read_bytes(), 256, 256)


def test_interpreters_are_kept_per_shape_and_the_oldest_dropped():
    from vision.litert import LiteRTShapes

    shapes = LiteRTShapes(tflite_weights(), keep=2)
    first = shapes.interpreter(384, 640)
    assert shapes.interpreter(384, 640) is first
    shapes.interpreter(320, 320)
    shapes.interpreter(640, 640)
    assert shapes.shapes == 2
    assert shapes.interpreter(384, 640) is not first  # dropped as the least recently used, rebuilt
    shapes.clear()
    assert shapes.shapes == 0


@pytest.mark.media
@pytest.mark.parametrize(
    "name",
    ["DE_intel_worker-zone-detection.mp4", "2_worker_hivis_hardhat_phone_call_warehouse.mp4"],
)
def test_a_frame_at_its_own_aspect_finds_the_people_the_square_finds(name: str):
    """A 16:9 frame letterboxed to 640x384 instead of 640x640: the same people, boxes within a few
    pixels (the grid falls differently on the picture), and the detector takes any size after."""
    from vision.detect import Detector

    path = str(tflite_weights())
    square, own = Detector(path, tflite_any_size=False), Detector(path)
    assert not square.any_size and own.any_size
    image = frame_at(name)
    a, b = square.detect(image).of("person"), own.detect(image).of("person")
    assert len(a) >= 1 and len(b) == len(a)
    for box in a.xyxy:
        assert max(iou(box, other) for other in b.xyxy) > 0.85
    h, w = image.shape[:2]
    assert (own._shapes.own == (640, 640)) and own._shapes.shapes >= 1
    assert (640 * h // w + 31) // 32 * 32 in {key[0] for key in own._shapes._interpreters}


@pytest.mark.media
def test_a_crop_runs_at_a_smaller_input_and_still_finds_the_phone():
    """With any size, a crop can run at 320 (about a quarter of the 640 square's cost): the
    warehouse worker's phone is found there on frames where the square finds it."""
    from vision.detect import Detector

    own = Detector(str(tflite_weights()))
    found = []
    for k in (5, 20):
        image = frame_at("2_worker_hivis_hardhat_phone_call_warehouse.mp4", k)
        person = own.detect(image).of("person")
        x1, y1, x2, y2 = person.xyxy[int(np.argmax(person.confidence))].astype(int)
        found.append(own.detect(image[max(0, y1) : y2, max(0, x1) : x2], imgsz=320).labels)
    assert all("person" in labels for labels in found)
    assert any("cell phone" in labels for labels in found)
    assert any(max(key) == 320 for key in own._shapes._interpreters)


def test_threads_rebuild_the_kept_interpreters():
    from vision.detect import Detector

    own = Detector(str(tflite_weights()))
    own.detect(np.zeros((360, 640, 3), np.uint8))
    assert own._shapes.shapes >= 1
    assert own.set_threads(2) and own.threads == 2
    assert own._shapes.shapes == 0 and own._shapes.threads == 2
    assert len(own.detect(np.zeros((360, 640, 3), np.uint8))) == 0


def test_square_reads_a_picture_as_the_export_does_and_keeps_the_man_at_the_edge():
    """bus.jpg (portrait) at its own aspect, 480x640, has no grey beside it, and the man cut off by
    its left edge drops under the pipeline's person line (0.35). `square=True` (still images) runs
    the export's own 640 square: the same four people as the fixed-size detector, box for box."""
    from vision.detect import Detector
    from vision.pipeline import PipelineOptions

    path = str(tflite_weights())
    fixed, own = Detector(path, tflite_any_size=False), Detector(path)

    line = PipelineOptions.person_conf
    image = bus()
    square = people(fixed.detect(image), line)
    assert len(square) == 4
    assert len(people(own.detect(image), line)) == 3
    assert np.allclose(people(own.detect(image, square=True), line), square, atol=0.5)
    assert (640, 640) in own._shapes._interpreters and (640, 480) in own._shapes._interpreters


@pytest.mark.media
def test_the_lean_call_gives_ultralytics_boxes_bit_for_bit():
    """`LiteRTShapes.detect` (letterbox, input, best-class filter, class-aware NMS, scaling back,
    without Ultralytics' predictor) against Ultralytics' own predict on the same interpreters:
    whole frames of four real clips at their own aspect and in the square, person crops of odd
    shapes at 320 with the wrist-crop threshold, bus.jpg, and a grey picture with nothing in it.
    Every box, score and label is the same to the last bit."""
    from vision.detect import Detector

    own = Detector(str(tflite_weights()))
    assert own._shapes is not None
    calls = [(bus(), {}), (bus(), {"square": True}), (np.full((360, 640, 3), 114, np.uint8), {})]
    for name in (
        "DE_intel_worker-zone-detection.mp4",
        "2_worker_hivis_hardhat_phone_call_warehouse.mp4",
        "A_effiscan_person_chair_sit_stand_leave.mp4",
        "3_kinetics_saluting_three_men.mp4",
    ):
        for k in (3, 12):
            image = frame_at(name, k)
            calls += [(image, {}), (image, {"square": True})]
            for x1, y1, x2, y2 in own.detect(image).of("person").xyxy.astype(int):
                calls.append((image[max(0, y1) : y2, max(0, x1) : x2 + 7], {"imgsz": 320, "conf": 0.1}))
    assert len(calls) >= 25
    assert same_as_predictor(own, calls) > 40
