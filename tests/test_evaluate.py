"""`postwatch evaluate`: interval matching and scoring on hand-written intervals, the labels reader,
missing and broken files, and one run over a handful of real files from ../shared/media."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import MEDIA, ROOT, make_pipeline, media_path, weights

from service.evaluate import (
    EventScore,
    Interval,
    LabelsError,
    Matching,
    can_match,
    clause_intervals,
    complement,
    evaluate,
    format_report,
    frames_to_intervals,
    load_labels,
    match_intervals,
    merge_intervals,
    overlap,
    score_photo_attributes,
    score_photo_clause,
)
from vision.observation import FrameObservation, Label, PersonObservation


def iv(a: float, b: float) -> Interval:
    return Interval(a, b)


# ----------------------------------------------------------------------------- matching, scores


def test_overlap_and_the_half_of_the_shorter_rule():
    assert overlap(iv(0, 4), iv(2, 6)) == 2
    assert overlap(iv(0, 1), iv(1, 2)) == 0  # touching is not overlapping
    assert can_match(iv(0, 10), iv(4, 5))  # a short prediction inside a long event
    assert can_match(iv(0, 2), iv(1, 3))  # exactly half of the shorter
    assert not can_match(iv(0, 2), iv(1.2, 3.2))  # 0.8 of 2 s: less than half
    assert not can_match(iv(0, 1), iv(1, 2))


def test_one_long_prediction_claims_one_true_event_only():
    m = match_intervals([iv(0, 2), iv(2.2, 4)], [iv(0, 4)])
    assert len(m.pairs) == 1 and len(m.missed) == 1 and m.extra == []


def test_a_split_prediction_counts_its_extra_piece_as_false_positive():
    m = match_intervals([iv(0, 10)], [iv(0, 4), iv(5, 10)])
    assert len(m.pairs) == 1 and m.missed == [] and len(m.extra) == 1
    assert m.pairs[0].pred == iv(5, 10)  # the larger overlap wins


def test_matching_is_maximum_not_greedy():
    # T1-P1 is the largest overlap, but taking it would leave T2 unmatched: T1 takes P2 instead.
    truth = [iv(0, 4), iv(4.5, 5.5)]
    pred = [iv(2, 5), iv(0, 1)]
    m = match_intervals(truth, pred)
    assert len(m.pairs) == 2 and m.missed == [] and m.extra == []
    assert {(p.truth, p.pred) for p in m.pairs} == {(iv(0, 4), iv(0, 1)), (iv(4.5, 5.5), iv(2, 5))}


def test_onset_and_end_errors_are_pred_minus_truth():
    m = match_intervals([iv(1.0, 5.0)], [iv(1.4, 4.5)])
    (pair,) = m.pairs
    assert pair.onset_error_s == pytest.approx(0.4)
    assert pair.end_error_s == pytest.approx(-0.5)


def test_event_score_pools_files():
    a = match_intervals([iv(0, 2), iv(5, 6)], [iv(0.2, 2.5), iv(8, 9)])  # 1 TP, 1 FN, 1 FP
    b = match_intervals([iv(1, 3)], [iv(0, 3.2)])  # 1 TP
    d = EventScore([a, b]).to_dict()
    assert (d["tp"], d["fp"], d["fn"], d["n_true"], d["n_pred"]) == (2, 1, 1, 3, 3)
    assert d["precision"] == pytest.approx(2 / 3, abs=1e-3)
    assert d["recall"] == pytest.approx(2 / 3, abs=1e-3)
    assert d["f1"] == pytest.approx(2 / 3, abs=1e-3)
    assert d["onset_error"] == {"median_s": 0.6, "worst_s": 1.0}  # |0.2| and |-1.0|
    assert d["end_error"] == {"median_s": 0.35, "worst_s": 0.5}


def test_empty_cases():
    none = EventScore([match_intervals([], [])]).to_dict()
    assert (none["precision"], none["recall"], none["f1"]) == (None, None, None)
    assert none["onset_error"] == {"median_s": None, "worst_s": None}
    missed = EventScore([match_intervals([iv(0, 1)], [])]).to_dict()
    assert (missed["precision"], missed["recall"], missed["f1"]) == (None, 0.0, 0.0)
    spurious = EventScore([match_intervals([], [iv(0, 1)])]).to_dict()
    assert (spurious["precision"], spurious["recall"], spurious["f1"]) == (0.0, None, None)
    assert EventScore([Matching()]).to_dict()["n_true"] == 0


def test_merge_then_drop():
    assert merge_intervals([iv(0, 0.2), iv(0.3, 0.5), iv(0.6, 0.8)]) == [iv(0, 0.8)]  # flickers merge first
    assert merge_intervals([iv(0, 1), iv(1.5, 2)]) == [iv(0, 1), iv(1.5, 2)]  # a 0.5 s gap stays a gap
    assert merge_intervals([iv(0, 1), iv(1.49, 2)]) == [iv(0, 2)]
    assert merge_intervals([iv(0, 0.25), iv(3, 4)]) == [iv(3, 4)]
    assert merge_intervals([]) == []


def test_frames_become_intervals_at_the_midpoints():
    times = [0.0, 0.2, 0.4, 0.6, 0.8]
    assert frames_to_intervals(times, [False, True, True, False, False], 1.0) == [iv(0.1, 0.5)]
    assert frames_to_intervals(times, [True, False, False, False, True], 1.0) == [iv(0.0, 0.1), iv(0.7, 1.0)]
    assert frames_to_intervals(times, [False] * 5, 1.0) == []


def test_complement_gives_absence():
    assert complement([iv(1, 2), iv(3, 4)], 0.0, 5.0) == [iv(0, 1), iv(2, 3), iv(4, 5)]
    assert complement([], 0.0, 2.0) == [iv(0, 2)]
    assert complement([iv(0, 2)], 0.0, 2.0) == []


# --------------------------------------------------------------------------------------- labels


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "labels.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shared_labels_file_reads():
    path = MEDIA / "labels.yaml"
    if not path.exists():
        pytest.skip("../shared/media/labels.yaml not found")
    labels = load_labels(path)
    chair = labels.videos["A_effiscan_person_chair_sit_stand_leave_upright.mp4"]
    assert "post" in chair.zones and chair.size == (480, 848)
    assert {e.kind for e in chair.events} >= {"present", "absent", "sitting", "standing"}
    assert labels.images["B_sicong_op_pic_4.jpg"]["phone"] == "holding_not_looking"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("videos: {a.mp4: {events: [{kind: sitting, start: 3, end: 1}]}}", "after start"),
        ("videos: {a.mp4: {events: [{kind: present, zone: post, start: 0, end: 1}]}}", "zone"),
        ("videos: {a.mp4: {events: [{start: 0, end: 1}]}}", "kind"),
        ("images: {a.jpg: 3}", "images.a.jpg"),
        ("images: [unclosed", "not valid YAML"),
    ],
)
def test_bad_labels_name_the_entry(tmp_path: Path, text: str, words: str):
    with pytest.raises(LabelsError, match=words):
        load_labels(write(tmp_path, text))


def test_missing_labels_file(tmp_path: Path):
    with pytest.raises(LabelsError, match="Cannot read"):
        load_labels(tmp_path / "nope.yaml")


# ------------------------------------------------------------------- missing and broken media


LABELS = """
images:
  gone.jpg: {people: 1, hands: at_sides}
videos:
  broken.mp4:
    events: [{kind: sitting, start: 0, end: 1}]
  absent.mp4:
    events: [{kind: salute, start: 0, end: 1}]
"""


def no_models(fps: float, track: bool):
    raise AssertionError("no file here should reach the models")


def test_missing_and_broken_files_are_reported_not_raised(tmp_path: Path):
    media = tmp_path / "media"
    media.mkdir()
    (media / "broken.mp4").write_bytes(b"this is not a video at all" * 10)
    report = evaluate(write(tmp_path, LABELS), media, pipeline_factory=no_models)
    status = {f["name"]: (f["status"], f.get("note", "")) for f in report["files"]}
    assert status["gone.jpg"][0] == "missing" and "not found" in status["gone.jpg"][1]
    assert status["absent.mp4"][0] == "missing"
    assert status["broken.mp4"][0] == "error" and "broken.mp4" in status["broken.mp4"][1]
    assert report["summary"] == {"files": 3, "evaluated": 0, "missing": 2, "errors": 1}
    assert report["videos"]["kinds"] == {} and report["images"]["attributes"] == {}


def test_a_missing_media_folder_is_a_note(tmp_path: Path):
    report = evaluate(write(tmp_path, LABELS), tmp_path / "nowhere", pipeline_factory=no_models)
    assert report["summary"]["missing"] == 3
    assert any("not found" in n for n in report["notes"])


def test_only_selects_by_name_or_glob_and_notes_unknown_names(tmp_path: Path):
    report = evaluate(
        write(tmp_path, LABELS), tmp_path, only=["*.mp4", "other.avi"], pipeline_factory=no_models
    )
    assert [f["name"] for f in report["files"]] == ["broken.mp4", "absent.mp4"]
    assert any("other.avi" in n for n in report["notes"])


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.evaluate", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_exits_0_on_missing_media_and_2_on_a_bad_labels_file(tmp_path: Path):
    res = cli("--labels", str(write(tmp_path, LABELS)), "--media", str(tmp_path / "nowhere"), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["summary"]["missing"] == 3
    res = cli("--labels", str(tmp_path / "nope.yaml"), "--media", str(tmp_path))
    assert res.returncode == 2 and "Cannot read labels file" in res.stderr and "Traceback" not in res.stderr


class FakePipeline:
    """Stands in for the models: every frame shows one seated person (a few frames in a fake clip)."""

    def process(self, frame) -> FrameObservation:
        h, w = frame.image.shape[:2]
        p = person(1, 300, posture="sitting", hands="at_sides")
        return FrameObservation("fake", frame.t, frame.index, w, h, [p])


def fake_media(tmp_path: Path) -> Path:
    import cv2

    media = tmp_path / "media"
    media.mkdir()
    cv2.imwrite(str(media / "still.png"), np.full((120, 80, 3), 90, np.uint8))
    writer = cv2.VideoWriter(str(media / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for k in range(30):  # 3 s
        writer.write(np.full((48, 64, 3), 8 * k, np.uint8))
    writer.release()
    return media


FAKE_LABELS = """
images:
  still.png: {people: 1, hands: at_sides}
videos:
  clip.mp4:
    events:
      - {kind: sitting, start: 0.0, end: 3.0}
      - {kind: juggling, start: 1.0, end: 2.0}
"""


def test_kinds_without_a_predictor_get_recall_0_and_a_note(tmp_path: Path):
    media = fake_media(tmp_path)
    report = evaluate(
        write(tmp_path, FAKE_LABELS), media, fps=5, pipeline_factory=lambda f, t: FakePipeline()
    )
    kinds = report["videos"]["kinds"]
    assert kinds["sitting"]["tp"] == 1 and kinds["sitting"]["recall"] == 1.0
    assert kinds["juggling"]["recall"] == 0.0 and kinds["juggling"]["precision"] is None
    assert "no predictor" in kinds["juggling"]["notes"][0]
    assert report["images"]["attributes"]["hands"]["accuracy"] == 1.0
    text = format_report(report)
    assert "juggling" in text and "no predictor" in text


def test_a_scoring_failure_is_reported_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import service.evaluate as ev

    def broken(*args):
        raise RuntimeError("rule exploded")

    monkeypatch.setattr(ev, "score_photo_attributes", broken)
    monkeypatch.setattr(ev, "predict_kind", broken)
    media = fake_media(tmp_path)
    report = evaluate(
        write(tmp_path, FAKE_LABELS), media, fps=5, pipeline_factory=lambda f, t: FakePipeline()
    )
    notes = {f["name"]: (f["status"], f.get("note", "")) for f in report["files"]}
    assert notes["still.png"] == ("error", "scoring failed: RuntimeError: rule exploded")
    assert notes["clip.mp4"][0] == "error" and "rule exploded" in notes["clip.mp4"][1]
    assert report["videos"]["kinds"] == {} and report["images"]["attributes"] == {}


def test_walking_threshold_is_the_rules_own():
    from rules.checks import WALK_BH_PER_S as RULES_WALK
    from service.evaluate import WALK_BH_PER_S

    assert WALK_BH_PER_S == RULES_WALK


# ------------------------------------------------------------- photo scoring on built observations


def person(track: int, height: float, **features: str) -> PersonObservation:
    p = PersonObservation(track, np.array([0.0, 0.0, 50.0, height]), 0.9)
    for name, value in features.items():
        setattr(p.features, name, Label(value, 0.8))
    return p


def frame(*persons: PersonObservation) -> FrameObservation:
    return FrameObservation("t", 0.0, 0, 640, 480, list(persons))


def test_photo_attributes_map_the_label_vocabulary():
    obs = frame(person(1, 300, hands="clasped_front", phone="looking"), person(2, 100, hands="on_hips"))
    label = {"people": 2, "hands": "both_at_chest", "phone": "looking_at_phone"}
    got = {r.attribute: r for r in score_photo_attributes("x.jpg", label, obs)}
    assert got["people"].right and got["hands"].right and got["phone"].right  # the tallest is the subject
    wrong = score_photo_attributes("x.jpg", {"people": 3, "hands": "on_hips", "tie": True}, obs)
    assert [r.right for r in wrong] == [False, False, False]


def test_photo_phone_count_counts_every_person():
    obs = frame(person(1, 300, phone="at_ear"), person(2, 290, phone="at_ear"), person(3, 200, phone="none"))
    (r,) = score_photo_attributes("x.jpg", {"phone": "at_ear", "count": 2}, obs)
    assert r.right and r.got == "at_ear x2"


def test_photo_clause_fires_with_sustain_0_and_odd_expectations_are_not_scored():
    obs = frame(person(1, 300, hands="on_hips", posture="standing"))
    r = score_photo_clause("x.jpg", {"expect": "violation", "clause": "d5.stance.01"}, obs)
    assert r is not None and r.fired and r.right and r.behaviours == ["on_hips"]
    r = score_photo_clause("x.jpg", {"expect": "no_violation", "clause": "d5.stance.01"}, obs)
    assert r is not None and r.right is False
    r = score_photo_clause("x.jpg", {"expect": "looks_fine", "clause": "d5.stance.01"}, obs)
    assert r is not None and r.right is None and "not machine-checkable" in r.note
    assert score_photo_clause("x.jpg", {"clause": "d5.stance.01"}, obs) is None


def test_a_clause_without_a_rule_is_listed_not_scored():
    from rules.catalogue import load_catalogue
    from rules.engine import RuleEngine

    # Rules land all the time: take whichever clause the engine still skips.
    unimplemented = [
        c for c in load_catalogue().clauses if c.id in RuleEngine("t", c.roles[0], clauses=[c.id]).skipped
    ]
    if not unimplemented:
        pytest.skip("every clause has a rule now")
    clause = unimplemented[0]
    obs = frame(person(1, 300, hands="on_hips", posture="standing"))
    r = score_photo_clause("x.jpg", {"expect": "violation", "clause": clause.id}, obs)
    assert r is not None and r.right is None and r.fired is None and "no rule" in r.note


def test_a_violation_event_is_scored_against_the_rule_engine():
    frames = []
    for k in range(51):  # 10 s at 5 fps, hands on the hips from 2 s to 9 s
        t = k * 0.2
        hands = "on_hips" if 2.0 <= t <= 9.0 + 1e-9 else "clasped_front"
        f = frame(person(1, 300, hands=hands, posture="standing"))
        f.t, f.index = t, k
        frames.append(f)
    (found,), note = clause_intervals(frames, "d5.stance.01")
    assert note is None
    assert found.start == pytest.approx(2.0) and found.end == pytest.approx(9.0)
    assert match_intervals([iv(2.0, 9.0)], [found]).pairs


def test_a_violation_event_needs_its_clause(tmp_path: Path):
    with pytest.raises(LabelsError, match="clause"):
        load_labels(write(tmp_path, "videos: {a.mp4: {events: [{kind: violation, start: 0, end: 1}]}}"))


# ------------------------------------------------------------------------- real media, real models

CHAIR = "A_effiscan_person_chair_sit_stand_leave_upright.mp4"
LOOKDOWN = "B_sicong_phone_lookdown_vid1.mp4"
CORRIDOR = "2_pexels4105024_woman_corridor_phone_call.mp4"
PHOTOS = [
    "C_sicong_op_pic_1.jpg",
    "C_sicong_op_pic_14.jpg",
    "1_ootd_woman_one_hand_on_hip.jpg",
    "1_pidm_woman_hand_on_hip_purple_dress.jpg",
    "1_stock_man_arms_crossed_street_watermarked.jpg",
    "B_sicong_op_pic_10.jpg",
]


@pytest.fixture(scope="module")
def report() -> dict:
    for name in (CHAIR, LOOKDOWN, CORRIDOR, *PHOTOS):
        media_path(name)
    weights()
    return evaluate(
        MEDIA / "labels.yaml",
        MEDIA,
        fps=3.0,
        only=[CHAIR, LOOKDOWN, CORRIDOR, *PHOTOS],
        pipeline_factory=lambda fps, track: make_pipeline(fps=fps, track=track),
    )


def unit(value) -> bool:
    return value is None or 0.0 <= value <= 1.0


def clip(report: dict, name: str) -> dict:
    return next(f for f in report["files"] if f["name"] == name)


@pytest.mark.media
@pytest.mark.model
def test_report_structure(report: dict):
    assert report["summary"] == {"files": 9, "evaluated": 9, "missing": 0, "errors": 0}
    kinds = report["videos"]["kinds"]
    assert set(kinds) == {"present", "absent", "sitting", "standing", "phone_look", "phone_call"}
    for score in kinds.values():
        assert all(unit(score[k]) for k in ("precision", "recall", "f1"))
        assert score["tp"] + score["fn"] == score["n_true"] and score["tp"] + score["fp"] == score["n_pred"]
    attrs = report["images"]["attributes"]
    assert {"people", "hands", "phone"} <= set(attrs)
    assert all(unit(a["accuracy"]) for a in attrs.values())
    assert {"d5.stance.01", "d1.floor.11"} <= set(report["images"]["clauses"])
    json.dumps(report)  # JSON-ready as it is


@pytest.mark.media
@pytest.mark.model
def test_chair_clip_presence_and_sitting(report: dict):
    present = clip(report, CHAIR)["kinds"]["present@post"]
    assert present["tp"] == 1 and abs(present["matched"][0]["onset_error_s"]) < 1.0
    sitting = clip(report, CHAIR)["kinds"]["sitting"]
    assert sitting["tp"] / (sitting["tp"] + sitting["fn"]) >= 0.5


@pytest.mark.media
@pytest.mark.model
def test_corridor_call_and_photo_hands(report: dict):
    assert clip(report, CORRIDOR)["kinds"]["phone_call"]["tp"] == 1
    assert report["images"]["attributes"]["hands"]["accuracy"] >= 0.8


@pytest.mark.media
@pytest.mark.model
def test_the_command_prints_a_table():
    name = "C_sicong_op_pic_14.jpg"
    media_path(name)
    labels = str(MEDIA / "labels.yaml")
    res = cli("--labels", labels, "--media", str(MEDIA), "--only", name, "--weights", weights(), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "hands" in res.stdout and "accuracy" in res.stdout
