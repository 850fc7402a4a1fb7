"""The rule engine: observations in, violation events out.

Why an engine on top of the checks: a check judges one person in one frame, but an
alert is about behaviour held over time by one tracked person. For every frame the
engine keeps a short history per track, runs each active clause's checks (`rules.checks`)
on each person, feeds the per-frame states into a `GateBank` keyed by (gate, track_id)
and turns the gates' opened / updated / closed events into `Violation`s: one alert per
behaviour, with the behaviour's start (not the time the sustain elapsed), its end, the
clearest frame for the snapshot, and a message that names the behaviour and quotes the
clause.

Which clauses run is decided by the camera's role (the catalogue's `roles`), optionally
narrowed by `clauses`; per-clause parameters come from the catalogue with the site's
`overrides` on top, checked up front so a bad site file fails at start-up (`ParamError`
names the key).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from rules.appearance import APPEARANCE_RULES
from rules.catalogue import (
    Catalogue,
    Clause,
    ParamError,
    load_catalogue,
    resolve_params,
    validate_overrides,
)
from rules.checks import RULES, Check, GateSpec, PersonHistory
from rules.guard import GUARD_RULES
from rules.temporal import GateBank, GateEvent, TemporalParams
from rules.violation import Violation
from vision.observation import FrameObservation

ALL_RULES: dict[str, tuple[GateSpec, ...]] = {**RULES, **APPEARANCE_RULES, **GUARD_RULES}

_EPS = 1e-6  # as rules.temporal: float noise tolerated in time comparisons


@dataclass
class ViolationEvent:
    """A change to one violation: "opened", "updated" (a reminder) or "closed".

    `violation` is a copy taken at `t` (later frames do not change it); `index` is the
    violation's position in `RuleEngine.violations`, the same for all its events.
    """

    kind: str
    violation: Violation
    t: float
    index: int = -1


@dataclass
class _Gate:
    """One active gate: the clause it belongs to, its check and its clause's resolved params."""

    gate_id: str
    clause: Clause
    spec: GateSpec
    params: dict[str, float]
    temporal: TemporalParams


@dataclass
class _Run:
    """What the engine remembers of one gate's current run of True frames (one track)."""

    start_s: float
    frames: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # behaviour key -> True frames showing it
    texts: dict[str, str] = field(default_factory=dict)  # behaviour key -> description at its clearest
    _text_score: dict[str, float] = field(default_factory=dict)
    best: Check | None = None  # the check of the clearest frame (the snapshot frame)
    index: int | None = None  # the violation's index in RuleEngine.violations, once opened

    def add(self, check: Check, is_best: bool) -> None:
        self.frames += 1
        score = check.score if check.score is not None else check.confidence
        behaviours = check.behaviours or {"_": check.message}
        for key, text in behaviours.items():
            self.counts[key] = self.counts.get(key, 0) + 1
            if score >= self._text_score.get(key, -math.inf):
                self.texts[key], self._text_score[key] = text, score
        if is_best or self.best is None:
            self.best = check

    def describe(self) -> str:
        """The behaviours of the run, most frequent first."""
        keys = sorted(self.counts, key=lambda k: -self.counts[k])
        return "; ".join(self.texts[k] for k in keys)


def temporal_params(spec: GateSpec, params: Mapping[str, float]) -> TemporalParams:
    """The gate's TemporalParams: the clause's, with a clause-specific sustain mapped onto sustain_s.

    Why a mapping: the catalogue names sustains after what they mean (work_zone_sustain_s,
    max_call_s, lying_on_desk_s) while the temporal layer has a single sustain_s per gate.
    """
    p: dict[str, Any] = dict(params)
    if spec.sustain_param is not None:
        p["sustain_s"] = params[spec.sustain_param]
    elif "sustain_s" not in p and spec.default_sustain_s is not None:
        p["sustain_s"] = spec.default_sustain_s
    return TemporalParams.from_params(p)


def _validate_custom(
    overrides: Mapping[str, Mapping[str, Any]], catalogue: Catalogue
) -> dict[str, dict[str, float]]:
    """validate_overrides for a catalogue other than the packaged one (same rules, same errors)."""
    if not isinstance(overrides, Mapping):
        raise ParamError(f"clauses: expected a mapping of clause ids, got {type(overrides).__name__}")
    out: dict[str, dict[str, float]] = {}
    for clause_id, layer in overrides.items():
        path = f"clauses.{clause_id}"
        if clause_id not in catalogue:
            raise ParamError(f"{path}: unknown clause {clause_id!r}", clause_id=str(clause_id))
        clause = catalogue.get(clause_id)
        if not isinstance(layer, Mapping):
            raise ParamError(f"{path}: expected a mapping of parameters", clause_id=clause.id)
        checked = {}
        for key, value in layer.items():
            if key not in clause.params:
                known = ", ".join(sorted(clause.params)) or "none"
                raise ParamError(
                    f"{path}.{key}: unknown parameter {key!r} (known: {known})", clause_id=clause.id, key=key
                )
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value < 0:
                raise ParamError(
                    f"{path}.{key}: parameter {key!r} must be a number >= 0, got {value!r}",
                    clause_id=clause.id,
                    key=key,
                )
            checked[key] = float(value)
        out[clause.id] = checked
    return out


class RuleEngine:
    """Runs the clauses of one camera's role over a stream of observations.

    `overrides` is the site's {clause_id: {param: value}} block; every entry is checked
    (unknown clause or parameter, non-number, out of range -> ParamError naming the key),
    including entries for clauses this camera does not run. `clauses` narrows the role's
    clauses; ids that do not apply to the role, or have no rule implemented yet, are left
    out and listed in `skipped` with the reason.
    """

    def __init__(
        self,
        camera: str,
        role: str = "front_desk",
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        clauses: Iterable[str] | None = None,
        catalogue: Catalogue | None = None,
        forget_s: float = 5.0,
    ) -> None:
        self.camera = camera
        self.role = role
        packaged = load_catalogue()
        self.catalogue = catalogue if catalogue is not None else packaged
        custom = self.catalogue is not packaged
        checked = (_validate_custom if custom else lambda o, _c: validate_overrides(o))(
            overrides or {}, self.catalogue
        )
        role_clauses = self.catalogue.for_role(role)  # ValueError for an unknown role
        self.skipped: dict[str, str] = {}
        if clauses is not None:
            wanted = list(clauses)
            for clause_id in wanted:
                if clause_id not in self.catalogue:
                    self.catalogue.get(clause_id)  # KeyError with a suggestion
                if not self.catalogue.get(clause_id).applies_to(role):
                    self.skipped[clause_id] = f"does not apply to role {role!r}"
            selected = [c for c in role_clauses if c.id in wanted]
        else:
            selected = role_clauses

        self._gates: list[_Gate] = []
        for clause in selected:
            specs = ALL_RULES.get(clause.rule)
            if specs is None:
                self.skipped[clause.id] = f"no rule implemented yet ({clause.rule})"
                continue
            layer = checked.get(clause.id, {})
            params = dict(clause.params) | layer if custom else resolve_params(clause.id, layer)
            for spec in specs:
                try:
                    temporal = temporal_params(spec, params)
                except ValueError as exc:  # the catalogue's ranges make this unreachable; keep the key
                    raise ParamError(f"{clause.id}: {exc}", clause_id=clause.id) from exc
                self._gates.append(_Gate(spec.gate_id(clause.id), clause, spec, params, temporal))
        self.clauses: list[str] = list(dict.fromkeys(g.clause.id for g in self._gates))
        self.params: dict[str, dict[str, float]] = {g.clause.id: g.params for g in self._gates}
        self.gate_params: dict[str, TemporalParams] = {g.gate_id: g.temporal for g in self._gates}

        self.forget_s = float(forget_s)
        self._bank = GateBank(self.gate_params.__getitem__, forget_s=self.forget_s)
        self._by_id = {g.gate_id: g for g in self._gates}
        self._histories: dict[int, PersonHistory] = {}
        self._runs: dict[tuple[str, Hashable], _Run] = {}
        self._violations: list[Violation] = []
        self._last_t: float | None = None

    # -- queries ------------------------------------------------------------------------------

    @property
    def violations(self) -> list[Violation]:
        """Every violation so far, in opening order (closed ones have end_s)."""
        return list(self._violations)

    def open_violations(self) -> list[Violation]:
        """The ongoing violations (their details carry the duration up to the last frame)."""
        return [v for v in self._violations if v.open]

    @property
    def gates(self) -> list[str]:
        """The active gate ids (clause ids, plus sub-gates such as d1.floor.03/long)."""
        return [g.gate_id for g in self._gates]

    # -- updates ------------------------------------------------------------------------------

    def update(self, obs: FrameObservation) -> list[ViolationEvent]:
        """Run every active check on every person of the frame; return the events it produced."""
        t = float(obs.t)
        if self._last_t is not None and t < self._last_t:
            t = self._last_t  # time never goes backwards (as rules.temporal)
        self._last_t = t
        events: list[ViolationEvent] = []
        seen: set[int] = set()
        for person in obs.persons:
            track = int(person.track_id)
            if track in seen:  # a duplicated track id in one frame: the first one counts
                continue
            seen.add(track)
            history = self._histories.get(track)
            if history is None:
                history = self._histories[track] = PersonHistory(track)
            history.add(t, person)
            for gate in self._gates:
                check = gate.spec.check(person, history, gate.params)
                events.extend(self._feed(gate, track, t, check))

        for gate_id, key, event in self._bank.expire(t):
            events.extend(
                self._on_closed(self._by_id[gate_id], key, self._runs.pop((gate_id, key), None), event)
            )
        for track in [
            k for k, h in self._histories.items() if h.last_t is None or t - h.last_t >= self.forget_s - _EPS
        ]:
            del self._histories[track]
            for run_key in [rk for rk in self._runs if rk[1] == track]:
                del self._runs[run_key]
        self._refresh_open(t)
        return events

    def finish(self, t: float | None = None) -> list[ViolationEvent]:
        """The stream ended (at `t`, default the last frame): close every open violation at its
        last True frame, drop pending runs and forget all tracks."""
        if t is None:
            t = self._last_t
        if t is None:
            return []
        events: list[ViolationEvent] = []
        for gate_id, key, event in self._bank.finish(float(t)):
            events.extend(
                self._on_closed(self._by_id[gate_id], key, self._runs.pop((gate_id, key), None), event)
            )
        self._runs.clear()
        self._histories.clear()
        return events

    # -- internals ----------------------------------------------------------------------------

    def _feed(self, gate: _Gate, track: int, t: float, check: Check) -> list[ViolationEvent]:
        key = (gate.gate_id, track)
        g = self._bank.gate(gate.gate_id, track)
        run = self._runs.get(key)
        event = g.update(t, check.state, check.confidence, check.score)
        out: list[ViolationEvent] = []
        if event is not None and event.kind == "closed":
            # This frame ended the previous violation; if it is True it also starts a new run.
            out.extend(self._on_closed(gate, track, run, event))
            run = None
        if g.start_s is None:
            self._runs.pop(key, None)
            return out
        if run is None or abs(run.start_s - g.start_s) > _EPS:
            run = self._runs[key] = _Run(g.start_s)
        if check.state is True:
            run.add(check, is_best=g.best_t is not None and abs(g.best_t - t) <= _EPS)
        if event is not None and event.kind in ("opened", "updated"):
            out.append(self._on_open(gate, track, run, event))
        return out

    def _on_open(self, gate: _Gate, track: int, run: _Run, event: GateEvent) -> ViolationEvent:
        if run.index is None:
            violation = event.to_violation(gate.clause.id, self.camera, track)
            run.index = len(self._violations)
            self._violations.append(violation)
        violation = self._violations[run.index]
        self._fill(violation, gate, run, event.t, event)
        return ViolationEvent(event.kind, _copy(violation), event.t, run.index)

    def _on_closed(
        self, gate: _Gate, track: Hashable, run: _Run | None, event: GateEvent
    ) -> list[ViolationEvent]:
        if run is None or run.index is None:  # cannot happen: a run that opened keeps its record
            violation = event.to_violation(
                gate.clause.id, self.camera, track if isinstance(track, int) else None
            )
            index = len(self._violations)
            self._violations.append(violation)
            run = _Run(event.start_s, index=index)
        violation = self._violations[run.index]  # type: ignore[index]
        violation.end_s = event.end_s
        self._fill(violation, gate, run, event.t, event)
        return [ViolationEvent("closed", _copy(violation), event.t, run.index)]  # type: ignore[arg-type]

    def _fill(
        self, violation: Violation, gate: _Gate, run: _Run, now: float, event: GateEvent | None
    ) -> None:
        """Message, details, confidence and snapshot of a violation from its run and gate."""
        if event is not None:
            violation.confidence = event.confidence
            violation.snapshot_t = event.best_t
        behaviour = run.describe() or (run.best.message if run.best else gate.clause.gloss)
        if gate.spec.title:
            behaviour = f"{gate.spec.title.format(**gate.params)}: {behaviour}"
        violation.message = f"{behaviour} [{gate.clause.id} {gate.clause.section}: {gate.clause.text_zh[0]}]"
        details: dict[str, Any] = dict(run.best.details) if run.best else {}
        details.pop("behaviours", None)
        duration = violation.duration(now)
        details.update(
            gate=gate.gate_id,
            behaviours={k: n for k, n in sorted(run.counts.items(), key=lambda kv: -kv[1]) if k != "_"},
            frames=run.frames,
            duration_s=round(duration, 3),
        )
        if gate.spec.duration_key:
            details[gate.spec.duration_key] = round(duration, 3)
        if gate.spec.sustain_param:
            details[gate.spec.sustain_param] = gate.params[gate.spec.sustain_param]
        violation.details = details

    def _refresh_open(self, t: float) -> None:
        """Keep open violations current: duration up to now, mean confidence, clearest frame."""
        for (gate_id, track), run in self._runs.items():
            if run.index is None or not self._violations[run.index].open:
                continue
            g = self._bank.gate(gate_id, track)
            violation = self._violations[run.index]
            violation.confidence = g.confidence
            if g.best_t is not None:
                violation.snapshot_t = g.best_t
            self._fill(violation, self._by_id[gate_id], run, t, None)


def _copy(violation: Violation) -> Violation:
    return replace(violation, details=copy.deepcopy(violation.details))


def run_rules(
    observations: Iterable[FrameObservation],
    camera: str = "camera",
    role: str = "front_desk",
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    clauses: Iterable[str] | None = None,
) -> list[Violation]:
    """Run a whole recorded stream through a fresh engine and return every violation (all closed)."""
    engine = RuleEngine(camera, role, overrides, clauses)
    for obs in observations:
        engine.update(obs)
    engine.finish()
    return engine.violations
