"""Accuracy of each pipeline variant against plain: `service.evaluate` run once per variant.

    .venv/bin/python bench/accuracy_levers.py --json out/accuracy_levers.json
    .venv/bin/python bench/accuracy_levers.py --mode plain,fast,fast+every2 --only '*.mp4'

Why a script beside `postwatch evaluate`: the evaluate command builds its pipelines with the
default options (what `fast` is), and a lever may only be on by default if the figures stay within
2 points of plain. This drives `service.evaluate.evaluate` itself with a pipeline factory per
variant (same labels, same scoring, same models), and sums the figures into a few numbers:

* video kinds / clauses: event-level F1 of all kinds (clauses) together (TP, FP, FN summed), x100;
* photo attributes / clauses: share right, x100 (photos are one frame: only `wrist` can change them);
* the delta of each against plain, in points.

Zone-based pose filtering (`zones`) cannot change these figures: evaluation has no site zones.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.throughput import Variant, revision  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"


def factory(variant: Variant, weights: str | None, loaded: dict[Any, list[Any]]) -> Any:
    """A `service.evaluate` pipeline factory for one variant, around models loaded once per weights."""
    from vision.detect import Detector
    from vision.pipeline import Pipeline, PipelineOptions
    from vision.pose import PoseEstimator

    class Paired(Pipeline):
        """Detects each frame on half of the detector's input, as `serve` does with `pair`
        (the other half holds a copy: what matters is the scale each frame is detected at)."""

        def process(self, frame: Any, boxes: Any = None) -> Any:
            if boxes is None and self.needs_detection(frame):
                boxes = self.detect_many([frame.image, frame.image])[0]
            return super().process(frame, boxes)

    from service.workers import any_size_for

    chosen = variant.weights(weights)
    any_size = any_size_for(variant.mode) if variant.rect is None else variant.rect

    video = variant.video_weights()

    def make(fps: float, track: bool) -> Pipeline:
        models = loaded.setdefault((chosen, any_size, video), [])
        if not models:
            models.extend([Detector(chosen, tflite_any_size=any_size, video_weights=video), PoseEstimator()])
        options = PipelineOptions.for_mode(variant.mode, fps=fps, **variant.overrides)
        kind = Paired if variant.pairs and track else Pipeline
        return kind(models[0], models[1], options, camera="evaluate", track=track)

    return make


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The evaluate report boiled down to four figures (x100) and per-kind F1."""

    def f1(table: dict[str, Any]) -> float | None:
        tp = sum(v["tp"] for v in table.values())
        fp = sum(v["fp"] for v in table.values())
        fn = sum(v["fn"] for v in table.values())
        return None if tp + fp + fn == 0 else round(100.0 * 2 * tp / (2 * tp + fp + fn), 1)

    def acc(table: dict[str, Any]) -> float | None:
        n = sum(v["n"] for v in table.values())
        right = sum(v["right"] for v in table.values())
        return None if n == 0 else round(100.0 * right / n, 1)

    videos, images = report["videos"], report["images"]
    return {
        "video_kinds_f1": f1(videos["kinds"]),
        "video_clauses_f1": f1(videos["clauses"]),
        "photo_attributes": acc(images["attributes"]),
        "photo_clauses": acc(images["clauses"]),
        "kinds_f1": {k: v["f1"] for k, v in videos["kinds"].items()},
        "kinds_tp_fp_fn": {k: [v["tp"], v["fp"], v["fn"]] for k, v in videos["kinds"].items()},
        "clauses_tp_fp_fn": {k: [v["tp"], v["fp"], v["fn"]] for k, v in videos["clauses"].items()},
        "files": report["summary"],
        "seconds": report["seconds"],
    }


FIGURES = ("video_kinds_f1", "video_clauses_f1", "photo_attributes", "photo_clauses")


def _cell(value: float | None, delta: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ({delta or 0.0:+.1f})"


def main(argv: list[str] | None = None) -> int:
    from service.evaluate import evaluate

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mode", default="plain,fast", help="comma-separated variants (see bench/throughput.py)"
    )
    parser.add_argument("--labels", default=str(MEDIA / "labels.yaml"))
    parser.add_argument("--media", default=str(MEDIA))
    parser.add_argument("--only", action="append", default=None, help="file names or globs (repeatable)")
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--json", default=None, help="write the summaries (and full reports) here")
    parser.add_argument(
        "--plain-from",
        default=None,
        metavar="JSON",
        help="take plain's figures from an earlier run's --json instead of running it again (only "
        "where plain's path and the models are unchanged since: it takes 5-8 minutes)",
    )
    args = parser.parse_args(argv)

    specs = [s.strip() for s in args.mode.split(",") if s.strip()]
    variants = [Variant.parse(s) for s in specs]
    if "plain" not in specs:
        variants.insert(0, Variant.parse("plain"))
    models: dict[Any, list[Any]] = {}
    out: dict[str, Any] = {}
    full: dict[str, Any] = {}
    earlier = None
    if args.plain_from:
        try:
            earlier = json.loads(Path(args.plain_from).read_text())
            earlier["summaries"]["plain"], earlier["reports"]["plain"]  # noqa: B018 - both must be there
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"--plain-from {args.plain_from}: no plain run in it ({e})") from None
    for v in variants:
        t0 = time.perf_counter()
        if earlier is not None and v.name == "plain":
            full[v.name], out[v.name] = earlier["reports"]["plain"], earlier["summaries"]["plain"]
            print(f"plain: from {args.plain_from} ({earlier.get('revision')})", file=sys.stderr, flush=True)
            continue
        report = evaluate(
            args.labels,
            args.media,
            fps=args.fps,
            only=args.only,
            pipeline_factory=factory(v, args.weights, models),
        )
        full[v.name] = report
        out[v.name] = summary(report)
        figures = json.dumps({k: out[v.name][k] for k in FIGURES})
        print(
            f"{v.name}: {figures} ({time.perf_counter() - t0:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    base = out[variants[0].name]
    for s in out.values():
        s["delta_points"] = {
            k: None if s[k] is None or base[k] is None else round(s[k] - base[k], 1) for k in FIGURES
        }
        s["within_2_points"] = all(d is None or d >= -2.0 for d in s["delta_points"].values())
    print(f"{'variant':<24}" + "".join(f"{k:>18}" for k in FIGURES) + f"{'eval s':>8}")
    for name, s in out.items():
        cells = "".join(f"{_cell(s[k], s['delta_points'][k]):>18}" for k in FIGURES)
        print(f"{name:<24}{cells}{s['seconds']:>8.0f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "date": date.today().isoformat(),
            "revision": revision(),
            "labels": args.labels,
            "only": args.only or [],
            "fps": args.fps,
            "plain_from": None if earlier is None else [args.plain_from, earlier.get("revision")],
            "summaries": out,
            "reports": full,
        }
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"written {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
