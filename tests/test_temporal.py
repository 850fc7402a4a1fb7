"""Tests for the temporal gate: sequences at 5 fps (t = i * 0.2) with exact expected times.

Patterns are strings, one character a frame slot: T = True, F = False,
? = None (unknown), . = missing frame (no update, time passes).
"""

from __future__ import annotations

import pytest

from rules.temporal import Gate, GateBank, GateEvent, TemporalParams
from rules.violation import Violation

DT = 0.2
STATES = {"T": True, "F": False, "?": None}


def feed(gate: Gate, pattern: str, t0: float = 0.0, dt: float = DT) -> list[GateEvent]:
    """Feed `pattern` to `gate` from `t0`; returns the events in order."""
    events = []
    for i, ch in enumerate(pattern.replace(" ", "")):
        if ch == ".":
            continue
        event = gate.update(t0 + i * dt, STATES[ch])
        if event is not None:
            events.append(event)
    return events


def summary(events: list[GateEvent]) -> list[tuple]:
    return [(e.kind, e.start_s, e.end_s, e.t) for e in events]


def approx_events(expected: list[tuple]) -> list[tuple]:
    return [
        (k, pytest.approx(s), None if e is None else pytest.approx(e), pytest.approx(t))
        for k, s, e, t in expected
    ]


def P(**kw) -> TemporalParams:
    kw.setdefault("cooldown_s", 60.0)
    return TemporalParams(**kw)


# -- sustain ----------------------------------------------------------------


@pytest.mark.parametrize("sustain", [0.0, 0.2, 1.0, 2.0, 5.0])
def test_opens_exactly_at_start_plus_sustain(sustain):
    gate = Gate(P(sustain_s=sustain))
    events = feed(gate, "FFF" + "T" * 40)
    start = 3 * DT
    assert summary(events) == approx_events([("opened", start, None, start + sustain)])
    assert gate.is_open and gate.start_s == pytest.approx(start)


def test_sustain_not_reached_does_not_open():
    gate = Gate(P(sustain_s=5.0))
    assert feed(gate, "T" * 25) == []  # last frame t=4.8: 4.8 s held
    assert gate.is_pending and not gate.is_open
    event = gate.update(25 * DT, True)
    assert event is not None and event.kind == "opened" and event.t == pytest.approx(5.0)


def test_single_frame_with_zero_sustain_opens():
    gate = Gate(P(sustain_s=0.0))
    event = gate.update(0.0, True, confidence=0.8)
    assert event == GateEvent("opened", 0.0, None, 0.0, 0.8, 0.0, None)
    assert gate.is_open


def test_single_frame_with_sustain_does_not_open():
    assert Gate(P(sustain_s=5.0)).update(0.0, True) is None


# -- grace ------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        "TTTTT" + "FF" + "T" * 20,  # two-frame dropout: gap 0.6 s from the last True
        "TTTTT" + ".." + "T" * 20,  # two missing frames: a time jump of 0.6 s
        "TTTTT" + "FFF" + "T" * 20,  # gap 0.8 s
        "TTTTT" + "F.F" + "T" * 20,  # False and missing frames mixed
    ],
)
def test_grace_bridges_short_dropouts(pattern):
    gate = Gate(P(sustain_s=2.0, grace_s=1.0))
    events = feed(gate, pattern)
    assert summary(events) == approx_events([("opened", 0.0, None, 2.0)])


@pytest.mark.parametrize(
    ("pattern", "new_start"),
    [
        ("TTTTT" + "FFFFF" + "T" * 20, 2.0),  # False until 1.8 = last True (0.8) + grace: run dropped
        ("TTTTT" + "FFFF" + "T" * 20, 1.8),  # True at exactly last True + grace: not "shorter than"
        ("TTTTT" + "....." + "T" * 20, 2.0),  # five missing frames: gap 1.2 s
    ],
)
def test_gap_of_grace_or_more_resets_pending_run(pattern, new_start):
    gate = Gate(P(sustain_s=2.0, grace_s=1.0))
    events = feed(gate, pattern)
    assert summary(events) == approx_events([("opened", new_start, None, new_start + 2.0)])


def test_false_does_not_open_and_run_resumes_only_on_true():
    gate = Gate(P(sustain_s=1.0, grace_s=1.0))
    # True 0..0.6, False 0.8..1.2: the sustain elapses on a False frame, the open waits for the next True
    events = feed(gate, "TTTT" + "FFF" + "T")
    assert summary(events) == approx_events([("opened", 0.0, None, 1.4)])


# -- closing and hysteresis ---------------------------------------------------


def test_open_violation_closes_after_clear_with_end_at_last_true():
    gate = Gate(P(sustain_s=0.0, grace_s=1.0))
    events = feed(gate, "TTT" + "F" * 10)
    # last True 0.4; closes on the first False at >= 0.4 + 1.0
    assert summary(events) == approx_events([("opened", 0.0, None, 0.0), ("closed", 0.0, 0.4, 1.4)])
    assert not gate.is_open and not gate.is_pending


def test_open_violation_closes_on_true_after_long_missing_gap():
    gate = Gate(P(sustain_s=0.0, grace_s=1.0, cooldown_s=0.0))
    events = feed(gate, "TTT" + "......" + "TT")
    # True at 0.4, then nothing until 1.8 (gap 1.4): the violation ended at 0.4, a new run starts at 1.8
    # and (one event per frame) opens on the next True frame
    assert summary(events) == approx_events(
        [("opened", 0.0, None, 0.0), ("closed", 0.0, 0.4, 1.8), ("opened", 1.8, None, 2.0)]
    )


@pytest.mark.parametrize(
    ("clear_s", "expected"),
    [
        # gap from last True (0.8) to next True (2.4) is 1.6 s: clear 2.0 bridges it
        (2.0, [("opened", 0.0, None, 0.0), ("closed", 0.0, 3.8, 5.8)]),
        # default clear = grace = 1.0: the False at 1.8 closes it
        (None, [("opened", 0.0, None, 0.0), ("closed", 0.0, 0.8, 1.8)]),
    ],
)
def test_hysteresis_clear_longer_than_grace(clear_s, expected):
    gate = Gate(P(sustain_s=0.0, grace_s=1.0, clear_s=clear_s, cooldown_s=60.0))
    events = feed(gate, "TTTTT" + "FFFFFFF" + "TTTTTTTT" + "F" * 20)
    assert summary(events) == approx_events(expected)


def test_clear_shorter_than_grace_closes_open_violation_sooner():
    gate = Gate(P(sustain_s=0.0, grace_s=1.0, clear_s=0.4))
    events = feed(gate, "TT" + "FFFF")
    assert summary(events) == approx_events([("opened", 0.0, None, 0.0), ("closed", 0.0, 0.2, 0.6)])


# -- unknown (None) -------------------------------------------------------------


def test_none_frames_never_open():
    gate = Gate(P(sustain_s=0.0))
    assert feed(gate, "?" * 30) == []
    assert not gate.is_pending and not gate.is_open


def test_none_frames_do_not_close_an_open_violation():
    gate = Gate(P(sustain_s=0.0, grace_s=1.0))
    # 2 s of unknown between True frames (under stale = 5 s): one continuous violation
    events = feed(gate, "TTT" + "?" * 10 + "TTT")
    assert summary(events) == approx_events([("opened", 0.0, None, 0.0)])
    assert gate.is_open and gate.last_bad_s == pytest.approx(3.0)


def test_none_frames_do_not_reset_a_pending_run_nor_count_towards_sustain():
    gate = Gate(P(sustain_s=1.0, grace_s=1.0))
    # True 0..0.4 (0.4 s held), unknown 0.6..2.4 (clock frozen), True from 2.6: held 0.6 s at 2.6,
    # so the sustain of 1.0 completes at 3.0; start_s stays 0.0
    events = feed(gate, "TTT" + "?" * 10 + "T" * 10)
    assert summary(events) == approx_events([("opened", 0.0, None, 3.0)])


def test_false_after_none_counts_only_known_time():
    gate = Gate(P(sustain_s=0.0, grace_s=1.0))
    # last True 0.4; False 0.6, 0.8 (0.4 s); unknown to 2.8; False from 3.0 adds 0.2 s per frame
    events = feed(gate, "TTT" + "FF" + "?" * 10 + "F" * 10)
    # known time since last True reaches 1.0 at the third False after the unknown run: t = 3.4
    assert summary(events) == approx_events([("opened", 0.0, None, 0.0), ("closed", 0.0, 0.4, 3.4)])


def test_only_none_for_stale_closes_at_last_true():
    gate = Gate(P(sustain_s=0.0, grace_s=1.0))  # stale = max(1, 1) * 5 = 5 s
    events = feed(gate, "TT" + "?" * 40)
    # last known frame 0.2: the None at 5.2 makes it stale
    assert summary(events) == approx_events([("opened", 0.0, None, 0.0), ("closed", 0.0, 0.2, 5.2)])


def test_stale_drops_a_pending_run():
    gate = Gate(P(sustain_s=1.0, grace_s=1.0, stale_s=2.0))
    events = feed(gate, "TT" + "?" * 10 + "TTTTTT")
    # stale at 2.2 drops the run started at 0; the new run starts at 2.4 and opens at 3.4
    assert summary(events) == approx_events([("opened", 2.4, None, 3.4)])


# -- cooldown -------------------------------------------------------------------


@pytest.mark.parametrize("sustain", [0.0, 1.0])
def test_cooldown_suppresses_reopen_until_end_plus_cooldown(sustain):
    gate = Gate(P(sustain_s=sustain, grace_s=1.0, cooldown_s=3.0))
    first = "T" * 8  # 0..1.4
    events = feed(gate, first + "FFFFF" + "T" * 30)
    end = 1.4
    opened_at = sustain
    closed_at = end + 1.0
    # the new run starts at 2.6 (first True after the close) and may open at end + cooldown = 4.4
    assert summary(events) == approx_events(
        [("opened", 0.0, None, opened_at), ("closed", 0.0, end, closed_at), ("opened", 2.6, None, 4.4)]
    )
    assert gate.cooldown_until == pytest.approx(4.4)


def test_cooldown_passed_reopens_after_sustain():
    gate = Gate(P(sustain_s=1.0, grace_s=1.0, cooldown_s=0.4))
    events = feed(gate, "T" * 6 + "FFFFF" + "T" * 10)
    # opened 1.0, closed at 2.0 (end 1.0), cooldown ends 1.4; new run from 2.2 needs its own 1 s: 3.2
    assert summary(events) == approx_events(
        [("opened", 0.0, None, 1.0), ("closed", 0.0, 1.0, 2.0), ("opened", 2.2, None, 3.2)]
    )


def test_dropped_pending_run_sets_no_cooldown():
    gate = Gate(P(sustain_s=1.0, grace_s=0.4, cooldown_s=60.0))
    events = feed(gate, "TT" + "FFF" + "T" * 6)
    assert summary(events) == approx_events([("opened", 1.0, None, 2.0)])


# -- repeat -------------------------------------------------------------------


def test_repeat_emits_updates_while_open():
    gate = Gate(P(sustain_s=0.0, repeat_s=1.0))
    events = feed(gate, "T" * 16)
    assert [(e.kind, pytest.approx(e.t)) for e in events] == [
        ("opened", pytest.approx(0.0)),
        ("updated", pytest.approx(1.0)),
        ("updated", pytest.approx(2.0)),
        ("updated", pytest.approx(3.0)),
    ]
    assert all(e.start_s == 0.0 and e.end_s is None for e in events)


def test_no_repeat_by_default():
    assert [e.kind for e in feed(Gate(P(sustain_s=0.0)), "T" * 50)] == ["opened"]


# -- finish -------------------------------------------------------------------


def test_finish_closes_open_violation_at_last_true():
    gate = Gate(P(sustain_s=0.0))
    feed(gate, "TTTFF")
    event = gate.finish(10.0)
    assert event is not None
    assert (event.kind, event.start_s, event.end_s, event.t) == ("closed", 0.0, pytest.approx(0.4), 10.0)
    assert not gate.is_open and gate.finish(11.0) is None


def test_finish_drops_pending_run():
    gate = Gate(P(sustain_s=5.0))
    feed(gate, "TTT")
    assert gate.is_pending
    assert gate.finish(1.0) is None
    assert not gate.is_pending and gate.start_s is None


# -- confidence and best frame ---------------------------------------------------


def test_confidence_is_mean_of_true_frames_and_best_t_is_max_score():
    gate = Gate(P(sustain_s=0.8, grace_s=1.0))
    frames = [
        (True, 0.5, 1.0),
        (False, 0.1, 9.0),
        (True, 0.7, 3.0),
        (True, 0.9, 2.0),
        (True, 0.6, 0.5),
        (True, 0.8, 1.0),
    ]
    events = [gate.update(i * DT, s, c, sc) for i, (s, c, sc) in enumerate(frames)]
    opened = events[4]
    assert opened is not None and opened.kind == "opened" and opened.t == pytest.approx(0.8)
    # the False frame's 0.1 is not counted
    assert opened.confidence == pytest.approx((0.5 + 0.7 + 0.9 + 0.6) / 4)
    assert opened.best_t == pytest.approx(0.4) and opened.best_score == 3.0
    closed = gate.finish(2.0)
    assert closed is not None
    assert closed.confidence == pytest.approx((0.5 + 0.7 + 0.9 + 0.6 + 0.8) / 5)
    assert closed.best_t == pytest.approx(0.4)


def test_best_t_falls_back_to_highest_confidence():
    gate = Gate(P(sustain_s=0.0))
    for i, conf in enumerate([0.4, 0.9, 0.6]):
        gate.update(i * DT, True, conf)
    event = gate.finish(1.0)
    assert event is not None and event.best_t == pytest.approx(0.2) and event.best_score is None


def test_new_run_resets_confidence_and_best():
    gate = Gate(P(sustain_s=0.0, cooldown_s=0.0))
    gate.update(0.0, True, 0.9, 5.0)
    gate.update(2.0, False)  # closes (end 0.0)
    gate.update(2.2, True, 0.3, 1.0)
    assert gate.confidence == pytest.approx(0.3) and gate.best_t == pytest.approx(2.2)


# -- params -------------------------------------------------------------------


def test_params_from_mapping_ignores_unknown_keys_and_defaults():
    p = TemporalParams.from_params({"sustain_s": 3, "clear_s": 2.5, "max_angle_deg": 20, "repeat_s": None})
    assert p == TemporalParams(sustain_s=3.0, clear_s=2.5)
    assert p.clear == 2.5 and p.stale == pytest.approx(12.5)
    d = TemporalParams()
    got = (d.sustain_s, d.grace_s, d.clear, d.cooldown_s, d.repeat_s, d.stale)
    assert got == (5.0, 1.0, 1.0, 60.0, None, 5.0)


@pytest.mark.parametrize("bad", [{"sustain_s": -1.0}, {"grace_s": float("nan")}, {"repeat_s": 0.0}])
def test_params_reject_invalid(bad):
    with pytest.raises(ValueError):
        TemporalParams(**bad)


def test_event_to_violation():
    event = GateEvent("closed", 1.0, 4.0, 5.0, 0.75, 2.0, 0.9)
    v = event.to_violation("d5.stance.01", "cam1", 7, "slouching", {"lean": 30})
    assert v == Violation("d5.stance.01", "cam1", 7, 1.0, 4.0, 0.75, "slouching", {"lean": 30}, 2.0)
    assert not v.open and v.duration() == pytest.approx(3.0)


# -- GateBank -------------------------------------------------------------------


def make_bank(forget_s: float = 5.0) -> GateBank:
    params = {"fast": P(sustain_s=0.0, cooldown_s=10.0), "slow": P(sustain_s=1.0, cooldown_s=10.0)}
    return GateBank(params.__getitem__, forget_s=forget_s)


def test_bank_keys_are_independent_and_use_clause_params():
    bank = make_bank()
    events = {}
    for i in range(8):
        t = i * DT
        for ck, state in [(("fast", 1), i < 2), (("fast", 2), i >= 3), (("slow", 1), True)]:
            ev = bank.update(*ck, t, state)
            if ev is not None:
                events.setdefault(ck, []).append(ev)
    assert summary(events[("fast", 1)]) == approx_events(
        [("opened", 0.0, None, 0.0), ("closed", 0.0, 0.2, 1.2)]
    )
    assert summary(events[("fast", 2)]) == approx_events([("opened", 0.6, None, 0.6)])
    assert summary(events[("slow", 1)]) == approx_events([("opened", 0.0, None, 1.0)])
    assert sorted(bank.open_keys()) == [("fast", 2), ("slow", 1)]


def test_bank_expire_closes_vanished_key_at_its_last_true():
    bank = make_bank(forget_s=5.0)
    for i in range(26):  # "stays" every frame up to 5.0, "leaves" only up to 0.4
        t = i * DT
        bank.update("fast", "stays", t, True)
        if i < 3:
            bank.update("fast", "leaves", t, True)
    assert sorted(bank.open_keys()) == [("fast", "leaves"), ("fast", "stays")]
    assert bank.expire(5.0) == []  # "leaves" last seen 0.4: 4.6 s ago
    bank.update("fast", "stays", 5.2, True)
    bank.update("fast", "stays", 5.4, True)
    out = bank.expire(5.4)
    assert [(c, k, e.kind, e.end_s, e.t) for c, k, e in out] == [
        ("fast", "leaves", "closed", pytest.approx(0.4), 5.4)
    ]
    assert bank.open_keys() == [("fast", "stays")]


def test_bank_expired_key_keeps_its_cooldown():
    bank = make_bank(forget_s=1.0)
    bank.update("fast", 1, 0.0, True)
    assert [e.kind for _, _, e in bank.expire(2.0)] == ["closed"]  # end 0.0, cooldown to 10.0
    assert bank.update("fast", 1, 3.0, True) is None
    assert bank.update("fast", 1, 3.2, True) is None
    assert bank.expire(20.0) == []  # only a pending run (held back by the cooldown): dropped, no event
    assert len(bank) == 0
    ev = bank.update("fast", 1, 21.0, True)
    assert ev is not None and ev.kind == "opened"


def test_bank_finish_closes_all_open():
    bank = make_bank()
    bank.update("fast", 1, 0.0, True)
    bank.update("fast", 1, 0.2, True)
    bank.update("slow", 2, 0.0, True)  # pending only
    out = bank.finish(1.0)
    assert [(c, k, e.kind, e.end_s) for c, k, e in out] == [("fast", 1, "closed", pytest.approx(0.2))]
    assert bank.open_keys() == [] and len(bank) == 0
