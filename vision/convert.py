"""Detector weights of any input size from the int8 TFLite export of YOLOv8n.

Why: without internet the only detector weights here are `yolov8n_int8.tflite`, an
Ultralytics export fixed at a 640x640 input. Every call costs a full 640 square: a 16:9
camera frame letterboxed to 640x360, and a wrist crop of a hundred pixels upscaled to 640.
The export keeps its weights (int8 with a scale per output channel, batch norm folded into
the convolutions) and Ultralytics' layer layout, so they load back into the YOLOv8n
architecture (`dequantize_tflite`). From there Ultralytics exports OpenVINO with a dynamic
input (`export_openvino`): frames run at a smaller size with rectangular letterboxing, and
crops at their own. On a machine with internet, `yolov8n.pt` exports the same way.

    python -m vision.convert models/yolov8n_int8.tflite        # -> models/converted/
    python -m vision.convert models/yolov8n_int8.tflite --int8 --calibrate recordings/

`--int8` quantizes the OpenVINO model back to int8 with NNCF (`quantize_openvino`), its
activation ranges measured on pictures of the site's own cameras (`calibration_images`):
int8 kernels at each input's own size, about half the float time.

The convolutions are matched by weight shape and output size, in execution order within
each such group (the converter reorders independent branches, never a chain), and the
result is checked against the TFLite model on a real photo (`compare_with_tflite`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from vision.detect import CONVERTED_DIR

log = logging.getLogger("postwatch.convert")

#: Suffix of the dequantized checkpoint and of its OpenVINO folder, beside the TFLite name.
DEQUANT_SUFFIX = "_dequant"
#: Largest class-score difference from the TFLite model on its confident anchors that still counts
#: as the same detector (int8 activations against float ones: about 0.02 on bus.jpg).
MAX_SCORE_DIFF = 0.08


class ConversionError(RuntimeError):
    """The TFLite model does not map onto the architecture, or the result disagrees with it."""


def _tflite_convs(tflite: Path) -> list[tuple[np.ndarray, np.ndarray, tuple[int, int]]]:
    """(weight OIHW float32, bias, output (h, w)) of every CONV_2D, in execution order."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Without the default delegate the ops stay visible (XNNPACK would fold them into DELEGATE nodes).
    try:
        it = Interpreter(
            model_path=str(tflite),
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        it.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ConversionError(f"{tflite} is not a TFLite model LiteRT can load ({exc})") from exc
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    convs = []
    for op in it._get_ops_details():  # noqa: SLF001 - the interpreter's only op listing
        if op["op_name"] != "CONV_2D":
            continue
        weight, bias = tensors[op["inputs"][1]], tensors[op["inputs"][2]]
        w = it.get_tensor(weight["index"])
        if w.dtype == np.int8:
            q = weight["quantization_parameters"]
            if q["quantized_dimension"] != 0 or np.any(q["zero_points"]):
                raise ConversionError("expected symmetric per-output-channel int8 weights")
            w = w.astype(np.float32) * q["scales"].astype(np.float32).reshape(-1, 1, 1, 1)
        out_shape = tensors[op["outputs"][0]]["shape"]  # NHWC
        convs.append(
            (
                np.ascontiguousarray(w.transpose(0, 3, 1, 2), np.float32),
                it.get_tensor(bias["index"]).astype(np.float32),
                (int(out_shape[1]), int(out_shape[2])),
            )
        )
    return convs


def dequantize_tflite(tflite: str | Path, out: str | Path, arch: str = "yolov8n.yaml") -> Path:
    """Write an Ultralytics checkpoint with the TFLite model's weights; returns its path."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from vision.detect import COCO_NAMES

    tflite, out = Path(tflite), Path(out)
    convs = _tflite_convs(tflite)
    model = DetectionModel(arch, nc=len(COCO_NAMES), verbose=False).eval()
    model.fuse(verbose=False)  # batch norm into the convolutions, as the export did
    side = 640
    order: list[tuple[torch.nn.Conv2d, tuple[int, int]]] = []
    hooks = [
        m.register_forward_hook(lambda m, _i, o: order.append((m, (int(o.shape[2]), int(o.shape[3])))))
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    with torch.no_grad():
        model(torch.zeros(1, 3, side, side))
    for h in hooks:
        h.remove()
    ours: dict[tuple, list[torch.nn.Conv2d]] = defaultdict(list)
    theirs: dict[tuple, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for m, hw in order:
        ours[(tuple(m.weight.shape), hw)].append(m)
    for w, b, hw in convs:
        theirs[(w.shape, hw)].append((w, b))
    if {k: len(v) for k, v in ours.items()} != {k: len(v) for k, v in theirs.items()}:
        raise ConversionError(
            f"{tflite.name}: its {len(convs)} convolutions do not match {arch}'s {len(order)}"
        )
    with torch.no_grad():
        for key, modules in ours.items():
            for m, (w, b) in zip(modules, theirs[key]):
                m.weight.copy_(torch.from_numpy(w))
                if m.bias is not None:
                    m.bias.copy_(torch.from_numpy(b))
                elif np.any(b):
                    raise ConversionError(f"a convolution of shape {key[0]} has a bias in {tflite.name}")
    model.names = dict(enumerate(COCO_NAMES))
    model.args = {"task": "detect", "imgsz": side}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"model": model, "train_args": {"task": "detect", "imgsz": side}, "date": None, "version": None},
        out,
    )
    return out


def compare_with_tflite(pt: str | Path, tflite: str | Path, image: np.ndarray | None = None) -> float:
    """Largest class-score difference between the two models on the TFLite model's confident anchors.

    Both run on the same 640x640 RGB input (Ultralytics' `bus.jpg` by default, real people).
    """
    import cv2
    import torch
    from ai_edge_litert.interpreter import Interpreter

    if image is None:
        from ultralytics.utils import ASSETS

        image = cv2.imread(str(ASSETS / "bus.jpg"))
    x = cv2.resize(image, (640, 640))[:, :, ::-1].astype(np.float32) / 255
    it = Interpreter(model_path=str(tflite))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x[None])
    it.invoke()
    ref = it.get_tensor(it.get_output_details()[0]["index"])[0]
    model = torch.load(str(pt), map_location="cpu", weights_only=False)["model"].float().eval()
    with torch.no_grad():
        got = model(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None])[0][0].numpy()
    confident = ref[4:].max(axis=0) > 0.25
    if not confident.any():
        raise ConversionError("the TFLite model finds nothing in the check image")
    return float(np.abs(ref[4:, confident] - got[4:, confident]).max())


def export_openvino(pt: str | Path, imgsz: int = 640) -> Path:
    """Ultralytics' OpenVINO export of a checkpoint with a dynamic input; returns its folder."""
    from ultralytics import YOLO

    return Path(YOLO(str(pt), task="detect").export(format="openvino", imgsz=imgsz, dynamic=True))


T = TypeVar("T")

#: Suffix of the int8 OpenVINO model's folder (`quantize_openvino`), beside the TFLite name.
INT8_SUFFIX = "_ovint8"
#: Frames taken from each calibration video, evenly spread over it.
FRAMES_PER_VIDEO = 16
#: Most pictures one quantization measures (spread evenly over those found).
MAX_CALIBRATION = 300
IMAGE_TYPES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_TYPES = (".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".ts")


def calibration_images(paths: Sequence[str | Path] = ()) -> list[np.ndarray]:
    """BGR pictures to calibrate int8 activations on: the images, and frames of the videos, found
    in `paths` (files or folders); Ultralytics' two bundled photos of real people when none.

    Why the site's own footage: int8 ranges follow the pictures they were measured on; frames of the
    cameras the model will watch (lighting, lens, scale of people) are what it must read well.
    """
    import cv2

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_TYPES + VIDEO_TYPES)
        elif p.is_file():
            files.append(p)
        else:
            raise ConversionError(f"no such calibration file or folder: {p}")
    if not paths:
        from ultralytics.utils import ASSETS

        files = [ASSETS / "bus.jpg", ASSETS / "zidane.jpg"]
    # What to read, planned first and thinned to MAX_CALIBRATION before any decoding: a folder of
    # recordings would otherwise be held whole in memory.
    plan: list[tuple[Path, int | None]] = []
    for f in files:
        if f.suffix.lower() in IMAGE_TYPES:
            plan.append((f, None))
            continue
        cap = cv2.VideoCapture(str(f))
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        if count > 0:
            plan += [(f, int(i)) for i in np.linspace(0, count - 1, FRAMES_PER_VIDEO).astype(int)]
    plan = _spread(plan, MAX_CALIBRATION)
    images: list[np.ndarray] = []
    for f in dict.fromkeys(f for f, _ in plan):  # each file opened once, in order
        frames = [i for g, i in plan if g == f]
        if frames == [None]:
            image = cv2.imread(str(f))
            if image is not None:
                images.append(image)
            continue
        cap = cv2.VideoCapture(str(f))
        try:
            for i in frames:
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
                ok, image = cap.read()
                if ok and image is not None:
                    images.append(image)
        finally:
            cap.release()
    if not images:
        raise ConversionError(f"no readable picture to calibrate on in {', '.join(map(str, paths))}")
    return images


def _spread(items: Sequence[T], most: int) -> list[T]:
    """At most `most` of the items, evenly spread over them (first and last kept)."""
    if len(items) <= most:
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, most)]


def _letterboxed(image: np.ndarray, side: int = 640) -> np.ndarray:
    """The network input Ultralytics' predictor makes of a picture: letterboxed to a multiple of 32
    (grey 114), RGB, NCHW float in [0, 1]."""
    from ultralytics.data.augment import LetterBox

    boxed = LetterBox((side, side), auto=True, stride=32)(image=image)
    return np.ascontiguousarray(boxed[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255


def quantize_openvino(ov_dir: str | Path, images: Sequence[np.ndarray], out_dir: str | Path) -> Path:
    """Post-training int8 quantization (NNCF) of an OpenVINO YOLO export; returns the new folder.

    As Ultralytics' own `int8=True` export does: the MIXED preset, and the detection head's box
    decoding (its adds, subtractions, products, divisions, the DFL and the sigmoid) left in float,
    where int8 would shift every box. The input stays dynamic, so frames and crops still run at their
    own size, now on int8 kernels (about half the float32 time on this CPU at the same size).
    """
    import shutil

    import nncf
    import openvino as ov

    ov_dir, out_dir = Path(ov_dir), Path(out_dir)
    xml = next(ov_dir.glob("*.xml"), None)
    if xml is None:
        raise ConversionError(f"no OpenVINO model (.xml) in {ov_dir}")
    model = ov.Core().read_model(str(xml))
    head = "__module.model.22"  # YOLOv8n's Detect layer
    ignored = nncf.IgnoredScope(
        patterns=[f".*{head}/.*/{op}" for op in ("Add", "Sub*", "Mul*", "Div*")] + [f".*{head}\\.dfl.*"],
        types=["Sigmoid"],
        validate=False,
    )
    images = _spread(images, MAX_CALIBRATION)  # NNCF's own default subset is 300
    quantized = nncf.quantize(
        model,
        nncf.Dataset(images, _letterboxed),  # letterboxed one at a time: 5 MB each as network input
        preset=nncf.QuantizationPreset.MIXED,
        ignored_scope=ignored,
        subset_size=len(images),
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    ov.save_model(quantized, str(out_dir / xml.name))
    meta = ov_dir / "metadata.yaml"
    if meta.is_file():
        import yaml

        data_meta = yaml.safe_load(meta.read_text(encoding="utf-8")) or {}
        data_meta.setdefault("args", {})["int8"] = True
        what = data_meta.get("description", "YOLO")
        data_meta["description"] = f"{what} (int8, NNCF, calibrated on {len(images)} pictures)"
        (out_dir / "metadata.yaml").write_text(yaml.safe_dump(data_meta, sort_keys=False), encoding="utf-8")
    return out_dir


def int8_folder(tflite: str | Path, out_dir: str | Path) -> Path:
    """Where `convert(..., int8=True)` puts the int8 OpenVINO model made from `tflite`."""
    return Path(out_dir) / f"{Path(tflite).stem}{INT8_SUFFIX}_openvino_model"


def convert(
    tflite: str | Path,
    out_dir: str | Path,
    openvino: bool = True,
    int8: bool = False,
    calibrate: Sequence[str | Path] = (),
) -> list[Path]:
    """The dequantized checkpoint (checked against the TFLite model), its OpenVINO export, and with
    `int8` that export quantized on `calibrate`'s pictures (`quantize_openvino`)."""
    tflite, out_dir = Path(tflite), Path(out_dir)
    if not tflite.is_file():
        raise ConversionError(f"no such TFLite model: {tflite}")
    images = calibration_images(calibrate) if int8 else []  # a wrong path is told before the work
    pt = dequantize_tflite(tflite, out_dir / f"{tflite.stem}{DEQUANT_SUFFIX}.pt")
    diff = compare_with_tflite(pt, tflite)
    if diff > MAX_SCORE_DIFF:
        pt.unlink()
        raise ConversionError(f"the dequantized model's scores differ from {tflite.name}'s by {diff:.3f}")
    log.info("%s: class scores within %.3f of %s", pt, diff, tflite.name)
    made = [pt]
    if openvino or int8:
        made.append(export_openvino(pt))
    if int8:
        made.append(quantize_openvino(made[-1], images, int8_folder(tflite, out_dir)))
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vision.convert",
        description="Dequantize the int8 TFLite YOLOv8n into an Ultralytics checkpoint and export it "
        "to OpenVINO with a dynamic input size.",
    )
    parser.add_argument("tflite", help="the int8 TFLite export of YOLOv8n (yolov8n_int8.tflite)")
    parser.add_argument(
        "--out",
        default=f"models/{CONVERTED_DIR}",
        help=f"folder for the results (default: models/{CONVERTED_DIR}; used when named, and the int8 model "
        "for video frames by `--video-weights auto` on a CPU without int8 dot products)",
    )
    parser.add_argument("--no-openvino", action="store_true", help="write only the .pt checkpoint")
    parser.add_argument(
        "--int8",
        action="store_true",
        help=f"also quantize the OpenVINO model to int8 (NNCF) into *{INT8_SUFFIX}_openvino_model",
    )
    parser.add_argument(
        "--calibrate",
        action="append",
        default=[],
        metavar="PATH",
        help="pictures or videos (files or folders, repeatable) to calibrate int8 on: frames of the "
        "site's own cameras; default: Ultralytics' two bundled photos",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        made = convert(
            args.tflite, args.out, openvino=not args.no_openvino, int8=args.int8, calibrate=args.calibrate
        )
    except (ConversionError, OSError, ImportError) as exc:
        print(f"convert: {exc}", file=sys.stderr)
        return 2
    for path in made:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
