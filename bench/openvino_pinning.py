"""Two threads, each with its own OpenVINO detector model on one thread, as `serve`'s two
inference threads run them: calls a second with OpenVINO's core pinning on and off.

    .venv/bin/python bench/openvino_pinning.py [--model models/converted/yolov8n_int8_ovint8_openvino_model]

Why: in its latency mode OpenVINO pins each compiled model's threads to cores, and two models
compiled in one process both took the first core, so the two inference threads shared one core
while the other idled. `vision.detect.OpenVINOShapes` compiles unpinned. A benchmark, not a test:
it prints figures and fails on nothing.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import numpy as np


def rate(xml: Path, pinned: bool, calls: int, shape: tuple[int, ...]) -> tuple[float, float]:
    """(calls a second over both threads, share of two cores busy) for one pinning setting."""
    import openvino as ov

    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32"}
    config["ENABLE_CPU_PINNING"] = pinned
    models = [core.compile_model(core.read_model(str(xml)), "CPU", config) for _ in range(2)]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    for model in models:
        model(x)  # first calls outside the clock

    def work(model: object) -> None:
        for _ in range(calls):
            model(x)  # type: ignore[operator]

    wall, cpu = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=work, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall
    return 2 * calls / wall, (time.process_time() - cpu) / wall / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/converted/yolov8n_int8_ovint8_openvino_model")
    parser.add_argument("--calls", type=int, default=40, help="calls per thread")
    args = parser.parse_args()
    folder = Path(args.model)
    xml = next(folder.glob("*.xml"), None)
    if xml is None:
        raise SystemExit(
            f"no OpenVINO model in {folder}: python -m vision.convert models/yolov8n_int8.tflite --int8"
        )
    shape = (1, 3, 320, 544)  # a 16:9 frame at 544, as `fast` reads video frames
    for pinned in (True, False):
        per_s, busy = rate(xml, pinned, args.calls, shape)
        print(
            f"pinning {'on ' if pinned else 'off'}: {per_s:5.1f} calls a second, {busy:.2f} of two cores busy"
        )


if __name__ == "__main__":
    main()
