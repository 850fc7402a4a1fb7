"""Turn the benchmark's JSON into docs/performance.md, so the page is regenerated, never hand-edited.

    .venv/bin/python bench/report.py out/throughput.json --accuracy out/accuracy_levers.json \\
        --notes bench/performance_notes.md > docs/performance.md      # or: make performance

Every figure on the page comes from the JSON files (bench/throughput.py, bench/accuracy_levers.py);
the prose here only says what each lever is and how to read the tables.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

TARGET = {"streams": 8, "fps": 40.0, "latency_s": 2.0, "rss_mb": 3072.0, "points": 2.0}
STAGES = ("decode", "motion", "detect", "track", "pose", "wrist", "features", "rules")
LEVER_TEXT = {
    "motion": "motion gating: detection skipped while the downscaled grey frame has not changed since "
    "the last detection (tracks and objects carried)",
    "every2": "detection on every 2nd frame, boxes and ids carried between",
    "every3": "detection on every 3rd frame, boxes and ids carried between",
    "every3+slow": "detection on every 3rd frame while everyone in view moves slowly, on every frame "
    "once someone walks",
    "reuse": "pose reused (shifted with the box) while a track's box barely moved and its pixels "
    "did not change",
    "reusebox": "pose reused while a track's box barely moved (no pixel check)",
    "track": "pose tracking: BlazePose's landmark model on the square the track's previous landmarks give "
    "(MediaPipe's tracking mode without its person detector), the full estimate every 2 s",
    "wrist": "wrist crops only for hands in front of the body (not hanging at the sides or behind the back)",
    "crops3": "a track's wrist crops on every 3rd pose, their finds carried with the hands between",
    "crops5": "a track's wrist crops on every 5th pose, their finds carried with the hands between",
    "zones": "pose only for persons in post/standby/staff-only/work zones (the chair camera's post)",
    "threads2": "TFLite detector on 2 threads instead of Ultralytics' cpu_count-1 = 1",
    "pair": "two cameras' frames detected in one call of the fixed 640x640 model, each on its half",
    "workers2": "two inference threads, each with its own detector and pose graph, sharing the cameras",
    "retry": "a track whose full pose estimate found no body is posed again after 0.6 s, not on the next "
    "frame (unless its box moves)",
    "clock": "the pose schedule (tracking, reuse, retry) counts each camera's analysed frames at its rate "
    "where the service falls behind, instead of seconds",
    "ov": "the same weights as an OpenVINO model of any input size (`vision.convert`): frames letterboxed "
    "to their own aspect (640x384 for 16:9) instead of the TFLite model's 640x640",
    "ov+wristsz320": "the OpenVINO model, and the wrist crops detected at 320 instead of 640",
    "ovq": "that OpenVINO model quantized to int8 by NNCF (`vision.convert --int8`), frames at their own "
    "aspect",
    "ovq+wristnative": "the int8 OpenVINO model, and each wrist crop detected at its own size (320 to 640) "
    "instead of upscaled to 640",
    "rect": "the int8 TFLite model at each video frame's own aspect (`vision.litert`: 640x384 for 16:9) "
    "instead of its 640x640",
    "rect+wristnative": "the TFLite model at each frame's own aspect, and each wrist crop of a video frame "
    "at its own size (320 to 640) instead of upscaled to 640",
}


def _f(value: Any, fmt: str = "{:.2f}", none: str = "-") -> str:
    return none if value is None else fmt.format(value)


def _lever(name: str) -> str:
    if name.startswith("plain+"):
        key = name[len("plain+") :]
        return LEVER_TEXT.get(key, key)
    if name == "plain":
        return "baseline: every frame detected, every person posed, both wrists cropped"
    if name == "fast":
        return "what `serve` runs: the lever defaults (`PipelineOptions()`) and its inference threads"
    return name


def delay_bound(r: dict[str, Any]) -> float | None:
    """Worst measured latency plus the slowest camera's analysed-frame interval."""
    worst, rtf = r["latency_s"]["max"], r.get("rtf_min_camera")
    if worst is None or not rtf:
        return None
    return worst + 1.0 / (5.0 * rtf)


def throughput_tables(doc: dict[str, Any]) -> list[str]:
    out: list[str] = []
    results = [r for r in doc["results"] if "error" not in r]
    failed = [r for r in doc["results"] if "error" in r]
    main = [r for r in results if not r["variant"].startswith("plain+")]
    levers = [r for r in results if r["variant"].startswith("plain+")]

    out += [
        "## Throughput, plain vs fast",
        "",
        "fps: analysed frames per second, all cameras together; RTF: seconds of video analysed per wall "
        "second per stream (1.00 = every due frame at 5 fps analysed; the rest were dropped by the capture "
        "threads, as a live camera's would be); x plain: fps against plain at the same N in this run; "
        "latency: frame that completed a violation read from its source -> alert committed to SQLite "
        "(median / p90 / max over the alerts of the measured window); delay bound: the worst latency plus "
        "the interval between two analysed frames of the slowest camera (a violation can complete "
        "in a frame that was dropped, and is then seen one analysed frame later); RSS: peak resident "
        "memory of the process, models included; CPU ms/frame: process CPU time per analysed frame "
        "(the least noisy figure on a shared machine).",
        "",
        "| variant | N | fps | RTF | x plain | latency s (med/p90/max, n) | delay bound s | peak RSS MB "
        "| dropped | CPU ms/frame |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in main + levers:
        lat = r["latency_s"]
        lat_s = (
            "-"
            if lat["median"] is None
            else f"{lat['median']:.2f} / {lat['p90']:.2f} / {lat['max']:.2f} ({r['alerts']})"
        )
        ratio = (r.get("vs_plain") or {}).get("fps")
        out.append(
            f"| {r['variant']} | {r['streams']} | {r['fps']:.1f} | {r['rtf']:.2f} | {_f(ratio)} | {lat_s} | "
            f"{_f(delay_bound(r), '{:.1f}')} | {r['peak_rss_mb']:.0f} | {r['dropped']} | "
            f"{r['cpu_ms_per_frame']:.0f} |"
        )
    for r in failed:
        out.append(f"| {r['variant']} | {r['streams']} | failed: {r['error']} | | | | | | | |")
    out.append("")

    out += [
        "## Where the time goes (ms per analysed frame, all cameras)",
        "",
        "decode is per frame handed to analysis and includes grabbing the frames in between (the clips run "
        "at 12-30 fps); wrist is the detector run on the wrist crops; rules is `CameraRules.update`.",
        "",
        "| variant | N | "
        + " | ".join(STAGES)
        + " | detections run / skipped | poses run (of them tracked) / reused / filtered "
        "| wrist crops run / gated / carried |",
        "|---|---|" + "---|" * len(STAGES) + "---|---|---|",
    ]
    for r in main + levers:
        c = r["counts"]
        stages = " | ".join(_f(r["stages_ms"].get(s), "{:.1f}") for s in STAGES)
        out.append(
            f"| {r['variant']} | {r['streams']} | {stages} | "
            f"{c.get('detect', 0)} / {c.get('detect_skipped', 0)} | "
            f"{c.get('pose', 0)} ({c.get('pose_tracked', 0)}) / {c.get('pose_reused', 0)} / "
            f"{c.get('pose_filtered', 0)} | "
            f"{c.get('wrist_crops', 0)} / {c.get('wrist_gated', 0)} / {c.get('wrist_carried', 0)} |"
        )
    out.append("")

    if levers:
        out += [
            "## Each lever alone, against plain (same run, same N)",
            "",
            "| lever | N | what it does | fps x plain | CPU ms/frame x plain | latency x plain "
            "| RSS x plain |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in sorted(levers, key=lambda r: (r["streams"], r["variant"])):
            v = r.get("vs_plain") or {}
            out.append(
                f"| {r['variant'][len('plain+') :]} | {r['streams']} | {_lever(r['variant'])} | "
                f"{_f(v.get('fps'))} | {_f(v.get('cpu_ms_per_frame'))} | {_f(v.get('latency_median'))} | "
                f"{_f(v.get('peak_rss'))} |"
            )
        out.append("")
    return out


def accuracy_tables(acc: dict[str, Any]) -> list[str]:
    sums = acc["summaries"]
    only = ", ".join(f"`{o}`" for o in acc.get("only") or []) or "every labelled file"
    reused = acc.get("plain_from")
    plain_note = ""
    if reused:
        plain_note = f" Plain's figures are taken from an earlier run at {reused[1]} (`--plain-from`)."
    out = [
        "## Accuracy, each variant against plain (`service.evaluate`)",
        "",
        f"Labels `{acc['labels']}`, {only}, {acc['fps']:g} fps; run {acc['date']} at {acc.get('revision')}. "
        "Video kinds/clauses: event-level F1 of all kinds (clauses) together, x100; photos: share right, "
        "x100; in brackets the difference to plain in points. A lever may be on by default only if no "
        "figure drops by more than 2 points." + plain_note,
        "",
        "| variant | video kinds F1 | video clauses F1 | photo attributes | photo clauses "
        "| within 2 points | evaluate s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in sums.items():
        d = s["delta_points"]
        cells = " | ".join(
            "-" if s[k] is None else f"{s[k]:.1f} ({d[k]:+.1f})"
            for k in ("video_kinds_f1", "video_clauses_f1", "photo_attributes", "photo_clauses")
        )
        out.append(
            f"| {name} | {cells} | {'yes' if s['within_2_points'] else '**no**'} | {s['seconds']:.0f} |"
        )
    out.append("")
    kinds = sorted({k for s in sums.values() for k in s["kinds_tp_fp_fn"]})
    out += [
        "Per kind (TP/FP/FN):",
        "",
        "| variant | " + " | ".join(kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for name, s in sums.items():
        cells = " | ".join("/".join(str(x) for x in s["kinds_tp_fp_fn"].get(k, [])) or "-" for k in kinds)
        out.append(f"| {name} | {cells} |")
    out.append("")
    return out


def _latency_verdict(worst: float | None) -> str:
    if worst is None:
        return "no alert in the window"
    return "met" if worst < TARGET["latency_s"] else "not met"


def keeps_up(r: dict[str, Any]) -> bool:
    """The frame rate part of the target: 40 frames counted, or every camera analysed at its own rate.

    Why both: a camera paced at 5 fps hands over 74 or 75 frames in a 15-s window, so a service
    that analyses every frame it is given reads 39.5-40.0. No frame dropped (over every repeat) with
    each camera's real-time factor at 0.98 or more is that case.
    """
    if r["fps"] >= TARGET["fps"]:
        return True
    return r.get("dropped") == 0 and (r.get("rtf_min_camera") or 0.0) >= 0.98


def dropped_by_camera(r: dict[str, Any]) -> str:
    """Frames dropped over every repeat, and by which cameras, most first: all cameras at once is
    a process-wide stall (a burst of other work), one camera alone is that camera's own cost."""
    by = {c: n for c, n in (r.get("dropped_per_camera") or {}).items() if n}
    if not by:
        return str(r.get("dropped", "-"))
    worst = sorted(by.items(), key=lambda kv: (-kv[1], kv[0]))
    return f"{r['dropped']} ({', '.join(f'{c} {n}' for c, n in worst)})"


def verdict(doc: dict[str, Any], acc: dict[str, Any] | None) -> list[str]:
    """The target (8 cameras, 40 analysed fps, latency < 2 s, < 3 GB, within 2 points), met or not."""
    rows = [r for r in doc["results"] if "error" not in r and r["streams"] == TARGET["streams"]]
    out = ["## Against the target", ""]
    if not rows:
        return out + [f"No {TARGET['streams']}-stream run in this JSON.", ""]
    out += [
        f"Target: {TARGET['streams']} cameras at 5 analysed fps ({TARGET['fps']:.0f} frames/s in total), "
        f"alert latency < {TARGET['latency_s']:.0f} s, memory < 3 GB, evaluation within "
        f"{TARGET['points']:.0f} points of plain. The frame rate is met where {TARGET['fps']:.0f} frames a "
        "second were counted, or where no frame was dropped and every camera was analysed at 0.98 "
        "of its own rate or more (a paced camera hands over 74 or 75 frames in a 15-s window).",
        "",
        "| variant | fps (of 40) | frames dropped (by camera) | latency median / max s | delay bound s "
        "| peak RSS MB | accuracy within 2 points |",
        "|---|---|---|---|---|---|---|",
    ]
    sums = (acc or {}).get("summaries", {})
    for r in rows:
        lat = r["latency_s"]
        ok = sums.get(r["variant"], {}).get("within_2_points")
        out.append(
            f"| {r['variant']} | {r['fps']:.1f} ({'met' if keeps_up(r) else 'not met'}) | "
            f"{dropped_by_camera(r)} | "
            f"{_f(lat['median'])} / {_f(lat['max'])} "
            f"({_latency_verdict(lat['max'])}) | "
            f"{_f(delay_bound(r), '{:.1f}')} | "
            f"{r['peak_rss_mb']:.0f} ({'met' if r['peak_rss_mb'] < TARGET['rss_mb'] else 'not met'}) | "
            f"{'-' if ok is None else ('yes' if ok else 'no')} |"
        )
    out.append("")
    return out


def render(doc: dict[str, Any], acc: dict[str, Any] | None, notes: str | None) -> str:
    m = doc["machine"]
    lines = [
        "# postwatch performance",
        "",
        "Generated by `bench/report.py` from `bench/throughput.py` (and `bench/accuracy_levers.py`) JSON; "
        "do not edit by hand. Regenerate with `make performance` (bench/performance.sh), which runs:",
        "",
        "```sh",
        f".venv/bin/python {doc['command']} --json out/throughput.json",
        ".venv/bin/python bench/accuracy_levers.py --mode "
        + ",".join((acc or {}).get("summaries", {}) or ["plain", "fast"])
        + " --json out/accuracy_levers.json",
        ".venv/bin/python bench/report.py out/throughput.json --accuracy out/accuracy_levers.json "
        "--notes bench/performance_notes.md > docs/performance.md",
        "```",
        "",
        f"- date: {doc['date']}, revision {doc.get('revision')}",
        f"- machine: {m.get('cpus')} CPU cores ({m.get('cpu', '?')}), {m.get('memory_gb', '?')} GB, "
        f"{m.get('platform')}, Python {m.get('python')}; shared with other jobs, so compare ratios "
        "within one run",
        f"- harness: {doc['harness']}; each configuration in a fresh process; {doc['seconds']:g} s measured "
        f"after {doc['warmup_s']:g} s of warm-up, {doc.get('repeat', 1)} interleaved repeat(s), medians",
        f"- analysis rate {doc['analysis_fps']:g} fps per camera; camera i plays clip i of: "
        + ", ".join(f"`{c}`" for c in doc["clips"]),
        "- camera 0 is the chair clip with its post zone (examples/chair_clip.yaml, d1.reception.02 "
        "empty_s 0.5): its empty post raises an alert on every loop; the others are judged without zones",
        f"- whole run: {doc['wall_s'] / 60:.0f} min",
        "",
    ]
    lines += verdict(doc, acc)
    lines += throughput_tables(doc)
    if acc is not None:
        lines += accuracy_tables(acc)
    if notes:
        lines += [notes.strip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("throughput", help="JSON written by bench/throughput.py --json")
    parser.add_argument("--accuracy", default=None, help="JSON written by bench/accuracy_levers.py --json")
    parser.add_argument("--notes", default=None, help="a markdown file appended as is (levers, limits)")
    args = parser.parse_args(argv)
    doc = json.loads(Path(args.throughput).read_text())
    acc = json.loads(Path(args.accuracy).read_text()) if args.accuracy else None
    notes = Path(args.notes).read_text() if args.notes else None
    sys.stdout.write(render(doc, acc, notes) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
