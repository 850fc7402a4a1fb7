"""The int8 TFLite YOLOv8n dequantized into Ultralytics' architecture and exported to OpenVINO
(`vision.convert`), and how the detector picks and sizes weights (`vision.detect`)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_MODEL

from vision import convert
from vision.detect import Detector, project_weights, resolve_weights, takes_any_size


def shared_model() -> Path:
    if not SHARED_MODEL.exists():
        pytest.skip("../shared/models/yolov8n_int8.tflite not found: the conversion needs the shared model")
    return SHARED_MODEL


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return convert.convert(shared_model(), tmp_path_factory.mktemp("models"))


def bus() -> np.ndarray:
    from ultralytics.utils import ASSETS

    return cv2.imread(str(ASSETS / "bus.jpg"))


def people(boxes, conf: float = 0.0) -> list[np.ndarray]:  # noqa: ANN001 - vision.detect.Boxes
    kept = zip(boxes.xyxy, boxes.labels, boxes.confidence)
    return [b for b, label, c in kept if label == "person" and c >= conf]


def test_the_converted_weights_score_like_the_tflite_model(converted: list[Path]):
    pt, openvino = converted
    assert pt.name == "yolov8n_int8_dequant.pt" and openvino.name.endswith("_openvino_model")
    diff = convert.compare_with_tflite(pt, shared_model())
    assert diff < convert.MAX_SCORE_DIFF, diff


def test_the_openvino_model_finds_the_same_people_as_the_tflite_model_at_smaller_inputs(converted):
    image = bus()
    tflite = Detector(str(shared_model())).detect(image)
    detector = Detector(str(converted[1]))
    assert detector.any_size and detector.threads == 1
    assert len(people(tflite)) == 4  # three standing people and one cut off by the frame's edge
    found = people(detector.detect(image, imgsz=640))
    assert len(found) == 4
    for size, reference in ((640, people(tflite)), (480, people(tflite, 0.5)), (320, people(tflite, 0.8))):
        found = people(detector.detect(image, imgsz=size))
        assert len(reference) >= 2
        for ref in reference:  # each person the TFLite model is sure of, within a few pixels
            assert min(np.abs(ref - box).max() for box in found) < 12 * 640 / size, size


def test_a_fixed_size_model_runs_at_its_own_size_whatever_is_asked():
    detector = Detector(str(shared_model()))
    assert not detector.any_size
    crop = bus()[400:720, 0:320]
    # The TFLite model takes 640x640 only: a smaller request is run at 640, not refused.
    assert len(detector.detect(crop, imgsz=320).labels) == len(detector.detect(crop, imgsz=640).labels)


def test_a_model_of_another_architecture_is_refused_with_a_reason(tmp_path: Path):
    import mediapipe

    pose_model = Path(mediapipe.__file__).parent / "modules" / "pose_landmark" / "pose_landmark_full.tflite"
    with pytest.raises(convert.ConversionError, match="convolutions do not match"):
        convert.dequantize_tflite(pose_model, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_the_command_says_what_is_wrong_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture):
    assert convert.main([str(tmp_path / "missing.tflite"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convert: no such TFLite model") and "Traceback" not in err
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer")
    assert convert.main([str(broken), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convert: ") and "not a TFLite model" in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.pt"))


def test_converted_weights_are_used_only_when_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    models = tmp_path / "models"
    ov = models / "converted" / "yolov8n_int8_dequant_openvino_model"
    ov.mkdir(parents=True)
    monkeypatch.delenv("POSTWATCH_WEIGHTS", raising=False)
    monkeypatch.setattr("vision.detect.project_models_dirs", lambda: [models])
    (models / "yolov8n_int8.tflite").write_bytes(b"")
    assert resolve_weights(None).endswith("yolov8n_int8.tflite")
    assert project_weights("openvino") == str(ov) and project_weights("tflite").endswith(".tflite")
    (models / "yolov8n.pt").write_bytes(b"")
    assert resolve_weights(None).endswith("yolov8n.pt")  # full precision first
    assert not takes_any_size(str(ov))  # no metadata: taken as fixed
    (ov / "metadata.yaml").write_text("imgsz: [640, 640]\nargs:\n  dynamic: true\n")
    assert takes_any_size(str(ov)) and takes_any_size(str(models / "yolov8n.pt"))
    (ov / "metadata.yaml").write_text("imgsz: [640, 640]\nargs:\n  dynamic: false\n")
    assert not takes_any_size(str(ov)) and not takes_any_size(str(models / "yolov8n_int8.tflite"))
