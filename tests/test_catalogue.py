"""The clause catalogue stays true to the written codes and to the conduct map.

The seed and the map live in ../shared (outside this repository); the tests that read
them skip, saying so, where that folder is absent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rules.catalogue import (
    GROUPS,
    KINDS,
    ROLES,
    Catalogue,
    Clause,
    ParamError,
    format_clauses,
    load_catalogue,
    resolve_params,
    validate_overrides,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SEED = SHARED / "seeds" / "000_85114f290748de50.txt"
CONDUCT_MAP = SHARED / "spec" / "conduct-map.md"

# A map table row: | `id` | source | clause | checks | default |
_MAP_ROW = re.compile(r"^\|\s*`(?P<id>[^`]+)`\s*\|(?P<section>[^|]*)\|")


def _read_shared(path: Path) -> str:
    if not path.is_file():
        pytest.skip(f"../shared not found: {path}")
    return path.read_text(encoding="utf-8")


def _map_rows() -> dict[str, str]:
    """{clause id: source section} from the conduct map's tables, in map order."""
    rows: dict[str, str] = {}
    for line in _read_shared(CONDUCT_MAP).splitlines():
        match = _MAP_ROW.match(line.strip())
        if match:
            assert match["id"] not in rows, f"duplicate id in the map: {match['id']}"
            rows[match["id"]] = match["section"].strip()
    assert rows, "no clause rows parsed from the conduct map"
    return rows


CATALOGUE = load_catalogue()
ALERTS = [c for c in CATALOGUE.clauses if c.kind == "alert"]


# ------------------------------------------------------------------ against ../shared


@pytest.mark.parametrize("clause", CATALOGUE.clauses, ids=lambda c: c.id)
def test_chinese_excerpts_are_verbatim_in_seed(clause: Clause) -> None:
    seed = _read_shared(SEED)
    for text in clause.text_zh:
        assert text in seed, f"{clause.id}: excerpt not found verbatim in the seed: {text!r}"


def test_ids_match_conduct_map() -> None:
    rows = _map_rows()
    ids = CATALOGUE.ids()
    assert sorted(set(rows) - set(ids)) == [], "in the map but not in the catalogue"
    assert sorted(set(ids) - set(rows)) == [], "in the catalogue but not in the map"


def test_order_and_sections_follow_conduct_map() -> None:
    rows = _map_rows()
    assert CATALOGUE.ids() == list(rows)
    for clause in CATALOGUE.clauses:
        assert clause.section == rows[clause.id], clause.id


# ------------------------------------------------------------------------- structure


def test_catalogue_size_and_unique_ids() -> None:
    ids = CATALOGUE.ids()
    assert len(ids) == len(set(ids)) == len(CATALOGUE) == 29


@pytest.mark.parametrize("clause", CATALOGUE.clauses, ids=lambda c: c.id)
def test_clause_fields(clause: Clause) -> None:
    assert clause.gloss.strip() and clause.checks.strip()
    assert clause.text_zh and all(t.strip() for t in clause.text_zh)
    assert clause.roles and set(clause.roles) <= set(ROLES)
    assert clause.group in GROUPS
    assert clause.kind in KINDS
    assert re.fullmatch(r"[a-z][a-z0-9_]*", clause.rule)


@pytest.mark.parametrize("clause", ALERTS, ids=lambda c: c.id)
def test_alert_clauses_have_nonnegative_durations(clause: Clause) -> None:
    assert "grace_s" in clause.params and "cooldown_s" in clause.params
    durations = {k: v for k, v in clause.params.items() if k.endswith("_s")}
    assert durations and all(v >= 0 for v in durations.values()), durations


def test_reports_are_the_guard_gestures() -> None:
    reports = {c.id for c in CATALOGUE.clauses if c.kind == "report"}
    assert reports == {"d11.salute.01", "d11.traffic.01", "d11.handover.01"}


def test_spot_defaults_from_the_map() -> None:
    assert CATALOGUE.get("d5.stance.01").params == {"sustain_s": 5.0, "grace_s": 1.0, "cooldown_s": 60.0}
    assert CATALOGUE.get("d5.stance.02").params["lean_deg"] == 15.0
    assert CATALOGUE.get("d5.stance.03").params["heel_gap_m"] == 0.08
    assert CATALOGUE.get("d1.reception.02").params["empty_s"] == 60.0
    assert CATALOGUE.get("d11.standby.08").params["max_absent_share"] == 0.3
    assert CATALOGUE.get("d1.floor.03").params["max_call_s"] == 120.0
    assert CATALOGUE.get("d1.reception.05").roles == ["door_reception"]


def test_lookup_helpers() -> None:
    assert load_catalogue() is CATALOGUE  # cached
    assert "d5.sit.01" in CATALOGUE and "d9.nope.01" not in CATALOGUE
    with pytest.raises(KeyError, match="d5.stance.01"):
        CATALOGUE.get("d5.stance.1")
    with pytest.raises(ValueError, match="known roles"):
        CATALOGUE.for_role("janitor")
    assert all(c.applies_to("guard_standby") for c in CATALOGUE.for_role("guard_standby"))


def test_bad_catalogue_rejected() -> None:
    entry = {
        "id": "d5.stance.01",
        "section": "x",
        "group": "standing",
        "text_zh": ["站立端正"],
        "gloss": "g",
        "checks": "c",
        "roles": ["front_desk"],
        "rule": "forbidden_hands",
        "kind": "alert",
        "params": {"sustain_s": 5.0, "grace_s": 1.0, "cooldown_s": 60.0},
    }
    Catalogue.model_validate({"clauses": [entry]})
    with pytest.raises(ValueError, match="duplicate clause id"):
        Catalogue.model_validate({"clauses": [entry, entry]})
    with pytest.raises(ValueError, match="roles"):
        Clause.model_validate({**entry, "roles": ["janitor"]})
    with pytest.raises(ValueError, match="sustain_s"):
        Clause.model_validate({**entry, "params": {**entry["params"], "sustain_s": -1.0}})
    with pytest.raises(ValueError, match="unit suffix"):
        Clause.model_validate({**entry, "params": {**entry["params"], "sustain": 1.0}})
    with pytest.raises(ValueError, match="must be a number"):
        Clause.model_validate({**entry, "params": {**entry["params"], "grace_s": "1"}})
    with pytest.raises(ValueError, match="cooldown_s"):
        Clause.model_validate({**entry, "params": {"sustain_s": 5.0, "grace_s": 1.0}})


# -------------------------------------------------------------------- resolve_params


def test_resolve_defaults_and_layer_order() -> None:
    assert resolve_params("d5.stance.01") == {"sustain_s": 5.0, "grace_s": 1.0, "cooldown_s": 60.0}
    site = {"sustain_s": 8, "cooldown_s": 120.0}
    role = {"sustain_s": 3.5}
    resolved = resolve_params("d5.stance.01", site, role)
    assert resolved == {"sustain_s": 3.5, "grace_s": 1.0, "cooldown_s": 120.0}
    assert all(isinstance(v, float) for v in resolved.values())
    # Defaults are copied, never mutated.
    assert CATALOGUE.get("d5.stance.01").params["sustain_s"] == 5.0


def test_resolve_unknown_key_names_clause_and_known_keys() -> None:
    with pytest.raises(ParamError) as err:
        resolve_params("d5.stance.01", {"sustain": 3})
    expected = "d5.stance.01: unknown parameter 'sustain' (known: cooldown_s, grace_s, sustain_s)"
    assert str(err.value) == expected
    assert err.value.clause_id == "d5.stance.01" and err.value.key == "sustain"


@pytest.mark.parametrize(
    ("clause_id", "key", "value"),
    [
        ("d5.stance.01", "sustain_s", -1),
        ("d5.stance.01", "grace_s", "5"),
        ("d5.stance.01", "cooldown_s", True),
        ("d5.stance.01", "sustain_s", float("nan")),
        ("d1.reception.05", "tolerance_deg", 181.0),
        ("d5.stance.02", "lean_deg", -5.0),
        ("d11.standby.08", "max_absent_share", 1.2),
        ("d1.reception.03", "distance_m", -0.5),
        ("d5.walk.01", "max_speed_mps", -1.0),
    ],
)
def test_resolve_rejects_bad_values(clause_id: str, key: str, value: object) -> None:
    with pytest.raises(ParamError, match=re.escape(key)) as err:
        resolve_params(clause_id, {key: value})
    assert str(err.value).startswith(f"{clause_id}: ")


def test_resolve_accepts_range_edges() -> None:
    door = resolve_params("d1.reception.05", {"tolerance_deg": 180, "target_deg": 0})
    assert door["tolerance_deg"] == 180.0 and door["target_deg"] == 0.0
    assert resolve_params("d11.standby.08", {"max_absent_share": 1})["max_absent_share"] == 1.0
    assert resolve_params("d5.stance.01", {"sustain_s": 0})["sustain_s"] == 0.0


def test_resolve_unknown_clause() -> None:
    with pytest.raises(ParamError, match="unknown clause 'd5.stance.1'"):
        resolve_params("d5.stance.1")
    with pytest.raises(ParamError, match=r"known: none"):
        resolve_params("d11.salute.01", {"sustain_s": 1.0})


def test_validate_overrides_names_the_path() -> None:
    ok = validate_overrides({"d5.stance.01": {"sustain_s": 8}, "d1.floor.03": {"max_call_s": 90.0}})
    assert ok == {"d5.stance.01": {"sustain_s": 8.0}, "d1.floor.03": {"max_call_s": 90.0}}
    assert validate_overrides({}) == {}

    with pytest.raises(ParamError, match=r"^clauses\.d5\.stance\.01\.sustain_s: .*>= 0"):
        validate_overrides({"d5.stance.01": {"sustain_s": -3}})
    with pytest.raises(ParamError, match=r"^clauses\.d5\.stance\.01\.sustain: unknown parameter 'sustain'"):
        validate_overrides({"d5.stance.01": {"sustain": 3}})
    typo = r"^clauses\.d5\.stanse\.01: unknown clause .*did you mean 'd5\.stance\.01'"
    with pytest.raises(ParamError, match=typo):
        validate_overrides({"d5.stanse.01": {"sustain_s": 3}})
    with pytest.raises(ParamError, match=r"^site\.clauses\.d5\.stance\.01: expected a mapping"):
        validate_overrides({"d5.stance.01": [3]}, where="site.clauses")  # type: ignore[dict-item]
    with pytest.raises(ParamError, match=r"^clauses: expected a mapping"):
        validate_overrides([("d5.stance.01", {})])  # type: ignore[arg-type]


# -------------------------------------------------------------------- format_clauses


def test_format_table_filters_by_role() -> None:
    door = format_clauses("door_reception")
    assert "d1.reception.05" in door and "d11.stance.02" not in door
    assert "站门客服应面带微笑,以45度面向门口" in door

    guard = format_clauses("guard_fixed")
    assert "d1.reception.05" not in guard and "d11.stance.02" in guard

    everything = format_clauses()
    assert all(clause_id in everything for clause_id in CATALOGUE.ids())
    assert "empty_s=60" in everything


def test_format_json_full_entries_unescaped() -> None:
    text = format_clauses("door_reception", as_json=True)
    assert "站门客服" in text and "\\u" not in text
    entries = json.loads(text)
    ids = [entry["id"] for entry in entries]
    assert "d1.reception.05" in ids and "d11.stance.02" not in ids
    entry = next(e for e in entries if e["id"] == "d1.reception.05")
    assert entry == CATALOGUE.get("d1.reception.05").model_dump()

    all_entries = json.loads(format_clauses(as_json=True))
    assert [e["id"] for e in all_entries] == CATALOGUE.ids()


def test_format_unknown_role() -> None:
    with pytest.raises(ValueError, match="guard_fixed"):
        format_clauses("janitor")
    with pytest.raises(ValueError, match="janitor"):
        format_clauses("janitor", as_json=True)


@pytest.mark.parametrize("role", ROLES)
def test_every_role_has_clauses(role: str) -> None:
    assert CATALOGUE.for_role(role), role


def test_seated_and_walking_thresholds_are_site_tunable():
    from rules.engine import RuleEngine

    engine = RuleEngine(
        "cam",
        overrides={"d5.sit.01": {"recline_deg": 30, "desk_lean_deg": 50}, "d5.walk.01": {"sustain_s": 2}},
    )
    assert engine.params["d5.sit.01"]["recline_deg"] == 30.0
    assert engine.gate_params["d5.walk.01"].sustain_s == 2.0
    with pytest.raises(ParamError, match="recline_deg"):
        RuleEngine("cam", overrides={"d5.sit.01": {"recline_deg": 200}})
