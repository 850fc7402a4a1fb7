"""The int8 TFLite YOLOv8n dequantized into Ultralytics' architecture and exported to OpenVINO
(`vision.convert`), and how the detector picks and sizes weights (`vision.detect`)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED_MODEL

from vision import convert
from vision.detect import (
    Detector,
    WeightsError,
    int8_dot_products,
    is_int8,
    project_weights,
    resolve_weights,
    takes_any_size,
    video_weights_for,
)


def shared_model() -> Path:
    if not SHARED_MODEL.exists():
        pytest.skip("../shared/models/yolov8n_int8.tflite not found: the conversion needs the shared model")
    return SHARED_MODEL


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return convert.convert(shared_model(), tmp_path_factory.mktemp("models"), int8=True)


def bus_path() -> Path:
    from ultralytics.utils import ASSETS

    return Path(ASSETS) / "bus.jpg"


def bus() -> np.ndarray:
    return cv2.imread(str(bus_path()))


def same_as_predictor(own: Detector, calls: list[tuple[np.ndarray, dict]]) -> int:
    """Assert that each call's lean boxes, scores and labels are Ultralytics' predictor's to the
    last bit (`Detector.detect` against `Detector._predict`); how many boxes were compared."""
    found = 0
    for image, kw in calls:
        lean = own.detect(image, **kw)
        size = kw.get("imgsz", own.imgsz)
        full = own._predict(image, size, kw.get("conf", own.conf), kw.get("square", False))
        assert lean.labels == full.labels, (own.weights, image.shape, kw)
        assert np.array_equal(lean.xyxy, full.xyxy), (own.weights, image.shape, kw)
        assert np.array_equal(lean.confidence, full.confidence), (own.weights, image.shape, kw)
        found += len(lean)
    return found


def people(boxes, conf: float = 0.0) -> list[np.ndarray]:  # noqa: ANN001 - vision.detect.Boxes
    kept = zip(boxes.xyxy, boxes.labels, boxes.confidence)
    return [b for b, label, c in kept if label == "person" and c >= conf]


def test_the_converted_weights_score_like_the_tflite_model(converted: list[Path]):
    pt, openvino, _ = converted
    assert pt.name == "yolov8n_int8_dequant.pt" and openvino.name.endswith("_openvino_model")
    diff = convert.compare_with_tflite(pt, shared_model())
    assert diff < convert.MAX_SCORE_DIFF, diff


def test_the_openvino_model_finds_the_same_people_as_the_tflite_model_at_smaller_inputs(converted):
    image = bus()
    tflite = Detector(str(shared_model()), tflite_any_size=False).detect(image)  # the export as it is
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


def test_the_int8_openvino_model_finds_the_same_people_at_each_inputs_own_size(converted):
    """NNCF's int8 quantization of the OpenVINO model: the same people as the TFLite model, inputs
    letterboxed to their own aspect, and int8 layers in the graph (its speed: bench/, not here)."""
    int8 = converted[2]
    assert int8.name == "yolov8n_int8_ovint8_openvino_model" and is_int8(str(int8))
    assert takes_any_size(str(int8))  # still dynamic: frames and crops at their own size
    image = bus()
    reference = people(Detector(str(shared_model())).detect(image), 0.5)  # the three standing people
    detector = Detector(str(int8))
    assert detector.any_size and len(reference) == 3
    for size in (640, 480):
        found = people(detector.detect(image, imgsz=size))
        assert 3 <= len(found) <= 4, size  # the man cut off by the frame's edge is borderline
        for ref in reference:
            assert min(np.abs(ref - box).max() for box in found) < 12 * 640 / size, size
    # Each input keeps its own size (Ultralytics would letterbox an int8 model to 640x640 on AMX CPUs).
    shapes = []
    compiled = detector._openvino  # called directly by the lean call (Detector._detect_openvino)
    assert compiled is not None
    forward = compiled.forward
    compiled.forward = lambda im: shapes.append(tuple(im.shape)) or forward(im)  # type: ignore[method-assign]
    detector.detect(image[400:720, 0:320], imgsz=320)
    detector.detect(cv2.resize(image, (640, 360)), imgsz=640)
    assert shapes == [(1, 3, 320, 320), (1, 3, 384, 640)]
    # The quantized graph really runs int8 convolutions (not a float model under a new name).
    import openvino as ov

    model = ov.Core().read_model(str(next(int8.glob("*.xml"))))
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def test_openvino_models_are_compiled_once_per_shape_where_int8_must_be_static(converted):
    """On CPUs with AMX, OpenVINO's int8 with a dynamic input can crash (openvinotoolkit/openvino#37577):
    there each input shape gets its own static model, the least recently used dropped past `keep`."""
    from vision.detect import OpenVINOShapes

    xml = next(converted[2].glob("*.xml"))
    shapes = OpenVINOShapes(xml, threads=1, keep=2)
    shapes.per_shape = True  # as on an AMX CPU, whatever this machine is
    shapes._compiled.clear()
    x320, x384 = np.zeros((1, 3, 320, 320), np.float32), np.zeros((1, 3, 384, 640), np.float32)
    first = shapes.forward(x320)
    assert first[0].shape == (1, 84, 2100) and shapes.shapes == 1
    shapes.forward(x384)
    shapes.forward(x320)  # kept: no new model
    assert shapes.shapes == 2 and list(shapes._compiled) == [(1, 3, 384, 640), (1, 3, 320, 320)]
    shapes.forward(np.zeros((1, 3, 480, 480), np.float32))
    assert list(shapes._compiled) == [(1, 3, 320, 320), (1, 3, 480, 480)]  # 384x640 was the oldest
    assert shapes.compiled((1, 3, 320, 320)).get_property("INFERENCE_NUM_THREADS") == 1
    floats = OpenVINOShapes(next(converted[1].glob("*.xml")))
    assert not floats.per_shape  # no int8 layers: one model with its dynamic input
    assert floats.forward(x320)[0].shape == (1, 84, 2100) and floats.forward(x384)[0].shape == (1, 84, 5040)
    assert floats.shapes == 1


def test_quantization_measures_at_most_max_calibration_pictures(converted, tmp_path: Path, monkeypatch):
    import yaml

    monkeypatch.setattr(convert, "MAX_CALIBRATION", 3)
    out = convert.quantize_openvino(converted[1], [bus()] * 5, tmp_path / "x_ovint8_openvino_model")
    meta = yaml.safe_load((out / "metadata.yaml").read_text())
    assert meta["args"]["int8"] is True and "calibrated on 3 pictures" in meta["description"]
    assert meta["args"]["dynamic"] is True and next(out.glob("*.xml")).with_suffix(".bin").is_file()


def test_calibration_pictures_come_from_images_and_video_frames(tmp_path: Path):
    from ultralytics.utils import ASSETS

    assert len(convert.calibration_images()) == 2  # Ultralytics' bus.jpg and zidane.jpg
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (64, 48))
    for i in range(40):
        writer.write(np.full((48, 64, 3), i * 6, np.uint8))
    writer.release()
    (tmp_path / "notes.txt").write_text("not a picture")
    cv2.imwrite(str(tmp_path / "bus.jpg"), cv2.imread(str(ASSETS / "bus.jpg")))
    images = convert.calibration_images([tmp_path])
    assert len(images) == 1 + convert.FRAMES_PER_VIDEO
    frames = sorted(int(im.mean()) for im in images[1:])  # bus.jpg first (sorted names), then the clip
    assert frames[0] < 10 and frames[-1] > 220  # from its first frame to its last
    assert len(set(frames)) == convert.FRAMES_PER_VIDEO
    with pytest.MonkeyPatch.context() as patch:  # many recordings: thinned before anything is decoded
        patch.setattr(convert, "MAX_CALIBRATION", 4)
        thinned = convert.calibration_images([tmp_path])
    assert len(thinned) == 4 and thinned[0].shape == images[0].shape  # bus.jpg, then 3 of the frames
    with pytest.raises(convert.ConversionError, match="no such calibration file"):
        convert.calibration_images([tmp_path / "missing"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(convert.ConversionError, match="no readable picture"):
        convert.calibration_images([empty])


def test_a_fixed_size_model_runs_at_its_own_size_whatever_is_asked():
    detector = Detector(str(shared_model()), tflite_any_size=False)  # not resized by vision.litert
    assert not detector.any_size
    assert detector.model.predictor is not None  # built at load, not on a camera's first frame
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
    missing = str(tmp_path / "frames")
    assert convert.main([str(shared_model()), "--out", str(tmp_path), "--int8", "--calibrate", missing]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convert: no such calibration file or folder") and "Traceback" not in err


def test_converted_weights_are_used_only_when_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    models = tmp_path / "models"
    ov = models / "converted" / "yolov8n_int8_dequant_openvino_model"
    ov.mkdir(parents=True)
    monkeypatch.delenv("POSTWATCH_WEIGHTS", raising=False)
    monkeypatch.setattr("vision.detect.project_models_dirs", lambda: [models])
    (models / "yolov8n_int8.tflite").write_bytes(b"")
    assert resolve_weights(None).endswith("yolov8n_int8.tflite")
    assert project_weights("openvino") == str(ov) and project_weights("tflite").endswith(".tflite")
    assert project_weights("openvino-int8") is None
    int8 = models / "converted" / "yolov8n_int8_ovint8_openvino_model"
    int8.mkdir()
    assert project_weights("openvino-int8") == str(int8) and project_weights("openvino") == str(ov)
    assert resolve_weights(None).endswith("yolov8n_int8.tflite")  # named, never picked
    (models / "yolov8n.pt").write_bytes(b"")
    assert resolve_weights(None).endswith("yolov8n.pt")  # full precision first
    assert not takes_any_size(str(ov))  # no metadata: taken as fixed
    (ov / "metadata.yaml").write_text("imgsz: [640, 640]\nargs:\n  dynamic: true\n")
    assert takes_any_size(str(ov)) and takes_any_size(str(models / "yolov8n.pt"))
    (ov / "metadata.yaml").write_text("imgsz: [640, 640]\nargs:\n  dynamic: false\n")
    assert not takes_any_size(str(ov)) and not takes_any_size(str(models / "yolov8n_int8.tflite"))


AVX2_ONLY = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse sse2 ssse3 avx avx2 fma\n"
VNNI = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n"
ARM_DOT = "processor\t: 0\nFeatures\t: fp asimd asimddp\n"


def test_int8_dot_products_are_read_off_the_cpus_flags():
    assert int8_dot_products(AVX2_ONLY) is False
    assert int8_dot_products(VNNI) is True and int8_dot_products(ARM_DOT) is True
    assert int8_dot_products("model name\t: unknown\n") is None  # no flags line: unknown


def test_auto_puts_video_frames_on_the_int8_openvino_model_only_where_the_cpu_lacks_int8_dot_products(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    tflite = tmp_path / "yolov8n_int8.tflite"
    tflite.write_bytes(b"")
    with caplog.at_level("WARNING", logger="postwatch.detect"):
        assert video_weights_for(str(tflite), "auto", AVX2_ONLY) is None  # not made yet: says how
    assert f"python -m vision.convert {tflite} --int8" in caplog.text
    folder = tmp_path / "converted" / "yolov8n_int8_ovint8_openvino_model"
    folder.mkdir(parents=True)
    assert video_weights_for(str(tflite), "auto", AVX2_ONLY) == str(folder)
    assert video_weights_for(str(tflite), "auto", VNNI) is None  # LiteRT's int8 kernels are as fast
    assert video_weights_for(str(tflite), "auto", "") is None  # unknown CPU: as it was
    assert video_weights_for(str(tflite), "same", AVX2_ONLY) is None
    assert video_weights_for(str(tmp_path / "yolov8n.pt"), "auto", AVX2_ONLY) is None  # not the int8 export
    assert video_weights_for(str(tflite), str(folder), VNNI) == str(folder)  # named: whatever the CPU
    with pytest.raises(WeightsError, match="--video-weights not found"):
        video_weights_for(str(tflite), str(tmp_path / "nowhere"))


def test_a_clips_frames_and_wrist_crops_run_on_the_video_model_and_a_photo_on_its_own(converted):
    """With video weights, a clip's frames and its wrist crops go to the int8 OpenVINO model and a
    photo to the TFLite model. On the warehouse close-up the OpenVINO model finds the phone at the
    worker's ear in his wrist crops on nearly every frame, as the TFLite model does (123 of 129)."""
    from conftest import media_path

    from vision.pipeline import Pipeline, PipelineOptions
    from vision.pose import PoseEstimator
    from vision.sources import open_source

    detector = Detector(str(shared_model()), video_weights=str(converted[2]))
    assert detector.video is not None and is_int8(detector.video.weights) and detector.video.threads == 1
    calls = {"still": 0, "video": 0}
    for name, model in (("still", detector), ("video", detector.video)):
        detect = model.detect

        def spy(*args, _detect=detect, _name=name, **kwargs):  # noqa: ANN002, ANN003, ANN202
            calls[_name] += 1
            return _detect(*args, **kwargs)

        model.detect = spy  # type: ignore[method-assign]
    pose = PoseEstimator()
    clip = Pipeline(detector, pose, PipelineOptions(fps=5.0, wrist_every=1))
    found = []
    with open_source(str(media_path("2_worker_hivis_hardhat_phone_call_warehouse.mp4")), fps=5) as source:
        for frame in source:
            held = [d for person in clip.process(frame).persons for d in person.held]
            found.append(any(d.label == "cell phone" and d.source == "wrist" for d in held))
    assert calls["still"] == 0 and calls["video"] > len(found)  # frames and crops
    assert len(found) == 129 and sum(found) >= 115, sum(found)
    with open_source(str(bus_path()), camera="photo") as source:
        photo = Pipeline(detector, pose, PipelineOptions(), track=False).process(next(iter(source)))
    assert calls["still"] >= 1 and len(photo.persons) == 4


def test_openvino_models_are_compiled_unpinned_so_two_inference_threads_use_both_cores(converted):
    """Pinned (OpenVINO's latency-mode default) every model took the first core: serve's two
    inference threads then shared it (bench/openvino_pinning.py: about half the calls a second)."""
    from vision.detect import OpenVINOShapes

    for folder in converted[1:]:
        model = OpenVINOShapes(next(folder.glob("*.xml")), threads=1).compiled((1, 3, 320, 544))
        assert model.get_property("ENABLE_CPU_PINNING") is False
        assert model.get_property("INFERENCE_NUM_THREADS") == 1


def test_the_lean_openvino_call_gives_ultralytics_boxes_bit_for_bit(converted):
    """`Detector._detect_openvino` (letterbox, input, best-class filter, class-aware NMS, scaling
    back, without Ultralytics' predictor) against Ultralytics' own predict on the same compiled
    models, float and int8: frames of two real clips at 544 and in the 640 square, person crops
    of odd shapes at 320 with the wrist crops' threshold, bus.jpg, and a grey picture."""
    from test_detect_tiles import frame_at

    for folder in converted[1:]:
        own = Detector(str(folder))
        assert own._openvino is not None and own.any_size and own.lean
        calls = [(bus(), {}), (bus(), {"square": True}), (np.full((360, 640, 3), 114, np.uint8), {})]
        for name in ("DE_intel_worker-zone-detection.mp4", "2_worker_hivis_hardhat_phone_call_warehouse.mp4"):
            image = frame_at(name, 12)
            calls += [(image, {"imgsz": 544}), (image, {"square": True})]
            for x1, y1, x2, y2 in own.detect(image).of("person").xyxy.astype(int):
                calls.append((image[max(0, y1) : y2, max(0, x1) : x2 + 7], {"imgsz": 320, "conf": 0.1}))
        assert len(calls) >= 9
        assert same_as_predictor(own, calls) >= 10
