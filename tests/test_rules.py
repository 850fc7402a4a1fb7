"""Rule checks and the rule engine on hand-built observation sequences at 5 fps.

Each rule has a case that fires and one that stays quiet; temporal behaviour (sustain,
grace, cooldown, end time, expiry, unknown frames) is checked through the engine, not
just the gate. Sequences are built with tests/rulekit.py (see its docstring for the
pattern characters).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from rulekit import (
    FPS,
    frame,
    lean_back,
    moving,
    person,
    repeat,
    run_engine,
    sequence,
    skeleton,
    unknown_person,
    zero_sustain,
)

from rules.catalogue import Catalogue, ParamError, load_catalogue
from rules.checks import (
    RULES,
    PersonHistory,
    count_reversals,
    feet_v_shape,
    forbidden_hands,
    heel_gap_limit_bh,
    private_matters,
    running_or_hands_in_pockets,
    seated_misconduct,
    signed_trunk_lean,
)
from rules.engine import RuleEngine, run_rules
from vision.observation import FrameObservation, Label
from vision.pose import L_ANKLE, L_FOOT, L_HEEL, L_HIP, L_KNEE, R_KNEE

DT = 1.0 / FPS
GUARD = "guard_fixed"


def photo(p, clause: str, role: str = "front_desk"):
    """One frame of `p` through one clause with sustain 0: the photo case."""
    return run_engine([frame(0.0, [p])], role=role, clauses=[clause], overrides=zero_sustain(clause)).of(
        clause
    )


def check_of(fn, p, params=None, history=None):
    clause = next(c for c in load_catalogue().clauses if c.rule in RULES and RULES[c.rule][0].check is fn)
    return fn(p, history or PersonHistory(), params or clause.params)


# -- registry ----------------------------------------------------------------------------------


def test_every_rule_is_a_catalogue_rule_and_every_role_builds():
    rules = {c.rule for c in load_catalogue().clauses}
    assert set(RULES) <= rules
    for role in ("front_desk", "cashier", "door_reception", "service_staff", GUARD, "guard_patrol"):
        engine = RuleEngine("cam", role)
        assert all(load_catalogue().get(c).applies_to(role) for c in engine.clauses)
        assert all(reason.startswith("no rule implemented") for reason in engine.skipped.values())


def test_front_desk_gates_include_the_sub_gates():
    gates = RuleEngine("cam", "front_desk").gates
    assert {
        "d5.stance.01",
        "d5.sit.01",
        "d5.sit.01/desk",
        "d1.floor.03",
        "d1.floor.03/long",
        "d1.floor.11",
    } <= set(gates)
    assert "d11.phone.01" not in gates  # a guard clause


def test_clauses_narrow_the_role_and_mismatches_are_reported():
    engine = RuleEngine("cam", "front_desk", clauses=["d5.stance.01", "d11.phone.01", "d1.reception.02"])
    assert engine.clauses == ["d5.stance.01"]
    assert "role" in engine.skipped["d11.phone.01"] and "role" in engine.skipped["d1.reception.02"]
    with pytest.raises(KeyError, match="did you mean"):
        RuleEngine("cam", "front_desk", clauses=["d5.stance.1"])
    with pytest.raises(ValueError, match="unknown role"):
        RuleEngine("cam", "receptionist")


# -- d5.stance.01 forbidden hands --------------------------------------------------------------


@pytest.mark.parametrize(
    ("hands", "words"),
    [("on_hips", "叉腰"), ("in_pockets", "插兜"), ("arms_folded", "抱胸")],
)
def test_stance01_forbidden_hands_fire(hands, words):
    [v] = photo(person(hands=hands), "d5.stance.01")
    assert words in v.message and "双手在身体前交叉或采用背手式" in v.message  # behaviour + first excerpt
    assert v.details["behaviours"] == {hands: 1}
    assert v.start_s == 0.0 and v.end_s == 0.0 and v.camera == "cam" and v.track_id == 1


@pytest.mark.parametrize("hands", ["clasped_front", "clasped_behind", "at_sides", "other"])
def test_stance01_allowed_hands_stay_quiet(hands):
    assert photo(person(hands=hands), "d5.stance.01") == []


def test_stance01_half_body_photo_unknown_posture_still_judged():
    """No knees, no posture: could be standing, so the forbidden hands count (a little less sure)."""
    [v] = photo(person(posture=None, hands="on_hips"), "d5.stance.01")
    assert v.confidence == pytest.approx(0.8 * 0.8)
    assert photo(person(posture=None, hands="clasped_front"), "d5.stance.01") == []


@pytest.mark.parametrize("posture", ["sitting", "lying"])
def test_stance01_off_when_seen_sitting_or_lying(posture):
    assert photo(person(posture=posture, hands="arms_folded"), "d5.stance.01") == []
    assert check_of(forbidden_hands, person(posture=posture, hands="arms_folded")).state is None


def test_stance01_names_the_hand_from_the_evidence():
    p = person(hands="on_hips", evidence={"hands": {"left": "at_sides", "right": "on_hip"}})
    [v] = photo(p, "d5.stance.01")
    assert "right hand" in v.message and v.details["per_hand"]["right"] == "on_hip"


# -- d5.stance.02 lean -------------------------------------------------------------------------


def test_stance02_lean_over_limit_while_standing_fires():
    [v] = photo(person(lean=25.0), "d5.stance.02")
    assert "25 deg" in v.message and v.details["limit_deg"] == 15.0


@pytest.mark.parametrize(
    "p",
    [
        person(lean=10.0),
        person(lean=25.0, posture="sitting"),
        person(lean=25.0, posture=None),
        person(lean=None),
    ],
    ids=["upright", "sitting", "posture-unknown", "lean-unknown"],
)
def test_stance02_quiet(p):
    assert photo(p, "d5.stance.02") == []


def test_stance02_limit_is_a_parameter():
    overrides = zero_sustain("d5.stance.02")
    overrides["d5.stance.02"]["lean_deg"] = 30.0
    run = run_engine([frame(0, [person(lean=25.0)])], clauses=["d5.stance.02"], overrides=overrides)
    assert run.violations == []


# -- d5.stance.03 feet -------------------------------------------------------------------------


def test_stance03_heel_gap_limit_is_body_heights_from_metres():
    assert heel_gap_limit_bh({"heel_gap_m": 0.08}) == pytest.approx(0.08 / 1.65)
    assert heel_gap_limit_bh({"heel_gap_m": 0.08, "heel_gap_bh": 0.1}) == 0.1


@pytest.mark.parametrize(
    ("toe", "gap", "key"), [(10.0, 0.02, "not_v"), (150.0, 0.02, "not_v"), (60.0, 0.1, "heels_apart")]
)
def test_stance03_not_a_v_or_heels_apart_fires(toe, gap, key):
    [v] = photo(person(toe=toe, heel_gap=gap), "d5.stance.03")
    assert key in v.details["behaviours"]
    assert "body heights" in v.details["scale"] and v.details["heel_gap_limit_bh"] == pytest.approx(
        0.0485, abs=1e-4
    )


def test_stance03_v_with_close_heels_is_quiet_and_unknown_feet_are_unknown():
    assert photo(person(toe=60.0, heel_gap=0.02), "d5.stance.03") == []
    assert check_of(feet_v_shape, person(toe=None, heel_gap=None)).state is None
    # one bad measure is enough even when the other is unknown
    assert check_of(feet_v_shape, person(toe=None, heel_gap=0.2)).state is True
    assert check_of(feet_v_shape, person(toe=None, heel_gap=0.02)).state is None


# -- d5.sit.01 seated misconduct ---------------------------------------------------------------

SEATED = {"posture": "sitting", "legs": "apart", "hands": "clasped_front", "lean": 5.0, "pitch": 0.0}


def seated(**kw):
    return person(**(SEATED | {"skel": "sitting"} | kw))


@pytest.mark.parametrize(
    ("kw", "key", "words"),
    [
        ({"legs": "crossed"}, "crossed_legs", "跷二郎腿"),
        ({"hands": "arms_folded"}, "arms_folded", "抱胸"),
        ({"skel": lean_back(skeleton("sitting"), 35.0), "lean": 35.0}, "reclining", "半躺半坐"),
    ],
)
def test_sit01_fires(kw, key, words):
    [v] = photo(seated(**kw), "d5.sit.01")
    assert key in v.details["behaviours"] and words in v.message


def test_sit01_quiet_when_seated_well_or_standing():
    assert photo(seated(), "d5.sit.01") == []
    assert photo(seated(skel=lean_back(skeleton("sitting"), 15.0), lean=15.0), "d5.sit.01") == []  # backrest
    assert photo(person(legs="crossed", hands="arms_folded"), "d5.sit.01") == []  # standing


def test_sit01_lean_sign_from_the_skeleton():
    back, src = signed_trunk_lean(seated(skel=lean_back(skeleton("sitting"), 30.0)))
    fwd, _ = signed_trunk_lean(seated(skel=lean_back(skeleton("sitting"), -30.0)))
    assert back == pytest.approx(-30.0, abs=0.5) and fwd == pytest.approx(30.0, abs=0.5) and src == "thighs"
    assert signed_trunk_lean(seated(skel=None))[0] is None


def test_sit01_hidden_legs_cannot_clear():
    """A desk hides the legs: with everything else fine the frame is unknown, not clear."""
    assert check_of(seated_misconduct, seated(legs=None)).state is None
    assert check_of(seated_misconduct, seated(legs=None, hands="arms_folded")).state is True


def test_sit01_lying_on_desk_has_its_own_longer_sustain():
    on_desk = seated(skel=lean_back(skeleton("sitting"), -60.0), lean=60.0)
    run = run_engine(repeat(on_desk, 20.0), clauses=["d5.sit.01"])
    assert run.of("d5.sit.01") == []  # 20 s < lying_on_desk_s = 30 s (and forward is not reclining)
    run = run_engine(repeat(on_desk, 35.0), clauses=["d5.sit.01"])
    [v] = run.of("d5.sit.01", gate="d5.sit.01/desk")
    assert "趴在工作台上" in v.message and v.start_s == 0.0
    assert run.kinds() == [
        ("opened", "d5.sit.01/desk", 30.0),
        ("closed", "d5.sit.01/desk", pytest.approx(34.8)),
    ]


def test_sit01_head_down_on_desk_from_head_pitch():
    [v] = photo(seated(pitch=60.0), "d5.sit.01")
    assert v.details["gate"] == "d5.sit.01/desk" and "head bowed 60" in v.message
    assert photo(seated(pitch=30.0), "d5.sit.01") == []


def shaking_knees(amplitude_px: float, hz: float = 1.0, seconds: float = 15.0, noise_px: float = 0.0):
    """A seated person whose knees bob up and down (image y) at `hz`: the leg-shaking skeleton."""
    base = skeleton("sitting")
    rng = np.random.default_rng(0)

    def at(i: int, t: float):
        dy = amplitude_px * math.sin(2 * math.pi * hz * t) + (rng.normal(0, noise_px) if noise_px else 0.0)
        return seated(skel=base.moved([L_KNEE, R_KNEE], dy=dy))

    return repeat(at, seconds)


def test_sit01_leg_shaking_from_knee_oscillation():
    run = run_engine(shaking_knees(amplitude_px=10.0), clauses=["d5.sit.01"])  # 20 px swing, box 400 px
    [v] = run.of("d5.sit.01")
    assert set(v.details["behaviours"]) == {"leg_shaking"} and "摇腿" in v.message
    # History needs SHAKE_MIN_SPAN_S (2 s) of knees before it can tell; the run starts there.
    assert 1.0 <= v.start_s <= 2.6 and v.end_s == pytest.approx(14.8)


@pytest.mark.parametrize(
    ("amp", "noise"), [(0.0, 0.0), (0.0, 2.0), (3.0, 0.0)], ids=["still", "jitter", "small"]
)
def test_sit01_still_or_jittering_knees_do_not_shake(amp, noise):
    assert run_engine(shaking_knees(amplitude_px=amp, noise_px=noise), clauses=["d5.sit.01"]).violations == []


def test_count_reversals_ignores_small_wiggles():
    assert count_reversals([0, 1, 0, 1, 0, 1], swing=2) == 0
    assert count_reversals([0, 5, 0, 5, 0, 5], swing=2) == 4
    assert count_reversals([], swing=1) == 0


# -- d11.sit.01 guard leg up -------------------------------------------------------------------


def test_sit11_leg_up_fires_for_a_guard():
    sk = skeleton("sitting")
    hip_y = sk.keypoints[L_HIP, 1]
    up = sk.moved([L_ANKLE, L_HEEL, L_FOOT], dy=hip_y - 5 - sk.keypoints[L_ANKLE, 1])  # foot on the desk
    [v] = photo(seated(skel=up), "d11.sit.01", role=GUARD)
    assert "left leg up" in v.message and "桌面" in v.message
    knee_up = sk.moved(L_KNEE, dy=-60).hidden(L_ANKLE)
    assert len(photo(seated(skel=knee_up), "d11.sit.01", role=GUARD)) == 1


def test_sit11_quiet_when_seated_normally_or_standing():
    assert photo(seated(), "d11.sit.01", role=GUARD) == []
    assert photo(person(skel="standing"), "d11.sit.01", role=GUARD) == []
    assert photo(seated(skel=None), "d11.sit.01", role=GUARD) == []  # no landmarks: unknown


# -- d1.floor.03 phone call --------------------------------------------------------------------

CALL = person(phone="at_ear", hands="at_ear")
NO_CALL = person(phone="none")


def test_call_in_work_zone_fires_after_its_sustain_with_duration():
    run = run_engine(
        sequence("T" * 75 + "F" * 10, on=CALL, off=NO_CALL), clauses=["d1.floor.03"]
    )  # 15 s call
    [v] = run.violations
    assert v.details["gate"] == "d1.floor.03" and v.start_s == 0.0 and v.end_s == pytest.approx(14.8)
    assert v.details["call_duration_s"] == pytest.approx(14.8) and "work_zone" in v.details
    assert run.kinds()[0] == ("opened", "d1.floor.03", 10.0)
    assert "严禁接听私人电话超过2分钟" in v.message


def test_short_call_is_quiet():
    assert (
        run_engine(sequence("T" * 45 + "F" * 10, on=CALL, off=NO_CALL), clauses=["d1.floor.03"]).violations
        == []
    )


def test_long_call_raises_a_second_alert_with_its_duration():
    frames = sequence("T" * 650 + "F" * 10, on=CALL, off=NO_CALL)  # a 130 s call
    engine = RuleEngine("cam", clauses=["d1.floor.03"])
    opened_long = None
    for obs in frames[:625]:  # up to t = 124.8 s
        for e in engine.update(obs):
            if e.violation.details["gate"] == "d1.floor.03/long":
                opened_long = e
    assert opened_long is not None and opened_long.kind == "opened" and opened_long.t == pytest.approx(120.0)
    live = {v.details["gate"]: v for v in engine.open_violations()}
    assert set(live) == {"d1.floor.03", "d1.floor.03/long"}
    assert live["d1.floor.03/long"].details["call_duration_s"] == pytest.approx(124.8)  # to now while open
    assert "longer than 120 s" in live["d1.floor.03/long"].message
    for obs in frames[625:]:
        engine.update(obs)
    engine.finish()
    long = [v for v in engine.violations if v.details["gate"] == "d1.floor.03/long"]
    assert len(engine.violations) == 2 and len(long) == 1
    assert long[0].start_s == 0.0 and long[0].end_s == pytest.approx(129.8)
    assert (
        long[0].details["call_duration_s"] == pytest.approx(129.8) and long[0].details["max_call_s"] == 120.0
    )


# -- d11.phone.01 guard phone ------------------------------------------------------------------


@pytest.mark.parametrize("state", ["in_hand", "looking", "at_ear"])
def test_guard_phone_fires(state):
    [v] = photo(person(phone=state), "d11.phone.01", role=GUARD)
    assert f"phone_{state}" in v.details["behaviours"] and "手机" in v.message


def test_guard_phone_quiet():
    assert photo(person(phone="none"), "d11.phone.01", role=GUARD) == []
    assert photo(person(phone=None), "d11.phone.01", role=GUARD) == []
    run = run_engine(sequence("T" * 10, on=person(phone="in_hand")), role=GUARD, clauses=["d11.phone.01"])
    assert run.violations == []  # 2 s < 3 s sustain


# -- d1.floor.11 private matters ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "activity"),
    [
        (person(phone="looking", pitch=30.0), "phone"),
        (person(objects={"book": 0.7}, pitch=30.0, hands="at_sides"), "reading"),
        (person(objects={"book": 0.7}, hands="clasped_front"), "reading"),
        (person(objects={"cup": 0.6}, hands="at_mouth"), "eating_drinking"),
        (person(hands="at_mouth", evidence={"other_in_hand": [["bottle", 0.5, "right"]]}), "eating_drinking"),
    ],
    ids=["phone", "reading-bowed", "reading-hands", "cup", "bottle-evidence"],
)
def test_private_matters_fire(p, activity):
    [v] = photo(p, "d1.floor.11")
    assert v.details["activity"] == activity


@pytest.mark.parametrize(
    "p",
    [
        person(phone="in_hand"),
        person(objects={"book": 0.7}, pitch=0.0, hands="at_sides"),
        person(objects={"cup": 0.6}, hands="clasped_front"),
        person(hands="at_mouth"),  # a cough, a yawn
    ],
    ids=["phone-held", "book-not-read", "cup-on-desk", "hand-at-mouth"],
)
def test_private_matters_quiet(p):
    assert photo(p, "d1.floor.11") == []


def test_private_matters_unknown_phone_is_unknown():
    assert check_of(private_matters, person(phone=None)).state is None


# -- d5.walk.01 running / hands in pockets -----------------------------------------------------


def test_running_fires():
    """2 body heights per second (800 px/s for a 400 px person) for 3 s."""
    run = run_engine(repeat(moving(person(skel="standing"), 800.0), 3.0), clauses=["d5.walk.01"])
    [v] = run.violations
    assert "running" in v.details["behaviours"] and v.details["speed_bh_per_s"] == pytest.approx(2.0)


def test_walking_with_hands_in_pockets_fires_and_plain_walking_is_quiet():
    walker = moving(person(hands="in_pockets", skel="standing"), 320.0)  # 0.8 bh/s
    [v] = run_engine(repeat(walker, 3.0), clauses=["d5.walk.01"]).violations
    assert set(v.details["behaviours"]) == {"pockets_walking"} and "口袋" in v.message
    assert (
        run_engine(repeat(moving(person(skel="standing"), 320.0), 3.0), clauses=["d5.walk.01"]).violations
        == []
    )
    still = person(hands="in_pockets", skel="standing")  # standing still: stance.01's business
    assert run_engine(repeat(still, 3.0), clauses=["d5.walk.01"]).violations == []


def test_speed_ignores_a_single_foot_point_jump():
    history = PersonHistory()
    for i in range(6):
        p = person()
        if i == 3:
            p.box = p.box + np.array([300.0, 0, 300.0, 0])
        history.add(i * DT, p)
    assert history.speed_bh_per_s() == pytest.approx(0.0)
    assert running_or_hands_in_pockets(person(), PersonHistory(), {"max_speed_bh_per_s": 1.5}).state is None


# -- temporal behaviour through the engine -----------------------------------------------------

HIPS = person(hands="on_hips")
GOOD = person(hands="clasped_front")
STANCE = ["d5.stance.01"]


def test_sustain_opens_at_start_plus_sustain_and_start_is_the_behaviour_start():
    run = run_engine(sequence("FF" + "T" * 24 + "F" * 10, on=HIPS, off=GOOD), clauses=STANCE)
    assert run.violations == []  # 4.6 s of on_hips < 5 s
    run = run_engine(sequence("FF" + "T" * 30 + "F" * 10, on=HIPS, off=GOOD), clauses=STANCE)
    [v] = run.violations
    assert run.kinds() == [("opened", "d5.stance.01", 5.4), ("closed", "d5.stance.01", 7.2)]
    assert v.start_s == pytest.approx(0.4) and v.end_s == pytest.approx(6.2)  # end = last True frame
    assert v.duration() == pytest.approx(5.8) and v.details["duration_s"] == pytest.approx(5.8)


@pytest.mark.parametrize("gap", ["..", "FF", "??"], ids=["missing", "false", "unknown"])
def test_two_frame_dropout_is_bridged_by_grace(gap):
    run = run_engine(
        sequence("T" * 15 + gap + "T" * 15 + "F" * 10, on=HIPS, off=GOOD, unknown=unknown_person()),
        clauses=STANCE,
    )
    [v] = run.violations
    assert v.start_s == 0.0 and v.end_s == pytest.approx(6.2)


def test_a_long_false_gap_splits_the_run():
    run = run_engine(sequence("T" * 15 + "F" * 10 + "T" * 15, on=HIPS, off=GOOD), clauses=STANCE)
    assert run.violations == []  # two 3 s runs, neither reaches 5 s


def test_cooldown_blocks_a_second_alert_until_it_has_passed():
    pattern = "T" * 30 + "F" * 10 + "T" * 30 + "F" * 10
    run = run_engine(sequence(pattern, on=HIPS, off=GOOD), clauses=STANCE)
    assert len(run.violations) == 1  # the second 6 s run falls inside the 60 s cooldown
    run = run_engine(
        sequence(pattern, on=HIPS, off=GOOD), clauses=STANCE, overrides={"d5.stance.01": {"cooldown_s": 1.0}}
    )
    first, second = run.violations
    assert first.end_s == pytest.approx(5.8) and second.start_s == pytest.approx(8.0)


def test_unknown_frames_neither_fire_nor_clear():
    unknown = unknown_person()
    assert run_engine(sequence("?" * 60, on=HIPS, unknown=unknown), clauses=STANCE).violations == []
    # An open violation survives 3 s of unknown frames and goes on as the same violation.
    run = run_engine(
        sequence("T" * 30 + "?" * 15 + "T" * 10 + "F" * 10, on=HIPS, off=GOOD, unknown=unknown),
        clauses=STANCE,
    )
    [v] = run.violations
    assert v.start_s == 0.0 and v.end_s == pytest.approx(10.8)
    # Unknown frames do not count towards the sustain: 3 s + 3 s unknown + 1.8 s is 4.8 s held.
    run = run_engine(
        sequence("T" * 15 + "?" * 15 + "T" * 10 + "F" * 10, on=HIPS, off=GOOD, unknown=unknown),
        clauses=STANCE,
    )
    assert run.violations == []


def test_posture_unknown_with_good_hands_clears():
    half_body_good = person(posture=None, hands="clasped_front")
    run = run_engine(sequence("T" * 30 + "F" * 10, on=HIPS, off=half_body_good), clauses=STANCE, finish=False)
    assert run.kinds() == [("opened", "d5.stance.01", 5.0), ("closed", "d5.stance.01", 6.8)]


def test_a_vanished_track_is_closed_by_expiry():
    run = run_engine(sequence("T" * 30 + "." * 30, on=HIPS), clauses=STANCE, finish=False)
    [v] = run.violations
    assert v.end_s == pytest.approx(5.8)
    closed = [e for e in run.events if e.kind == "closed"]
    assert len(closed) == 1 and closed[0].t == pytest.approx(5.8 + 5.0)
    assert run.engine.open_violations() == []


def test_finish_closes_what_is_open_and_events_are_copies():
    engine = RuleEngine("cam", clauses=STANCE)
    events = []
    for obs in sequence("T" * 30, on=HIPS):
        events += engine.update(obs)
    [opened] = events
    assert opened.kind == "opened" and opened.violation.end_s is None and opened.index == 0
    assert [v.start_s for v in engine.open_violations()] == [0.0]
    assert engine.open_violations()[0].details["duration_s"] == pytest.approx(5.8)
    [closed] = engine.finish()
    assert closed.kind == "closed" and closed.violation.end_s == pytest.approx(5.8) and closed.index == 0
    assert opened.violation.end_s is None  # the opened event kept its own copy
    assert engine.violations[0].end_s == pytest.approx(5.8) and engine.open_violations() == []


def test_snapshot_is_the_clearest_frame():
    def hips(i, t):
        return person(hands=Label("on_hips", 0.95 if i == 12 else 0.6))

    [v] = run_engine(repeat(hips, 6.0), clauses=STANCE).violations
    assert v.snapshot_t == pytest.approx(12 * DT)
    assert v.confidence == pytest.approx((0.6 * 29 + 0.95) / 30)


def test_tracks_are_independent():
    frames = sequence("T" * 30 + "F" * 5, on=HIPS, off=GOOD, extra=[person(2, hands="clasped_behind")])
    [v] = run_engine(frames, clauses=STANCE).violations
    assert v.track_id == 1


def test_mixed_behaviours_are_named_most_frequent_first():
    def mixed(i, t):
        return person(hands="arms_folded" if i % 3 == 0 else "on_hips")

    [v] = run_engine(repeat(mixed, 6.0), clauses=STANCE).violations
    assert v.message.startswith("hands on hips (叉腰); arms folded on the chest (抱胸)")
    assert v.details["behaviours"] == {"on_hips": 20, "arms_folded": 10}


# -- overrides ---------------------------------------------------------------------------------


def test_override_unknown_param_raises_naming_the_key():
    with pytest.raises(ParamError, match="sustain_sec") as err:
        RuleEngine("cam", overrides={"d5.stance.01": {"sustain_sec": 3.0}})
    assert err.value.key == "sustain_sec" and err.value.clause_id == "d5.stance.01"


def test_override_negative_value_raises_naming_the_key():
    with pytest.raises(ParamError, match="grace_s") as err:
        RuleEngine("cam", overrides={"d5.stance.01": {"grace_s": -1.0}})
    assert err.value.key == "grace_s"


def test_override_unknown_clause_raises_even_for_another_role():
    with pytest.raises(ParamError, match="d5.stance.99"):
        RuleEngine("cam", overrides={"d5.stance.99": {"sustain_s": 1.0}})
    # a valid override for a clause this role does not run is accepted (a site file covers all cameras)
    RuleEngine("cam", overrides={"d11.phone.01": {"sustain_s": 1.0}})


def test_overrides_reach_the_gates():
    engine = RuleEngine("cam", overrides={"d1.floor.03": {"work_zone_sustain_s": 3.0, "max_call_s": 60.0}})
    assert engine.gate_params["d1.floor.03"].sustain_s == 3.0
    assert engine.gate_params["d1.floor.03/long"].sustain_s == 60.0
    assert engine.gate_params["d5.sit.01/desk"].sustain_s == 30.0
    assert engine.gate_params["d5.walk.01"].sustain_s == 1.0  # no sustain_s in the catalogue


# -- recorded streams ---------------------------------------------------------------------------


def test_run_rules_and_json_lines_round_trip():
    """What `analyze` and the lead's JSON-lines fixtures do: the same violations from a dump."""
    frames = sequence("T" * 30 + "F" * 5, on=person(hands="on_hips", skel="standing"), off=GOOD)
    dumped = [FrameObservation.from_json(f.to_json()) for f in frames]
    direct, replayed = run_rules(frames, "cam"), run_rules(dumped, "cam")
    assert [v.to_dict() for v in direct] == [v.to_dict() for v in replayed]
    assert [v.clause for v in direct] == ["d5.stance.01"]
    json.dumps([v.to_dict() for v in direct], ensure_ascii=False)  # details are plain JSON


def test_a_custom_catalogue_supplies_roles_defaults_and_validation():
    packaged = load_catalogue()
    stance = packaged.get("d5.stance.01")
    custom = Catalogue(clauses=(stance.model_copy(update={"params": stance.params | {"sustain_s": 0.0}}),))
    engine = RuleEngine("cam", catalogue=custom)
    assert engine.clauses == ["d5.stance.01"] and engine.gate_params["d5.stance.01"].sustain_s == 0.0
    engine.update(frame(0.0, [HIPS]))
    assert len(engine.open_violations()) == 1
    with pytest.raises(ParamError, match="lean_deg") as err:
        RuleEngine("cam", catalogue=custom, overrides={"d5.stance.01": {"lean_deg": 3.0}})
    assert err.value.key == "lean_deg"
    with pytest.raises(ParamError, match="cooldown_s"):
        RuleEngine("cam", catalogue=custom, overrides={"d5.stance.01": {"cooldown_s": -5}})
