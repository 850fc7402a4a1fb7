"""A small in-process metrics registry, rendered in the Prometheus text format by GET /metrics.

Why our own: the service needs a handful of per-camera gauges and counters that camera
workers set (frames, analysed fps, inference time, queue depth) and a scope filter so a
key only sees its own sites' series; a dependency for that is not worth it.

Workers share the app's `Metrics` object (`app.state.metrics`) and write, e.g.:

    metrics.frames.inc(site="shop1", camera="cam0")
    metrics.analysed_fps.set(4.8, site="shop1", camera="cam0")
    metrics.inference_ms.set(38.5, site="shop1", camera="cam0")
    metrics.queue_depth.set(2, site="shop1", camera="cam0")

Delivery may add its own with `metrics.counter(...)` / `metrics.gauge(...)`.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
CAMERA_LABELS = ("site", "camera")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LabelFilter = Callable[[dict[str, str]], bool]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class Metric:
    """One metric family: a name, its help text, its type and a value per label combination."""

    def __init__(self, name: str, help: str, kind: str, labelnames: Sequence[str] = CAMERA_LABELS) -> None:
        if not _NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        if kind not in ("gauge", "counter"):
            raise ValueError(f"metric type must be gauge or counter, got {kind!r}")
        bad = [n for n in labelnames if not _LABEL.match(n) or n.startswith("__")]
        if bad:
            raise ValueError(f"invalid label names: {', '.join(bad)}")
        self.name, self.help, self.kind = name, help, kind
        self.labelnames = tuple(labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, object]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(
                f"{self.name} takes labels {', '.join(self.labelnames)}, got {', '.join(labels)}"
            )
        return tuple(str(labels[n]) for n in self.labelnames)

    def set(self, value: float, **labels: object) -> None:
        if self.kind == "counter":
            raise TypeError(f"{self.name} is a counter: use inc()")
        with self._lock:
            self._values[self._key(labels)] = float(value)

    def inc(self, amount: float = 1.0, **labels: object) -> None:
        if self.kind == "counter" and amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + float(amount)

    def get(self, **labels: object) -> float | None:
        with self._lock:
            return self._values.get(self._key(labels))

    def remove(self, **labels: object) -> None:
        """Forget one series (a camera taken out of service)."""
        with self._lock:
            self._values.pop(self._key(labels), None)

    def samples(self) -> list[Sample]:
        with self._lock:
            items = sorted(self._values.items())
        return [Sample(dict(zip(self.labelnames, key)), value) for key, value in items]


def render_family(
    name: str, help: str, kind: str, samples: Iterable[Sample], include: LabelFilter | None = None
) -> list[str]:
    lines = [
        f"# HELP {name} {help.replace(chr(92), chr(92) * 2).replace(chr(10), ' ')}",
        f"# TYPE {name} {kind}",
    ]
    for sample in samples:
        if include is not None and not include(sample.labels):
            continue
        labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels.items())
        lines.append(
            f"{name}{{{labels}}} {format_value(sample.value)}"
            if labels
            else f"{name} {format_value(sample.value)}"
        )
    return lines


class Metrics:
    """The registry: the standard camera-worker metrics plus any registered later."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._lock = threading.Lock()
        self.frames = self.counter("postwatch_frames_total", "Frames analysed by the camera worker.")
        self.analysed_fps = self.gauge(
            "postwatch_analysed_fps", "Frames analysed per second, recent average."
        )
        self.inference_ms = self.gauge(
            "postwatch_inference_ms", "Detection, pose and rules time per frame, in milliseconds."
        )
        self.queue_depth = self.gauge("postwatch_queue_depth", "Frames waiting to be analysed.")
        self.connected = self.gauge("postwatch_camera_connected", "1 while the camera stream is connected.")

    def _register(self, metric: Metric) -> Metric:
        with self._lock:
            existing = self._metrics.get(metric.name)
            if existing is not None:
                if (existing.kind, existing.labelnames) != (metric.kind, metric.labelnames):
                    raise ValueError(f"metric {metric.name} already registered differently")
                return existing
            self._metrics[metric.name] = metric
            return metric

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = CAMERA_LABELS) -> Metric:
        """A gauge (registering the same name twice returns the first)."""
        return self._register(Metric(name, help, "gauge", labelnames))

    def counter(self, name: str, help: str, labelnames: Sequence[str] = CAMERA_LABELS) -> Metric:
        """A counter; by convention its name ends in `_total`."""
        return self._register(Metric(name, help, "counter", labelnames))

    def render(self, include: LabelFilter | None = None, extra: Iterable[list[str]] = ()) -> str:
        """The text exposition: every registered family (series filtered by `include`), then `extra`."""
        with self._lock:
            metrics = list(self._metrics.values())
        lines: list[str] = []
        for m in metrics:
            lines += render_family(m.name, m.help, m.kind, m.samples(), include)
        for block in extra:
            lines += block
        return "\n".join(lines) + "\n"
