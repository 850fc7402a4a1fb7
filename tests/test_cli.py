"""The `postwatch` command end to end, as a user runs it (a subprocess, real models, real media)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, media_path, weights


def postwatch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_lists_the_commands():
    res = postwatch("--help")
    assert res.returncode == 0
    for command in ("inspect", "analyze", "clauses", "evaluate", "calibrate", "serve", "keys"):
        assert command in res.stdout


def test_clauses_json_has_every_clause_with_chinese_text():
    res = postwatch("clauses", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    ids = {c["id"] for c in data}
    assert {"d5.stance.01", "d1.floor.03", "d1.reception.02"} <= ids
    assert "叉腰" in json.dumps(data, ensure_ascii=False)


def test_clauses_unknown_role_is_one_clear_line():
    res = postwatch("clauses", "--role", "astronaut")
    assert res.returncode == 2
    assert "astronaut" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.model
def test_inspect_zidane_json():
    from vision.demo import bundled_image

    res = postwatch("inspect", str(bundled_image("zidane.jpg")), "--json", "--weights", weights())
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert len(data["persons"]) >= 2
    left = min(data["persons"], key=lambda p: p["box"][0])
    assert left["features"]["objects"].get("tie", 0) > 0.2


@pytest.mark.model
def test_inspect_prints_a_readable_table():
    res = postwatch("inspect", str(media_path("C_sicong_op_pic_1.jpg")), "--weights", weights())
    assert res.returncode == 0, res.stderr
    assert "clasped_behind" in res.stdout and "posture" in res.stdout


@pytest.mark.parametrize(
    ("content", "suffix", "words"),
    [(b"", ".mp4", "empty"), (b"this is not a video\n" * 50, ".mp4", "not")],
)
def test_broken_files_end_with_a_clear_message(tmp_path: Path, content: bytes, suffix: str, words: str):
    bad = tmp_path / f"broken{suffix}"
    bad.write_bytes(content)
    res = postwatch("analyze", str(bad), "--out", str(tmp_path / "out"), "--no-progress")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert str(bad.name) in res.stderr and words in res.stderr.lower()


def test_missing_file_ends_with_a_clear_message(tmp_path: Path):
    res = postwatch("inspect", str(tmp_path / "nope.jpg"))
    assert res.returncode == 2 and "Traceback" not in res.stderr and "nope.jpg" in res.stderr


def test_missing_weights_say_how_to_provide_them(tmp_path: Path):
    img = tmp_path / "x.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    res = postwatch("inspect", str(img), "--weights", str(tmp_path / "missing.pt"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "weights" in res.stderr.lower()


@pytest.mark.model
def test_analyze_demo_writes_alerts_snapshots_observations_and_video(tmp_path: Path):
    import cv2

    out = tmp_path / "demo"
    res = postwatch(
        "analyze", "demo", "--out", str(out), "--dump", "--annotate", "--no-progress", "--weights", weights()
    )
    assert res.returncode == 0, res.stderr
    alerts = [json.loads(line) for line in (out / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert alerts, res.stdout
    for alert in alerts:
        assert {"clause", "camera", "track_id", "start_s", "end_s", "message"} <= alert.keys()
        assert alert["end_s"] >= alert["start_s"]
        assert (out / alert["snapshot"]).is_file()
    # The man with folded arms in bus.jpg holds them the whole clip.
    assert any(a["clause"] == "d5.stance.01" and "抱胸" in a["message"] for a in alerts)
    frames = (out / "observations.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(frames) >= 35 and json.loads(frames[0])["persons"]
    video = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == len(frames)


@pytest.mark.model
def test_analyze_mpg_whose_container_lies_about_its_frame_count(tmp_path: Path):
    res = postwatch(
        "analyze", str(media_path("E_caviar_OneLeaveShop1front.mpg")), "--out", str(tmp_path), "--fps", "1",
        "--dump", "--no-progress", "--weights", weights(),
    )  # fmt: skip
    # Analysed to the end, then exit 3 with a clear warning: the container is not sound.
    assert res.returncode == 3, res.stderr
    assert "claims 3 frames" in res.stderr and "Traceback" not in res.stderr
    last = json.loads((tmp_path / "observations.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    assert last["t"] >= 11.0  # decoded to the end (the header claims 3 frames)


@pytest.mark.model
def test_analyze_with_the_chair_site_raises_one_post_abandonment(tmp_path: Path):
    media_path("A_effiscan_person_chair_sit_stand_leave_upright.mp4")
    site = ROOT / "examples" / "chair_clip.yaml"
    res = postwatch(
        "analyze",
        "chair",
        "--site",
        str(site),
        "--out",
        str(tmp_path),
        "--no-progress",
        "--weights",
        weights(),
    )
    assert res.returncode == 0, res.stderr
    alerts = [
        json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    empty = [a for a in alerts if a["clause"] == "d1.reception.02"]
    assert len(empty) == 1 and empty[0]["track_id"] is None
    assert 9.3 <= empty[0]["start_s"] <= 10.5
    assert json.loads((tmp_path / "reports.json").read_text(encoding="utf-8"))["absences"]


@pytest.mark.model
def test_analyze_a_site_camera_whose_source_is_the_demo(tmp_path: Path):
    res = postwatch(
        "analyze", "front", "--site", str(ROOT / "examples" / "demo.yaml"), "--out", str(tmp_path),
        "--no-progress", "--weights", weights(),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "alerts.jsonl").exists()


def test_a_broken_site_file_is_one_clear_line(tmp_path: Path):
    bad = tmp_path / "site.yaml"
    bowtie = "{name: p, kind: post, polygon: [[0,0],[1,1],[0,1],[1,0]], role: front_desk}"
    bad.write_text(f"cameras:\n  - id: a\n    source: x.mp4\n    zones:\n      - {bowtie}\n")
    res = postwatch("analyze", "a", "--site", str(bad), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "Traceback" not in res.stderr and "self-intersecting" in res.stderr


@pytest.mark.model
def test_enrolled_uniform_flags_the_person_on_post_who_does_not_wear_it(tmp_path: Path):
    """Enrol the maroon T-shirt of the lookdown clip as the front desk's uniform; the boy in navy
    who stands at the chair clip's post is then out of uniform (d1.image.01)."""
    import yaml

    chair = media_path("A_effiscan_person_chair_sit_stand_leave_upright.mp4")
    site = yaml.safe_load((ROOT / "examples" / "chair_clip.yaml").read_text(encoding="utf-8"))
    site["cameras"][0]["source"] = str(chair)
    site["clauses"] = {"d1.image.01": {"sustain_s": 2.0}}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site, allow_unicode=True), encoding="utf-8")
    maroon = media_path("B_sicong_phone_lookdown_vid1.mp4")
    res = postwatch(
        "calibrate",
        "uniform",
        "--role",
        "front_desk",
        "--site",
        str(path),
        str(maroon),
        "--weights",
        weights(),
    )
    assert res.returncode == 0, res.stderr
    res = postwatch(
        "analyze",
        "chair",
        "--site",
        str(path),
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
        "--weights",
        weights(),
    )
    assert res.returncode == 0, res.stderr
    alerts = [
        json.loads(line)
        for line in (tmp_path / "o" / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    uniform = [a for a in alerts if a["clause"] == "d1.image.01"]
    assert len(uniform) == 1 and uniform[0]["details"]["match"] < 0.5, alerts


def test_keys_create_prints_a_key_once_and_stores_only_its_hash(tmp_path: Path):
    import sqlite3

    db = tmp_path / "k.db"
    res = postwatch("keys", "create", "--role", "trainer", "--site", "chair-demo", "--db", str(db))
    assert res.returncode == 0, res.stderr
    key = res.stdout.strip()
    assert key.startswith("pw_")
    dump = "\n".join(sqlite3.connect(db).iterdump())
    secret = key.split("_", 2)[2]  # the secret itself may hold "_"
    assert len(secret) >= 20 and secret not in dump


def test_keys_create_rejects_an_unknown_role(tmp_path: Path):
    res = postwatch("keys", "create", "--role", "boss", "--site", "x", "--db", str(tmp_path / "k.db"))
    assert res.returncode == 2 and "Traceback" not in res.stderr and "boss" in res.stderr


@pytest.mark.parametrize(
    "db",
    ["postgresql://postwatch@127.0.0.1:1/nowhere", "nosuchdialect://x"],
    ids=["refused", "not-a-database-url"],
)
def test_a_database_that_cannot_be_opened_is_one_line_not_a_traceback(db: str):
    """Before the models load: a wrong --db costs the user two seconds, not a model load."""
    site = str(ROOT / "examples" / "chair_clip.yaml")
    for args in (
        ("serve", "--site", site, "--db", db),
        ("keys", "create", "--role", "admin", "--site", "x", "--db", db),
    ):
        res = postwatch(*args, timeout=60)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
        assert "postwatch: cannot open the database:" in res.stderr


def test_a_database_folder_that_cannot_be_made_and_a_negative_rate_are_one_line(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = postwatch("keys", "create", "--role", "admin", "--site", "x", "--db", str(blocker / "sub" / "k.db"))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "cannot create the folder" in res.stderr and str(blocker / "sub") in res.stderr
    res = postwatch("analyze", "demo", "--out", str(tmp_path / "out"), "--fps", "-1", timeout=60)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "--fps" in res.stderr
