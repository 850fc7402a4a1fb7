"""The clause catalogue: which written rule each alert is about, and its tunable defaults.

Code refers to clauses by their public id only (`d5.stance.01`); the Chinese text, the
English gloss, the roles a clause applies to and its default parameters live in the
packaged `clauses.yaml`, so a manager can show an employee the exact written rule and a
site can retune thresholds without touching code.
"""

from __future__ import annotations

import difflib
import json
import math
import unicodedata
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

Role = Literal[
    "front_desk",
    "cashier",
    "door_reception",
    "service_staff",
    "guard_ceremonial",
    "guard_fixed",
    "guard_standby",
    "guard_reception",  # a (female) guard on a reception post
    "guard_patrol",
]
Group = Literal["presence", "appearance", "standing", "sitting_walking", "phone_private", "guard_gestures"]
Kind = Literal["alert", "report"]

# The vocabularies as tuples, derived from the Literals so the two cannot drift apart.
ROLES: tuple[str, ...] = get_args(Role)
GROUPS: tuple[str, ...] = get_args(Group)
KINDS: tuple[str, ...] = get_args(Kind)

# Parameter names end in their unit; the unit fixes the allowed range. Longest suffix first,
# so `max_speed_bh_per_s` is a rate, not a duration.
_UNITS: tuple[tuple[str, str, float, float], ...] = (
    ("_per_s", "a rate", 0.0, math.inf),
    ("_mps", "a speed", 0.0, math.inf),
    ("_deg", "an angle", 0.0, 180.0),
    ("_share", "a share", 0.0, 1.0),
    ("_s", "a duration", 0.0, math.inf),
    ("_m", "a distance", 0.0, math.inf),
)

# Every alert clause needs these: short gaps must not split a behaviour, and one behaviour
# must not raise a stream of alerts.
_ALERT_PARAMS: tuple[str, ...] = ("grace_s", "cooldown_s")

_PACKAGE = "rules"
_RESOURCE = "clauses.yaml"


class ParamError(ValueError):
    """A parameter override that cannot be applied; the message names the clause and the key."""

    def __init__(self, message: str, *, clause_id: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.clause_id = clause_id
        self.key = key


def _unit(key: str) -> tuple[str, float, float] | None:
    for suffix, label, low, high in _UNITS:
        if key.endswith(suffix):
            return label, low, high
    return None


def _fmt(value: float) -> str:
    return f"{value:g}"


def _value_problem(key: str, value: Any) -> str | None:
    """Why `value` is not acceptable for parameter `key`, or None when it is."""
    # bool is an int subclass; `sustain_s: yes` in a site file is a typo, not 1 second.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"parameter {key!r} must be a number, got {type(value).__name__} {value!r}"
    if not math.isfinite(value):
        return f"parameter {key!r} must be finite, got {value!r}"
    unit = _unit(key)
    if unit is None:
        return f"parameter {key!r} has no unit suffix (one of {', '.join(s for s, *_ in _UNITS)})"
    label, low, high = unit
    if not low <= value <= high:
        bounds = f">= {_fmt(low)}" if math.isinf(high) else f"between {_fmt(low)} and {_fmt(high)}"
        return f"parameter {key!r} is {label} and must be {bounds}, got {_fmt(float(value))}"
    return None


class Clause(BaseModel):
    """One checkable clause of the conduct codes, as listed in the conduct map."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^d\d+\.[a-z_]+\.\d{2}$")
    section: str = Field(min_length=1)
    group: Group
    text_zh: list[str] = Field(min_length=1)
    gloss: str = Field(min_length=1)
    checks: str = Field(min_length=1)
    roles: list[Role] = Field(min_length=1)
    rule: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: Kind
    params: dict[str, float] = Field(default_factory=dict)

    @field_validator("text_zh")
    @classmethod
    def _no_empty_excerpt(cls, value: list[str]) -> list[str]:
        if any(not text.strip() for text in value):
            raise ValueError("empty Chinese excerpt")
        return value

    @field_validator("roles")
    @classmethod
    def _roles_unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"duplicate role in {value}")
        return value

    @field_validator("params", mode="before")
    @classmethod
    def _params_are_numbers(cls, value: Any) -> Any:
        # Checked before pydantic's lax coercion: `yes` or "5" in the YAML is a typo, not a number.
        # Defaults obey the same rules as overrides, so a bad default fails at load.
        if isinstance(value, Mapping):
            for key, raw in value.items():
                problem = _value_problem(str(key), raw)
                if problem:
                    raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _check_alert_params(self) -> Clause:
        if self.kind == "alert":
            missing = [key for key in _ALERT_PARAMS if key not in self.params]
            if missing:
                raise ValueError(f"{self.id}: alert clause lacks {', '.join(missing)}")
        return self

    def applies_to(self, role: str) -> bool:
        return role in self.roles


class Catalogue(BaseModel):
    """All clauses in conduct-map order, looked up by id or filtered by role."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    clauses: tuple[Clause, ...] = Field(min_length=1)
    _by_id: dict[str, Clause] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _unique_ids(self) -> Catalogue:
        seen: dict[str, Clause] = {}
        for clause in self.clauses:
            if clause.id in seen:
                raise ValueError(f"duplicate clause id {clause.id!r}")
            seen[clause.id] = clause
        self._by_id = seen
        return self

    @classmethod
    def from_yaml(cls, text: str) -> Catalogue:
        return cls.model_validate(yaml.safe_load(text))

    def get(self, clause_id: str) -> Clause:
        """The clause with this id; KeyError (with a suggestion) when there is none."""
        try:
            return self._by_id[clause_id]
        except KeyError:
            raise KeyError(f"unknown clause {clause_id!r}{_suggest(clause_id, self._by_id)}") from None

    def for_role(self, role: str) -> list[Clause]:
        _check_role(role)
        return [clause for clause in self.clauses if clause.applies_to(role)]

    def ids(self) -> list[str]:
        return [clause.id for clause in self.clauses]

    def __contains__(self, clause_id: object) -> bool:
        return clause_id in self._by_id

    def __len__(self) -> int:
        return len(self.clauses)


def _suggest(name: str, known: Mapping[str, Any] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; known roles: {', '.join(ROLES)}")


@cache
def load_catalogue() -> Catalogue:
    """The packaged catalogue, parsed and validated once per process."""
    text = resources.files(_PACKAGE).joinpath(_RESOURCE).read_text(encoding="utf-8")
    return Catalogue.from_yaml(text)


def _clause(clause_id: str, where: str) -> Clause:
    catalogue = load_catalogue()
    if clause_id not in catalogue:
        raise ParamError(
            f"{where}: unknown clause {clause_id!r}{_suggest(clause_id, tuple(catalogue.ids()))}",
            clause_id=clause_id,
        )
    return catalogue.get(clause_id)


def _check_param(clause: Clause, key: Any, value: Any, where: str) -> float:
    if key not in clause.params:
        known = ", ".join(sorted(clause.params)) or "none"
        raise ParamError(
            f"{where}: unknown parameter {key!r} (known: {known})", clause_id=clause.id, key=str(key)
        )
    problem = _value_problem(key, value)
    if problem:
        raise ParamError(f"{where}: {problem}", clause_id=clause.id, key=key)
    return float(value)


def resolve_params(clause_id: str, *overrides: Mapping[str, Any]) -> dict[str, float]:
    """Defaults <- site-level <- role-level overrides (later layers win), each value checked.

    Raises ParamError for an unknown clause, an unknown parameter, a non-number or an
    out-of-range value, so a bad site file fails at start-up rather than mid-shift.
    """
    clause = _clause(clause_id, clause_id)
    params = dict(clause.params)
    for layer in overrides:
        if not isinstance(layer, Mapping):
            raise ParamError(
                f"{clause_id}: overrides must be a mapping, got {type(layer).__name__}", clause_id=clause_id
            )
        for key, value in layer.items():
            params[key] = _check_param(clause, key, value, clause_id)
    return params


def validate_overrides(
    mapping: Mapping[str, Mapping[str, Any]], where: str = "clauses"
) -> dict[str, dict[str, float]]:
    """Check a site's {clause_id: {param: value}} block; return it with values as floats.

    Raises ParamError on the first problem, with the key path (e.g.
    `clauses.d5.stance.01.sustain_s`) at the start of the message.
    """
    if not isinstance(mapping, Mapping):
        raise ParamError(f"{where}: expected a mapping of clause ids, got {type(mapping).__name__}")
    checked: dict[str, dict[str, float]] = {}
    for clause_id, params in mapping.items():
        path = f"{where}.{clause_id}"
        clause = _clause(str(clause_id), path)
        if not isinstance(params, Mapping):
            raise ParamError(
                f"{path}: expected a mapping of parameters, got {type(params).__name__}", clause_id=clause.id
            )
        checked[clause.id] = {
            key: _check_param(clause, key, value, f"{path}.{key}") for key, value in params.items()
        }
    return checked


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def _key_defaults(clause: Clause) -> str:
    # grace_s and cooldown_s are the same for almost every alert; show what is specific.
    shown = {k: v for k, v in clause.params.items() if k not in _ALERT_PARAMS}
    return " ".join(f"{k}={_fmt(v)}" for k, v in shown.items()) or "-"


def format_clauses(role: str | None = None, as_json: bool = False) -> str:
    """The text behind `postwatch clauses [--role R] [--json]`.

    The table is for a manager reading a terminal; the JSON (full entries, Chinese kept
    unescaped) is for tools and the web UI.
    """
    catalogue = load_catalogue()
    clauses = list(catalogue.clauses) if role is None else catalogue.for_role(role)
    if as_json:
        return json.dumps([clause.model_dump() for clause in clauses], ensure_ascii=False, indent=2)
    # Roles go last: their lists are long, and the other columns stay aligned before them.
    header = ("ID", "KIND", "DEFAULTS", "ROLES")
    rows = [(c.id, c.kind, _key_defaults(c), ", ".join(c.roles)) for c in clauses]
    widths = [max([_width(h)] + [_width(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(_pad(cell, w) for cell, w in zip(cells, widths, strict=True)).rstrip()

    lines = [line(header)]
    group = None
    for clause, row in zip(clauses, rows, strict=True):
        if clause.group != group:
            group = clause.group
            lines.append(f"[{group}]")
        lines.append(line(row))
        lines.append(f"    {clause.section}  {clause.text_zh[0]}")
        lines.append(f"    {clause.gloss}")
    if not clauses:
        lines.append("(no clauses)")
    return "\n".join(lines)
