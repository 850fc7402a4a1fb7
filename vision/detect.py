"""Object detection with Ultralytics YOLO, and where its weights come from.

The detector finds people and the COCO objects the clauses need (cell phone,
tie, book, cup, bottle; `remote` is kept as weak phone evidence because small
YOLO models call phones remotes). Exported weights such as the int8 TFLite
model carry no class names, so names fall back to the COCO order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger("postwatch.detect")

COCO_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

#: The classes postwatch asks the detector for.
WANTED = ("person", "cell phone", "remote", "tie", "book", "cup", "bottle", "wine glass")

WEIGHT_SUFFIXES = (".pt", ".onnx", ".tflite", ".engine", ".torchscript", "_openvino_model")
#: Where `python -m vision.convert` writes by default: a folder `resolve_weights` does not pick from,
#: so converted weights are used only when named (the benchmarks' `ov` lever, `--weights`).
CONVERTED_DIR = "converted"
DEFAULT_DOWNLOAD = "yolov8n.pt"


class WeightsError(RuntimeError):
    """No detector weights could be found or fetched; the message says how to provide them."""


def project_models_dirs() -> list[Path]:
    """`models/` in the working directory and beside the installed packages (the checkout)."""
    here = Path(__file__).resolve().parents[1] / "models"
    cwd = Path.cwd() / "models"
    return [cwd] if cwd == here else [cwd, here]


def resolve_weights(explicit: str | None = None) -> str:
    """Find detector weights in the documented order.

    1. `--weights` or the site file, 2. `$POSTWATCH_WEIGHTS`, 3. a project
    `models/` folder (git-ignored; CI puts the shared TFLite model there),
    4. Ultralytics' own download of `yolov8n.pt` on a machine with internet.
    Only the first three are checked here; the download is tried by `load`.
    """
    for origin, value in (
        ("--weights", explicit),
        ("POSTWATCH_WEIGHTS", os.environ.get("POSTWATCH_WEIGHTS")),
    ):
        if value:
            if not Path(value).exists() and value != DEFAULT_DOWNLOAD:
                raise WeightsError(f"Detector weights given by {origin} not found: {value}")
            return value
    for folder in project_models_dirs():
        if folder.is_dir():
            found = sorted(p for p in folder.iterdir() if p.name.endswith(WEIGHT_SUFFIXES))
            # Prefer a full-precision PyTorch file when several are present.
            found.sort(key=lambda p: (p.suffix != ".pt", p.name))
            if found:
                return str(found[0])
    return DEFAULT_DOWNLOAD


def project_weights(kind: str) -> str | None:
    """The first file of one format (`tflite`, `openvino`, `openvino-int8`, `pt`) in a project
    `models/` folder or its `converted/` subfolder.

    The benchmarks name a detector by format: `plain` keeps the int8 TFLite model it was first
    measured with, whatever `resolve_weights` would pick.
    """
    suffix = {
        "tflite": ".tflite",
        "openvino": "_openvino_model",
        "openvino-int8": "_openvino_model",
        "pt": ".pt",
    }
    int8 = kind == "openvino-int8"
    for folder in [d for m in project_models_dirs() for d in (m, m / CONVERTED_DIR)]:
        if folder.is_dir():
            found = sorted(
                p
                for p in folder.iterdir()
                if p.name.endswith(suffix[kind]) and (not is_openvino(p.name) or is_int8(p.name) == int8)
            )
            if found:
                return str(found[0])
    return None


#: CPU flags (Linux's /proc/cpuinfo) of int8 dot-product instructions: AVX-512 VNNI, AVX-VNNI, AMX on
#: x86, the dot-product extension on Arm. LiteRT's XNNPACK kernels run the int8 TFLite model with them.
INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp"})


def int8_dot_products(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU has int8 dot-product instructions (`INT8_DOT_FLAGS`); None where unknown.

    Why: without them (an AVX2-only x86 host) LiteRT's int8 kernels are slow, and OpenVINO's int8
    kernels run the same detector in about 0.6 of the time (a 16:9 frame at 544: 44 against 70 ms
    on an AVX2-only AMD EPYC); with them LiteRT is as fast or faster (docs/performance.md).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    if not flags:
        return None
    return bool(flags & INT8_DOT_FLAGS)


def int8_openvino_for(weights: str) -> Path:
    """Where `python -m vision.convert WEIGHTS --int8 --out DIR` puts its int8 OpenVINO model, DIR
    being the `converted/` folder beside the weights (`make setup` makes it there)."""
    from vision.convert import int8_folder  # vision.convert imports this module

    return int8_folder(weights, Path(weights).parent / CONVERTED_DIR)


def video_weights_for(weights: str, choice: str | None = "auto", cpuinfo: str | None = None) -> str | None:
    """The weights video frames and their wrist crops run on, where not `weights` themselves.

    `choice`: "same" or None (every picture on `weights`), a path (must exist), or "auto": the int8
    OpenVINO model made from a TFLite export by `vision.convert --int8` (`int8_openvino_for`), where
    `weights` are that TFLite export, this CPU has no int8 dot products (`int8_dot_products`) and
    the model is there. Still images keep the TFLite model: on the labelled photos the OpenVINO
    model's boxes, a few pixels off, cost a phone and a false alarm (docs/performance.md), and a
    photo is not throughput-bound.
    """
    if choice in (None, "", "same"):
        return None
    if choice != "auto":
        if not Path(choice).exists():
            raise WeightsError(f"Video detector weights given by --video-weights not found: {choice}")
        return choice
    if not str(weights).endswith(".tflite") or int8_dot_products(cpuinfo) is not False:
        return None
    folder = int8_openvino_for(weights)
    if folder.is_dir():
        return str(folder)
    log.warning(
        "this CPU has no int8 dot products: OpenVINO would run video frames in about 0.6 of LiteRT's "
        "time; `python -m vision.convert %s --int8 --out %s` makes its model (about 30 s, once)",
        weights,
        folder.parent,
    )
    return None


def is_openvino(weights: str) -> bool:
    """An OpenVINO model folder (Ultralytics names them `*_openvino_model`)."""
    return str(weights).rstrip("/").endswith("_openvino_model")


def is_int8(weights: str) -> bool:
    """An int8-quantized OpenVINO folder: `vision.convert --int8` names them `*_ovint8_openvino_model`
    (Ultralytics' own int8 export, `*_int8_openvino_model`)."""
    name = Path(str(weights).rstrip("/")).name
    return is_openvino(name) and name.endswith(("_ovint8_openvino_model", "_int8_openvino_model"))


def takes_any_size(weights: str) -> bool:
    """Whether the weights run at any input size (PyTorch, dynamic exports) or only their own.

    Why: a wrist crop runs at a smaller input than a frame where the model allows it; a fixed
    export (the int8 TFLite model takes 640x640 only) must get its own size.
    """
    name = str(weights).rstrip("/")
    if name.endswith(".pt"):
        return True
    if is_openvino(name):
        meta = Path(name) / "metadata.yaml"
        if meta.is_file():
            import yaml

            try:
                data = yaml.safe_load(meta.read_text(encoding="utf-8")) or {}
                return bool(data.get("dynamic", (data.get("args") or {}).get("dynamic")))
            except (OSError, yaml.YAMLError):
                return False
    return False


@dataclass
class Boxes:
    """Detections of one image: xyxy pixels, confidence, COCO class name."""

    xyxy: np.ndarray  # (N, 4)
    confidence: np.ndarray  # (N,)
    labels: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def of(self, *names: str) -> Boxes:
        keep = [i for i, n in enumerate(self.labels) if n in names]
        return Boxes(self.xyxy[keep].reshape(-1, 4), self.confidence[keep], [self.labels[i] for i in keep])

    @classmethod
    def empty(cls) -> Boxes:
        return cls(np.zeros((0, 4)), np.zeros(0), [])


class OpenVINOShapes:
    """An OpenVINO model compiled on our terms, once per input shape where it must be static.

    Why: Ultralytics compiles OpenVINO in its latency mode (every core) and in the CPU's default
    precision (bfloat16 where the CPU has it, which moved borderline phones in and out). And on
    CPUs with AMX it recompiles an int8 model with a dynamic input at every change of input
    shape, because OpenVINO's CPU plugin can crash running int8 with dynamic shapes there
    (openvinotoolkit/openvino#37577): with eight cameras of different aspects and wrist crops
    between them that is a recompile on almost every call. Here each input shape gets its own
    static compiled model, kept (the last `keep` shapes) and compiled with `threads` threads in
    float32 (int8 layers stay int8), unpinned so that each inference thread's model runs on
    whichever core is free. A float model, or any model on a CPU without AMX, keeps one compiled
    model with its dynamic input.
    """

    def __init__(self, xml: Path, threads: int = 1, keep: int = 12) -> None:
        import openvino as ov

        self.core, self.keep = ov.Core(), keep
        self.config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": max(1, int(threads)),
            "INFERENCE_PRECISION_HINT": "f32",
            # In its latency mode OpenVINO pins its threads to cores, and every compiled model
            # picks the same first core: two inference threads, each with its own model, then ran
            # on one core (26 against 52 calls a second over two threads, bench/openvino_pinning.py).
            "ENABLE_CPU_PINNING": False,
        }
        self.model = self.core.read_model(str(xml))  # read once; each shape compiles a clone
        quantized = any(op.get_type_name() == "FakeQuantize" for op in self.model.get_ops())
        self.per_shape = quantized and self.model.input().get_partial_shape().is_dynamic and _has_amx()
        self._compiled: dict[tuple[int, ...] | None, Any] = {}
        if not self.per_shape:
            self._compiled[None] = self.core.compile_model(self.model, "CPU", self.config)

    @property
    def shapes(self) -> int:
        """How many compiled models are kept."""
        return len(self._compiled)

    def compiled(self, shape: tuple[int, ...]) -> Any:
        key = shape if self.per_shape else None
        found = self._compiled.pop(key, None)
        if found is None:
            model = self.model.clone()
            model.reshape(list(shape))
            found = self.core.compile_model(model, "CPU", self.config)
            if len(self._compiled) >= self.keep:
                del self._compiled[next(iter(self._compiled))]  # the least recently used
        self._compiled[key] = found  # (re)inserted last: the most recently used
        return found

    def forward(self, im: Any) -> list[np.ndarray]:
        """Ultralytics' backend call: a BCHW float tensor in [0, 1], the outputs as arrays."""
        x = (
            im.cpu().numpy().astype(np.float32, copy=False)
            if hasattr(im, "cpu")
            else np.asarray(im, np.float32)
        )
        return list(self.compiled(tuple(x.shape))(x).values())


def _has_amx() -> bool:
    """Whether this CPU has Intel AMX int8 (Linux: /proc/cpuinfo), where OpenVINO's dynamic int8 can crash."""
    try:
        return "amx_int8" in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


class Detector:
    """A YOLO model behind one `detect(image)` call.

    `tflite_any_size` (on): a fixed-size TFLite export runs each picture at its own aspect (a 16:9
    frame at 640x384 instead of 640x640, `vision.litert`) and a crop at the input size asked for, as
    PyTorch and dynamic OpenVINO weights do; off, every call is the export's own square (the
    `plain` pipeline's detector).

    `video_weights` ("auto", "same" or None, or a path: `video_weights_for`): a second model,
    `self.video`, for video frames and their wrist crops, where another runtime is faster on this
    CPU; still images keep `weights`.
    """

    def __init__(
        self,
        weights: str | None = None,
        imgsz: int = 640,
        conf: float = 0.25,
        threads: int | None = None,
        tflite_any_size: bool = True,
        lean: bool = True,
        video_weights: str | None = None,
    ) -> None:
        self.weights = resolve_weights(weights)
        self.lean = lean
        self.imgsz = imgsz
        self.any_size = takes_any_size(self.weights)
        self.conf = conf
        self.model = _load(self.weights)
        self.threads: int | None = None
        self._shapes: Any = None  # vision.litert.LiteRTShapes, where a TFLite export runs at any size
        self._openvino: OpenVINOShapes | None = None  # an OpenVINO model's own compiled models
        # Video frames and their wrist crops on other weights (`video_weights_for`, loaded below);
        # still images keep these. The pipeline picks it (`Pipeline._detector_for`), never `detect`.
        self.video: Detector | None = None
        names = getattr(self.model, "names", None) or {}
        # Exports without metadata name their classes "class0".."class999": use COCO then.
        if not names or str(names.get(0, "")).startswith("class") or len(names) != len(COCO_NAMES):
            self.names = list(COCO_NAMES)
        else:
            self.names = [names[i] for i in range(len(names))]
        self._wanted_ids = [i for i, n in enumerate(self.names) if n in WANTED]
        if not str(self.weights).endswith((".pt", ".torchscript")):
            _torch_single_thread()
        if threads is None and is_openvino(self.weights):
            threads = 1  # as LiteRT gets on 2 cores; OpenVINO would take them all (see set_threads)
        self._build()
        if tflite_any_size and str(self.weights).endswith(".tflite"):
            self._any_size_tflite()
        if threads is not None:
            self.set_threads(threads)
        chosen = video_weights_for(self.weights, video_weights)
        if chosen:
            self.video = Detector(chosen, imgsz, conf, threads, tflite_any_size, lean)
            log.info("video frames detected by %s, still images by %s", chosen, self.weights)

    def _any_size_tflite(self) -> None:
        """Run the fixed-size TFLite export at each picture's own aspect, and crops at their own size
        where the pipeline asks (`vision.litert`); where the file cannot be resized, say so and keep
        its fixed size."""
        from vision.litert import LiteRTShapes

        backend = self._backend()
        if backend is None or not hasattr(backend, "interpreter"):
            log.warning("this Ultralytics version hides its detector runtime: TFLite kept at its own size")
            return
        from ultralytics.utils import NUM_THREADS  # what Ultralytics' backend gives LiteRT

        try:
            shapes = LiteRTShapes(self.weights, threads=NUM_THREADS)
        except (ValueError, RuntimeError, OSError) as e:
            log.warning("%s runs at its own size only: %s", self.weights, e)
            return
        shapes.attach(backend)
        self._shapes, self.any_size = shapes, True

    def _backend(self) -> Any:
        """Ultralytics' runtime behind the built predictor (LiteRT, OpenVINO...), or None."""
        return getattr(getattr(getattr(self.model, "predictor", None), "model", None), "backend", None)

    def _build(self) -> None:
        """Have Ultralytics build its predictor (and import the rest of torch): it does so on the first
        call, seconds on a slow core. Done at load, it delays neither a camera's first frame nor a
        benchmark, and `set_threads` finds the runtime it rebuilds."""
        if getattr(self.model, "predictor", None) is None:
            self.detect(np.zeros((self.imgsz, self.imgsz, 3), np.uint8))

    def set_threads(self, threads: int) -> bool:
        """Run a TFLite or OpenVINO model on `threads` CPU threads; False where that cannot be done.

        Why: Ultralytics gives LiteRT `cpu_count - 1` threads, one on a 2-core box, where two
        threads run the int8 YOLOv8n in about 21 ms instead of 37 ms when the other core is idle
        (and gain nothing when capture threads keep it busy: see docs/performance.md). OpenVINO
        takes every core in its latency mode, and two threads cost about 10 % more CPU than one
        for the same detections. Ultralytics builds its backend on the first `predict`, so one is
        run on a blank image first, then the runtime is rebuilt with the thread count. Other
        formats are left as they are.
        """
        if self.video is not None:
            self.video.set_threads(threads)
        openvino = is_openvino(self.weights)
        if not (str(self.weights).endswith(".tflite") or openvino):
            log.info(
                "detector threads apply to .tflite and OpenVINO weights only; %s left as it is", self.weights
            )
            return False
        self._build()
        backend = self._backend()
        threads = max(1, int(threads))
        if openvino and backend is not None and hasattr(backend, "ov_compiled_model"):
            self._openvino = OpenVINOShapes(next(Path(self.weights).glob("*.xml")), threads)
            backend.forward = self._openvino.forward
            # Ultralytics marks an AMX int8 model as fixed-size (see OpenVINOShapes), which letterboxes
            # every input to the export's 640x640; the per-shape models take any size again.
            backend.dynamic = self.any_size
            self.threads = threads
            return True
        if openvino or backend is None or not hasattr(backend, "interpreter"):
            log.warning("this Ultralytics version hides its detector runtime: detector threads unchanged")
            return False
        if self._shapes is not None:  # one interpreter per input shape: rebuilt with the new count
            self._shapes.threads = threads
            self._shapes.clear()
            self.threads = threads
            return True
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(str(self.weights), num_threads=threads)
        interpreter.allocate_tensors()
        backend.interpreter = interpreter
        backend.input_details = interpreter.get_input_details()
        backend.output_details = interpreter.get_output_details()
        self.threads = threads
        return True

    def detect_many(
        self, images: Sequence[np.ndarray], imgsz: int | None = None, conf: float | None = None
    ) -> list[Boxes]:
        """Detections of up to four pictures from one detector call, each on its tile of the input.

        Why: a fixed-size export (the int8 TFLite model takes 640x640 and a batch of one) spends
        the same time on a 16:9 frame letterboxed to 640x360 as on a full square; two such frames
        one above the other fill the square at 89 % of their own scale, so two cameras cost one
        call. Each tile is letterboxed (grey 114, as Ultralytics does), boxes are given to the
        tile their centre lies in, clipped to its picture and scaled back.
        """
        if len(images) == 1:
            return [self.detect(images[0], imgsz, conf)]
        side = imgsz or self.imgsz
        cells = tile_layout([im.shape[:2] for im in images], side)
        canvas = np.full((side, side, 3), 114, np.uint8)
        placed = []
        for image, (cx, cy, cw, ch) in zip(images, cells):
            h, w = image.shape[:2]
            scale = min(cw / w, ch / h)
            nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
            ox, oy = cx + (cw - nw) // 2, cy + (ch - nh) // 2
            canvas[oy : oy + nh, ox : ox + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
            placed.append((ox, oy, nw, nh, scale, w, h))
        found = self.detect(canvas, side, conf)
        centres = (found.xyxy[:, :2] + found.xyxy[:, 2:]) / 2 if len(found) else np.zeros((0, 2))
        out = []
        for ox, oy, nw, nh, scale, w, h in placed:
            inside = (
                (centres[:, 0] >= ox)
                & (centres[:, 0] < ox + nw)
                & (centres[:, 1] >= oy)
                & (centres[:, 1] < oy + nh)
            )
            idx = np.flatnonzero(inside)
            xyxy = found.xyxy[idx].copy().reshape(-1, 4)
            xyxy[:, [0, 2]] = np.clip((xyxy[:, [0, 2]] - ox) / scale, 0, w)
            xyxy[:, [1, 3]] = np.clip((xyxy[:, [1, 3]] - oy) / scale, 0, h)
            out.append(Boxes(xyxy, found.confidence[idx], [found.labels[i] for i in idx]))
        return out

    def detect(
        self, image: np.ndarray, imgsz: int | None = None, conf: float | None = None, square: bool = False
    ) -> Boxes:
        """Wanted-class boxes of one picture, at `imgsz` where the model takes any size.

        Where the model takes any size a picture is letterboxed to its own aspect (stride
        multiples); `square` letterboxes it to the `imgsz` square instead (Ultralytics' own
        letterbox, as for a fixed-size export). With almost no grey beside it, YOLO reads a person
        cut off by the picture's edge less surely (bus.jpg's fourth person: 0.37 in the 640 square,
        0.24 at 480x640); grey added around it moved other boxes and broke two real-clip rules.
        """
        size = (imgsz or self.imgsz) if self.any_size else self.imgsz
        conf = self.conf if conf is None else conf
        if self._shapes is not None and self.lean:
            xyxy, scores, ids = self._shapes.detect(image, size, conf, self._wanted_ids, square)
            return Boxes(xyxy.astype(float), scores.astype(float), [self.names[c] for c in ids])
        if self._openvino is not None and self.lean and self.any_size:
            xyxy, scores, ids = self._detect_openvino(image, size, conf, square)
            return Boxes(xyxy.astype(float), scores.astype(float), [self.names[c] for c in ids])
        return self._predict(image, size, conf, square)

    def _detect_openvino(
        self, image: np.ndarray, size: int, conf: float, square: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A dynamic OpenVINO model called as `LiteRTShapes.detect` calls LiteRT
        (`vision.litert.lean_detect`), without the predictor's per-call plumbing (a 16:9 frame at
        544 on an AVX2-only EPYC: 37.7 against 39.1 ms, less Python under the GIL the other
        inference thread wants). Its boxes are in input pixels."""
        from vision.litert import lean_detect

        compiled = self._openvino
        assert compiled is not None

        def run(rgb: np.ndarray) -> np.ndarray:
            # C-contiguous NCHW: OpenVINO copies a strided input element by element (about 5 ms here).
            x = np.ascontiguousarray(rgb.transpose(2, 0, 1))[None].astype(np.float32)
            x /= np.float32(255)
            return compiled.forward(x)[0][0]

        return lean_detect(image, size, conf, self._wanted_ids, square, run, normalised=False)

    def _predict(self, image: np.ndarray, size: int, conf: float, square: bool = False) -> Boxes:
        """Ultralytics' own predict call: every format but the resized TFLite export, and the check
        that `vision.litert`'s lean call gives what this gives."""
        result = self.model.predict(
            image,
            imgsz=size,
            conf=conf,
            classes=self._wanted_ids,
            rect=not square,
            verbose=False,
        )[0]
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return Boxes.empty()
        cls = boxes.cls.cpu().numpy().astype(int)
        return Boxes(
            boxes.xyxy.cpu().numpy().astype(float),
            boxes.conf.cpu().numpy().astype(float),
            [self.names[c] if c < len(self.names) else f"class{c}" for c in cls],
        )


#: px of grey between the tiles of `detect_many`, so no box can run from one picture into the next.
TILE_GAP = 8


def tile_layout(shapes: Sequence[tuple[int, int]], side: int) -> list[tuple[int, int, int, int]]:
    """Cells (x, y, w, h) of a side x side canvas for 1-4 pictures of these (h, w) shapes.

    Two pictures go one above the other for landscape frames and side by side for portrait ones,
    whichever keeps more of the smaller one's scale; three or four go in a 2x2 grid.
    """
    n = len(shapes)
    if not 1 <= n <= 4:
        raise ValueError(f"detect_many tiles 1 to 4 pictures, not {n}")
    half = (side - TILE_GAP) // 2
    if n == 1:
        return [(0, 0, side, side)]
    if n == 2:
        stacked = [(0, 0, side, half), (0, half + TILE_GAP, side, half)]
        beside = [(0, 0, half, side), (half + TILE_GAP, 0, half, side)]

        def worst(cells: list[tuple[int, int, int, int]]) -> float:
            return min(min(cw / w, ch / h) for (h, w), (_, _, cw, ch) in zip(shapes, cells))

        return stacked if worst(stacked) >= worst(beside) else beside
    grid = [(0, 0), (half + TILE_GAP, 0), (0, half + TILE_GAP), (half + TILE_GAP, half + TILE_GAP)]
    return [(x, y, half, half) for x, y in grid[:n]]


def _torch_single_thread() -> None:
    """With exported weights, torch only letterboxes and runs NMS around the model: one thread.

    Why: torch's thread pool spins waiting for work after each small parallel op, and on a
    2-core box that spinning takes the core another inference thread or the capture needs
    (bench/throughput.py: about 15 % more CPU per frame with torch's default of one thread a core).
    It is process-wide, so it is only set where torch does not run the model itself.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - Ultralytics always brings torch
        return
    torch.set_num_threads(1)


def _load(weights: str):  # noqa: ANN202 - returns an ultralytics.YOLO
    try:
        from ultralytics import YOLO
    except ImportError as exc:  # pragma: no cover - a broken install
        raise WeightsError(f"Ultralytics is not installed ({exc}); run `make setup`.") from exc
    try:
        return YOLO(weights, task="detect")
    except Exception as exc:
        raise WeightsError(
            f"Could not load detector weights '{weights}' ({type(exc).__name__}: {exc}). "
            "Provide weights with --weights PATH, the POSTWATCH_WEIGHTS variable, or a file in "
            "the project's models/ folder (for example yolov8n.pt or yolov8n_int8.tflite)."
        ) from exc
