"""A track's posture voted over a short window (vision.smooth)."""

from __future__ import annotations

from vision.observation import Label
from vision.smooth import LabelVote

ST, SI, LY = Label("standing", 0.6), Label("sitting", 0.9), Label("lying", 0.7)


def voted(vote: LabelVote, labels: list[Label], track_id: int = 1, fps: float = 5.0) -> list[str]:
    return [vote.vote(track_id, i / fps, lab).value for i, lab in enumerate(labels)]


def test_a_one_frame_flip_is_outvoted_and_a_held_change_wins_one_frame_late():
    # The doorbell clip's bent-over man: standing, one frame of lying, standing again; then he
    # really sits down.
    got = voted(LabelVote(0.4), [ST, ST, LY, ST, ST, SI, SI, SI])
    assert got == ["standing"] * 6 + ["sitting"] * 2


def test_unknown_frames_stay_unknown_and_do_not_vote():
    vote = LabelVote(0.4)
    got = voted(vote, [ST, Label(), SI, SI])
    assert got == ["standing", "unknown", "sitting", "sitting"]  # 1 standing against 2 sitting


def test_ties_go_to_the_current_frame_and_confidence_reflects_the_share():
    vote = LabelVote(0.4)
    assert vote.vote(1, 0.0, ST).value == "standing"
    tie = vote.vote(1, 0.2, SI)
    assert tie.value == "sitting" and tie.confidence == 0.45  # 0.9 of its one reading, over 2
    held = vote.vote(1, 0.4, SI)
    assert held.value == "sitting" and held.confidence == 0.6  # two sitting readings of three


def test_tracks_vote_apart_and_a_clock_going_back_starts_again():
    vote = LabelVote(0.4)
    voted(vote, [SI, SI, SI], track_id=1)
    assert vote.vote(2, 0.6, ST).value == "standing"  # another person: their own window
    assert vote.vote(1, 0.0, ST).value == "standing"  # a looped file: the old readings are dropped
    vote.forget({2})
    assert vote.vote(1, 0.2, LY).value == "lying"


def test_a_zero_window_reads_every_frame_on_its_own():
    assert voted(LabelVote(0.0), [ST, LY, ST]) == ["standing", "lying", "standing"]
