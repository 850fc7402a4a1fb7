"""The TFLite export of a YOLOv8 detector at input sizes other than its own.

Why: the int8 TFLite export of YOLOv8n takes a 640x640 input and nothing else, so a 16:9
camera frame, letterboxed to 640x360, pays for 640x640: two fifths of every call is grey
padding. The network is convolutional; only a handful of constants in the file depend on the
input size: the output size of the two upsampling layers, the reshapes that flatten each
level's grid, and the anchor points and stride scales of the box decoding (normalised by the
input's width and height, which Ultralytics' backend multiplies back). `resized_model` writes a
copy with those constants for another size, lets TFLite's own kernels work out every tensor's
shape and writes those in too, so XNNPACK gets a static graph as before. The weights and the
operators are the export's: at its own size the copy computes the same outputs, at 640x384 the
same network runs on 60 % of the pixels (about 88 against 140-170 ms a call on the AVX2-only AMD
host, one thread). `LiteRTShapes` keeps one interpreter per input shape and puts it behind
Ultralytics' LiteRT backend, which letterboxes each picture to its own aspect once it is told
the model takes any size.

`LiteRTShapes.detect` runs one picture end to end without Ultralytics' predictor: the same
letterbox, input, best-class filter, class-aware NMS and scaling back, bit for bit (a test holds
it to Ultralytics' boxes on real frames), at about 2.5 ms less a call on these cores. Ultralytics
spends that in its per-call plumbing: a stream loader, torch tensors for a 1x3xHxW flip and
divide that numpy does in place, its Results objects.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger("postwatch.litert")

#: YOLOv8's three detection levels.
STRIDES = (8, 16, 32)
#: Ultralytics' defaults for a predict call, which `LiteRTShapes.detect` keeps: NMS overlap, boxes
#: kept per picture, the per-class offset that keeps classes apart in one NMS, the letterbox grey.
NMS_IOU, MAX_DET, CLASS_OFFSET, GREY = 0.7, 300, 7680.0, 114


def decoding_constants(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The box decoding's anchor points (1, 2, N) and stride scales (1, 4, N) for an input size,
    normalised by the input's width and height, in float32 as Ultralytics' export computes them
    (anchor at the cell centre times stride / width), so that the export's own size gives its own
    constants bit for bit."""
    points, scales = [], []
    for stride in STRIDES:
        gh, gw = height // stride, width // stride
        sx = np.float32(stride) / np.float32(width)
        sy = np.float32(stride) / np.float32(height)
        gy, gx = np.meshgrid(np.arange(gh, dtype=np.float32), np.arange(gw, dtype=np.float32), indexing="ij")
        points.append(np.stack([(gx.ravel() + np.float32(0.5)) * sx, (gy.ravel() + np.float32(0.5)) * sy]))
        n = gh * gw
        scales.append(np.stack([np.full(n, sx), np.full(n, sy), np.full(n, sx), np.full(n, sy)]))
    return (
        np.concatenate(points, axis=1)[None].astype(np.float32),
        np.concatenate(scales, axis=1)[None].astype(np.float32),
    )


def _input_size(graph: Any) -> tuple[int, int]:
    shape = [int(x) for x in graph.tensors[graph.inputs[0]].shape]
    if len(shape) != 4 or shape[3] != 3:
        raise ValueError(f"input shape {shape} is not one NHWC picture")
    return shape[1], shape[2]


def resized_model(data: bytes, height: int, width: int) -> bytes:
    """A copy of a YOLOv8 detection export (TFLite flatbuffer `data`, NHWC float input) that takes
    a `height` x `width` input (multiples of 32). Raises ValueError for a model that is not laid out
    as Ultralytics' YOLOv8 export is (its decoding constants are checked against the ones computed
    for its own size), so no other model is silently misread."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if height % STRIDES[-1] or width % STRIDES[-1] or height <= 0 or width <= 0:
        raise ValueError(f"input {height}x{width} is not a positive multiple of {STRIDES[-1]}")
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    graph = model.subgraphs[0]
    old_h, old_w = _input_size(graph)
    old_levels = [(old_h // s) * (old_w // s) for s in STRIDES]
    new_levels = [(height // s) * (width // s) for s in STRIDES]
    counts = dict(zip([*old_levels, sum(old_levels)], [*new_levels, sum(new_levels)]))
    old_points, old_scales = decoding_constants(old_h, old_w)
    new_points, new_scales = decoding_constants(height, width)

    def set_data(tensor: Any, values: np.ndarray) -> None:
        model.buffers[tensor.buffer].data = np.frombuffer(values.tobytes(), np.uint8)
        tensor.shape = list(values.shape)

    def constant(tensor: Any, dtype: type) -> np.ndarray | None:
        raw = model.buffers[tensor.buffer].data
        return None if raw is None or not len(raw) else np.frombuffer(bytes(raw), dtype).copy()

    found = {"upsample": 0, "reshape": 0, "points": 0, "scales": 0}
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = max(code.builtinCode, code.deprecatedBuiltinCode)
        if kind == schema.BuiltinOperator.RESIZE_NEAREST_NEIGHBOR:
            size = graph.tensors[op.inputs[1]]
            out = constant(size, np.int32)
            if out is None or len(out) != 2 or old_h % out[0] or old_w % out[1]:
                raise ValueError("an upsampling layer without a constant output size")
            stride = old_h // int(out[0])
            set_data(size, np.array([height // stride, width // stride], np.int32))
            found["upsample"] += 1
        elif kind == schema.BuiltinOperator.RESHAPE:
            # Only the last axis (a level's or all levels' anchors) depends on the input size.
            shape = graph.tensors[op.inputs[1]] if len(op.inputs) > 1 else None
            values = constant(shape, np.int32) if shape is not None else None
            if values is not None:
                values[-1] = counts.get(int(values[-1]), int(values[-1]))
                set_data(shape, values)
            options = getattr(op.builtinOptions, "newShape", None)
            if options is not None and len(options):
                new_shape = [int(x) for x in options]
                new_shape[-1] = counts.get(new_shape[-1], new_shape[-1])
                op.builtinOptions.newShape = new_shape
            found["reshape"] += 1
    for tensor in graph.tensors:
        if tensor.type != schema.TensorType.FLOAT32 or tensor.shape is None:
            continue
        shape = tuple(int(x) for x in tensor.shape)
        for old, new, key in ((old_points, new_points, "points"), (old_scales, new_scales, "scales")):
            if shape == old.shape:
                values = constant(tensor, np.float32)
                if values is not None and np.array_equal(values.reshape(shape), old):
                    set_data(tensor, new)
                    found[key] += 1
    if found["upsample"] != 2 or found["points"] != 1 or found["scales"] != 1 or not found["reshape"]:
        raise ValueError(f"not laid out as Ultralytics' YOLOv8 detection export ({found})")

    def packed() -> bytes:
        builder = flatbuffers.Builder(0)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    graph.tensors[graph.inputs[0]].shape = [1, height, width, 3]
    for tensor in graph.tensors:
        tensor.shapeSignature = None
    # TFLite's reference kernels give every tensor its shape for the new input (no delegate: XNNPACK
    # would take the file's stale shapes); written into the file, XNNPACK then sees a static graph.
    probe = Interpreter(
        model_content=packed(), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    probe.allocate_tensors()
    for detail in probe.get_tensor_details():
        if detail["index"] < len(graph.tensors):  # beyond: the interpreter's own scratch tensors
            graph.tensors[detail["index"]].shape = [int(x) for x in detail["shape"]]
    return packed()


class LiteRTShapes:
    """A YOLOv8 TFLite export behind Ultralytics' LiteRT backend, one interpreter per input shape.

    The export's own shape uses the file as it is; any other shape gets a `resized_model` copy,
    built once (about a tenth of a second) and kept while it is among the last `keep` shapes used.
    """

    def __init__(self, path: str | Path, threads: int = 1, keep: int = 8) -> None:
        from ai_edge_litert import schema_py_generated as schema

        self.data = Path(path).read_bytes()
        self.own = _input_size(schema.ModelT.InitFromPackedBuf(self.data, 0).subgraphs[0])
        resized_model(self.data, *self.own)  # refuses, here, a model it cannot resize
        self.threads, self.keep = max(1, int(threads)), keep
        self._interpreters: OrderedDict[tuple[int, int], Any] = OrderedDict()

    @property
    def shapes(self) -> int:
        """How many interpreters are kept."""
        return len(self._interpreters)

    def clear(self) -> None:
        """Drop the kept interpreters (after a change of `threads`)."""
        self._interpreters.clear()

    def interpreter(self, height: int, width: int) -> Any:
        from ai_edge_litert.interpreter import Interpreter

        key = (int(height), int(width))
        found = self._interpreters.pop(key, None)
        if found is None:
            content = self.data if key == self.own else resized_model(self.data, *key)
            found = Interpreter(model_content=content, num_threads=self.threads)
            found.allocate_tensors()
            if len(self._interpreters) >= self.keep:
                self._interpreters.popitem(last=False)  # the least recently used
        self._interpreters[key] = found
        return found

    def attach(self, backend: Any) -> None:
        """Serve Ultralytics' LiteRT `backend` from these interpreters: before each call the backend
        gets the interpreter of the input's shape, and is marked as taking any size, so the predictor
        letterboxes each picture to its own aspect (stride multiples) instead of the export's square."""
        original = type(backend).forward

        def forward(im: Any) -> list[np.ndarray]:
            height, width = (int(x) for x in im.shape[2:4])  # BCHW, as Ultralytics hands it over
            chosen = self.interpreter(height, width)
            backend.interpreter = chosen
            backend.input_details = chosen.get_input_details()
            backend.output_details = chosen.get_output_details()
            return original(backend, im)

        backend.forward = forward
        backend.dynamic = True

    def detect(
        self, image: np.ndarray, size: int, conf: float, classes: Sequence[int], square: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (N, 4 xyxy pixels of `image`), scores (N,) and class ids (N,) of one BGR picture,
        letterboxed to its own aspect within `size` (stride multiples) or, with `square`, to the
        `size` square; only boxes whose best class is one of `classes` are kept.

        Why: what Ultralytics' predictor does for the LiteRT backend, step for step and in float32
        as it does, without its per-call plumbing: the same boxes for about 2.5 ms less a call.
        """

        def run(rgb: np.ndarray) -> np.ndarray:
            x = rgb.astype(np.float32)[None]  # NHWC
            x /= np.float32(255)
            interpreter = self.interpreter(*rgb.shape[:2])
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
            interpreter.invoke()
            return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]

        return lean_detect(image, size, conf, classes, square, run, normalised=True)


def lean_detect(
    image: np.ndarray,
    size: int,
    conf: float,
    classes: Sequence[int],
    square: bool,
    run: Callable[[np.ndarray], np.ndarray],
    normalised: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What Ultralytics' predictor does around a detector call, for any runtime: the size rounded
    as `check_imgsz` rounds it, the letterbox, `run` (the letterboxed RGB uint8 picture in, the
    raw output (4 + classes, N) out: centre boxes `normalised` by the input's size as a TFLite
    export gives them, or in input pixels as OpenVINO does), the best-class filter and NMS, and
    the boxes scaled back to `image`'s pixels."""
    size = max(-(-int(size) // STRIDES[-1]) * STRIDES[-1], STRIDES[-1])  # as check_imgsz rounds
    picture = letterbox(image, size, square)
    height, width = picture.shape[:2]
    out = run(cv2.cvtColor(picture, cv2.COLOR_BGR2RGB))
    scale = (width, height) if normalised else (1, 1)
    xyxy, scores, ids = best_class_nms(out, *scale, conf, classes)
    return scale_back(xyxy, (height, width), image.shape[:2]), scores, ids


def letterbox(image: np.ndarray, size: int, square: bool) -> np.ndarray:
    """`image` scaled to fit `size` and padded with grey, as Ultralytics' LetterBox does: to stride
    multiples at its own aspect, or to the square."""
    h, w = image.shape[:2]
    r = min(size / h, size / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = size - new_w, size - new_h
    if not square:
        dw, dh = dw % STRIDES[-1], dh % STRIDES[-1]
    top, bottom = round(dh / 2 - 0.1), round(dh / 2 + 0.1)
    left, right = round(dw / 2 - 0.1), round(dw / 2 + 0.1)
    if (w, h) != (new_w, new_h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(GREY,) * 3)


def scale_back(xyxy: np.ndarray, padded: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """Boxes in the letterboxed picture's pixels (`padded` h, w) back in the original's (`shape`),
    clipped to it, as Ultralytics' `scale_boxes` works the scale and padding out from the two shapes."""
    h, w = shape
    gain = min(padded[0] / h, padded[1] / w)
    new_h, new_w = max(round(h * gain), 1), max(round(w * gain), 1)
    pad_x, pad_y = round((padded[1] - new_w) / 2 - 0.1), round((padded[0] - new_h) / 2 - 0.1)
    xyxy[:, [0, 2]] -= pad_x
    xyxy[:, [1, 3]] -= pad_y
    xyxy[:, [0, 2]] /= new_w / w
    xyxy[:, [1, 3]] /= new_h / h
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, h)
    return xyxy


def best_class_nms(
    out: np.ndarray, width: int, height: int, conf: float, classes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ultralytics' `non_max_suppression` for one picture (best class only, class-aware) on the
    export's raw output (4 + classes, N): centre boxes normalised by the input's `width` and
    `height`, one score per class. A box counts when its best score is over `conf` and its best
    class is one of `classes`; xyxy boxes in input pixels, scores and class ids, best first."""
    import torch
    import torchvision

    scores = out[4:]
    best = scores.max(0)
    kept = np.flatnonzero(best > conf)
    ids = scores[:, kept].argmax(0)
    wanted = np.isin(ids, np.asarray(classes, int))
    kept, ids = kept[wanted], ids[wanted]
    if not len(kept):
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int)
    xywh = out[:4, kept].T.copy()
    xywh[:, [0, 2]] *= np.float32(width)
    xywh[:, [1, 3]] *= np.float32(height)
    half = xywh[:, 2:] / 2
    xyxy = np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], axis=1)
    score = best[kept]
    apart = xyxy + (ids.astype(np.float32) * np.float32(CLASS_OFFSET))[:, None]
    order = torchvision.ops.nms(torch.from_numpy(apart), torch.from_numpy(score), NMS_IOU).numpy()[:MAX_DET]
    return xyxy[order], score[order], ids[order]
