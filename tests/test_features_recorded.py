"""Features recomputed from landmarks the pipeline recorded on real clips (no model needed)."""

from __future__ import annotations

from pathlib import Path

from vision.features import compute_features
from vision.observation import read_jsonl

FIXTURES = Path(__file__).parent / "fixtures"


def phone_states(name: str) -> list[str]:
    out = []
    for obs in read_jsonl(str(FIXTURES / name)):
        for p in obs.persons:
            if p.keypoints is not None:
                f, _ = compute_features(p.keypoints, p.keypoints_world, p.visibility, p.box, p.held, [])
                out.append(f.phone.value)
    return out


def test_a_salute_is_not_a_phone_at_the_ear():
    states = phone_states("guard_kinetics_saluting.observations.jsonl")
    assert states.count("at_ear") <= 0.1 * len(states)


def test_a_call_is_still_a_phone_at_the_ear():
    states = phone_states("corridor_call.observations.jsonl")
    assert states.count("at_ear") >= 0.9 * len(states)
