"""The benchmark scripts' own logic (no models, no timings): variant names, reused plain figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import ROOT

if str(ROOT) not in sys.path:  # bench/ is scripts beside the packages, not installed
    sys.path.insert(0, str(ROOT))

from bench.accuracy_levers import main as accuracy_main  # noqa: E402
from bench.report import accuracy_tables, keeps_up  # noqa: E402
from bench.throughput import Variant  # noqa: E402


def test_variant_names_switch_the_levers_they_name():
    assert Variant.parse("fast-clock").overrides == {"frame_clock": False}
    assert Variant.parse("fast+crops5").overrides == {"wrist_every": 5}
    plain_clock = Variant.parse("plain+track")
    # A lever on plain switches every default lever off first, the frame clock among them.
    assert plain_clock.overrides["frame_clock"] is False and plain_clock.overrides["pose_track"] is True
    with pytest.raises(ValueError, match="unknown lever"):
        Variant.parse("fast+warp9")
    # This session's levers: plain's baseline keeps the old values, each lever alone sets one.
    assert Variant.parse("fast-videosz").overrides == {"video_imgsz": 640}
    assert Variant.parse("fast-budget").overrides == {"pose_budget": 0}
    assert (Variant.parse("fast").decode_threads, Variant.parse("plain").decode_threads) == (1, 0)
    assert Variant.parse("fast+queue4").queue_size == 4 and Variant.parse("fast").queue_size is None
    alone = Variant.parse("plain+videosz").overrides
    assert alone["video_imgsz"] == 544 and alone["pose_budget"] == 0
    # Two levers on plain: both stay on (the second used to switch the first off again).
    both = Variant.parse("plain+retry+backoff").overrides
    assert both["pose_retry_s"] == 0.6 and both["pose_retry_doublings"] == 2 and both["pose_budget"] == 0
    assert Variant.parse("plain+every3+slow").overrides["detect_every"] == 3
    assert Variant.parse("fast-backoff").overrides == {"pose_retry_doublings": 0}
    assert Variant.parse("fast-wristvideo").overrides == {"wrist_video_imgsz": 640}
    assert Variant.parse("fast+wristvideo320").overrides == {"wrist_video_imgsz": 320}


def test_the_frame_rate_is_met_by_40_counted_or_by_every_camera_keeping_up():
    assert keeps_up({"fps": 40.0, "dropped": 5, "rtf_min_camera": 0.9})
    # 74 of 75 frames of a paced camera in the window, nothing dropped: it kept up.
    assert keeps_up({"fps": 39.9, "dropped": 0, "rtf_min_camera": 0.987})
    assert not keeps_up({"fps": 39.9, "dropped": 3, "rtf_min_camera": 0.987})
    assert not keeps_up({"fps": 39.2, "dropped": 0, "rtf_min_camera": 0.95})


def test_plain_from_a_file_without_plain_is_one_line(tmp_path: Path):
    bad = tmp_path / "acc.json"
    bad.write_text(json.dumps({"summaries": {"fast": {}}, "reports": {}}))
    with pytest.raises(SystemExit, match="no plain run in it"):
        accuracy_main(["--mode", "fast", "--plain-from", str(bad)])
    with pytest.raises(SystemExit, match="no plain run in it"):
        accuracy_main(["--mode", "fast", "--plain-from", str(tmp_path / "missing.json")])


def test_the_report_says_where_plain_came_from():
    summary = {
        "video_kinds_f1": 50.0,
        "video_clauses_f1": None,
        "photo_attributes": 90.0,
        "photo_clauses": 80.0,
        "delta_points": dict.fromkeys(
            ("video_kinds_f1", "video_clauses_f1", "photo_attributes", "photo_clauses"), 0.0
        ),
        "within_2_points": True,
        "kinds_tp_fp_fn": {},
        "seconds": 1.0,
    }
    acc = {
        "labels": "l.yaml",
        "fps": 5.0,
        "date": "2026-11-28",
        "revision": "abc",
        "summaries": {"plain": summary},
    }
    assert "earlier run" not in "\n".join(accuracy_tables(acc))
    acc["plain_from"] = ["out/old.json", "0123abc"]
    assert "earlier run at 0123abc" in "\n".join(accuracy_tables(acc))


def test_figures_give_each_cameras_rate_and_the_slowest_cameras_share():
    """Between two snapshots: frames a second in all, per camera (the camera that holds the
    total under the target shows by name), the slowest camera's share of the analysis rate, and
    the frames each camera dropped (all cameras at once: a process-wide stall; one: its own cost)."""
    from bench.throughput import _figures

    def snapshot(wall: float, frames: dict[str, int], dropped: dict[str, int]) -> dict:
        return {
            "wall": wall, "cpu": wall, "frames": sum(frames.values()), "dropped": sum(dropped.values()),
            "per_camera": frames, "dropped_per_camera": dropped,
            "stages_ms": {}, "counts": {}, "rules_ms": 0.0, "decode_ms": 0.0, "decoded": 0,
        }  # fmt: skip

    a = snapshot(100.0, {"cam0": 10, "cam1": 10}, {"cam0": 3, "cam1": 0})
    b = snapshot(110.0, {"cam0": 60, "cam1": 45}, {"cam0": 3, "cam1": 4})
    r = _figures(Variant.parse("fast"), 2, a, b, [], 1024 * 1024, 1.0)
    assert r["fps"] == 8.5 and r["fps_per_camera"] == {"cam0": 5.0, "cam1": 3.5}
    assert r["rtf_min_camera"] == 0.7
    assert r["dropped"] == 4 and r["dropped_per_camera"] == {"cam0": 0, "cam1": 4}


def test_the_target_table_names_the_cameras_that_dropped_frames():
    """Dropped frames by camera, most first: a stall of the whole process shows on every camera,
    one dear camera alone on itself."""
    from bench.report import dropped_by_camera

    r = {"dropped": 9, "dropped_per_camera": {"cam0": 1, "cam1": 7, "cam2": 1, "cam3": 0}}
    assert dropped_by_camera(r) == "9 (cam1 7, cam0 1, cam2 1)"
    assert dropped_by_camera({"dropped": 0, "dropped_per_camera": {"cam0": 0}}) == "0"
    assert dropped_by_camera({"dropped": 3}) == "3"  # a JSON from before the split
