"""The temporal layer every rule shares: per-frame states in, violations out.

Why: a rule decides per frame whether a person (or a zone) is in a bad state,
but a supervisor judges behaviour *held over time*. A single frame of a
lowered head is not "reading on post"; two frames lost to motion blur must not
split one phone call into two alerts; a person who stops for a second and
starts again must not get a fresh alert every time. `Gate` turns the noisy
per-frame stream for one (clause, key) pair into opened / updated / closed
events, and `GateBank` keeps one gate per (clause, key).

Per-frame state: True (breaking the clause), False (keeping it), None
(unknown: the landmarks cannot tell). The caller calls `update` only when it
has a frame for that key; a frame that is missing (the person was not
detected) is simply time passing.

Semantics (all comparisons tolerate 1e-6 s of float noise):

* A *run* starts at the first True frame; its `start_s` is that frame's time,
  never the time the sustain elapsed.
* The run *opens* a violation at the first True frame where the run has lasted
  `sustain_s` (``elapsed >= sustain_s``). With ``sustain_s == 0`` the first
  True frame opens it, so a single photo can produce a violation. Only a True
  frame can open: False and None frames never do.
* Gaps are measured from the last True frame. A pending run survives while
  the gap is shorter than `grace_s`: the next True frame continues it (a
  two-frame dropout at 5 fps is a 0.6 s gap, bridged by the default 1.0 s). A
  False frame at a gap >= `grace_s` drops the pending run (no event), and a
  True frame at such a gap starts a new run there.
* An *open* violation uses `clear_s` (default `grace_s`) instead: it closes on
  the first known frame whose gap from the last True frame is >= `clear_s`
  (hysteresis: ``clear_s > grace_s`` keeps it open through longer gaps).
  The closed event's `end_s` is the time of the last True frame - when the
  behaviour ended, not when we noticed.
* None frames freeze the gate's clock ("neither advances nor resets"): the
  time between the previous frame and a None frame counts neither towards the
  sustain nor towards the grace / clear gap, and a None frame can neither open
  nor close. The gate keeps an effective clock that advances only over
  intervals ending in a known (True/False) frame; sustain and gaps are measured
  on it, while `start_s`, `end_s`, cooldown and repeat use real time. The
  exception: once the last known frame is `stale_s` (default
  ``max(clear_s, grace_s) * 5``) or more in the past, the gate stops trusting
  the run - a pending run is dropped and an open violation closes at its last
  True frame, on the next frame of any kind.
* Cooldown: after a violation closes at `end_s`, the same gate may start a new
  run, but that run opens no earlier than ``end_s + cooldown_s`` (at the first
  True frame at or after that time, if it has also lasted `sustain_s`). A
  dropped pending run sets no cooldown.
* Repeat: with `repeat_s`, an open violation emits an "updated" event on the
  first True frame at least `repeat_s` after the last opened/updated event.
* One event per frame: when a True frame closes an open violation (its gap
  reached `clear_s`, or the run went stale) it returns the "closed" event and
  starts the new run; that run can open no earlier than the next True frame.
* `finish(t)` (the stream ended) closes an open violation at its last True
  frame and drops a pending run.

Times must not go backwards for one gate; a frame older than the previous
one is treated as simultaneous with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from rules.violation import Violation

_EPS = 1e-6  # seconds of float noise tolerated in every time comparison (0.2 * 3 != 0.6)


@dataclass(frozen=True)
class TemporalParams:
    """How long a bad state must hold, and how it may flicker, before it is a violation."""

    sustain_s: float = 5.0  # the bad state must hold this long before the violation opens (0 = first frame)
    grace_s: float = 1.0  # gaps shorter than this neither reset a pending run nor close (default clear)
    clear_s: float | None = None  # an open violation closes after this long without True (default grace_s)
    cooldown_s: float = 60.0  # after a close, the same key cannot open again until end_s + cooldown_s
    repeat_s: float | None = None  # while open, emit an "updated" reminder every repeat_s
    stale_s: float | None = None  # only None for this long ends the run (default max(clear, grace) * 5)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f"TemporalParams.{f.name} must be a finite number >= 0, got {value!r}")
        if self.repeat_s is not None and self.repeat_s <= 0:
            raise ValueError(f"TemporalParams.repeat_s must be > 0, got {self.repeat_s!r}")

    @property
    def clear(self) -> float:
        """The effective clear time: `clear_s`, or `grace_s` when unset."""
        return self.grace_s if self.clear_s is None else self.clear_s

    @property
    def stale(self) -> float:
        """The effective stale time: `stale_s`, or ``max(clear, grace_s) * 5`` when unset."""
        return max(self.clear, self.grace_s) * 5.0 if self.stale_s is None else self.stale_s

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TemporalParams:
        """Build from a clause's parameter mapping, taking the keys this class knows and ignoring the rest."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: (None if v is None else float(v)) for k, v in params.items() if k in known}
        return cls(**kwargs)


@dataclass
class GateEvent:
    """A change in one gate's violation: "opened", "updated" (reminder) or "closed"."""

    kind: str  # "opened" | "updated" | "closed"
    start_s: float  # when the bad state began (first True of the run), not when the sustain elapsed
    end_s: float | None  # closed: the time of the last True frame; None while open
    t: float  # time of the frame (or finish/expire call) that produced the event, for latency
    confidence: float  # mean confidence of the True frames of the run
    best_t: float  # the frame where the violation was clearest (highest score, else highest confidence)
    best_score: float | None = None  # the score at best_t, if scores were given

    def to_violation(
        self,
        clause: str,
        camera: str,
        track_id: int | None,
        message: str = "",
        details: dict[str, Any] | None = None,
    ) -> Violation:
        """The `Violation` this event describes (open for opened/updated, closed for closed)."""
        return Violation(
            clause=clause,
            camera=camera,
            track_id=track_id,
            start_s=self.start_s,
            end_s=self.end_s,
            confidence=self.confidence,
            message=message,
            details=dict(details or {}),
            snapshot_t=self.best_t,
        )


class Gate:
    """State machine for one (clause, key) pair: idle -> pending -> open -> (closing) -> idle/cooldown.

    See the module docstring for the exact semantics.
    """

    def __init__(self, params: TemporalParams):
        self.params = params
        self._tau = 0.0  # effective clock: real time minus the intervals that ended in a None frame
        self._last_t: float | None = None  # last update of any kind
        self._last_known_t: float | None = None  # last True/False frame
        self._open = False
        self._cooldown_until = -math.inf
        self._reset_run()

    def _reset_run(self) -> None:
        self._start_t: float | None = None
        self._start_tau = 0.0
        self._last_bad_t: float | None = None
        self._last_bad_tau = 0.0
        self._conf_sum = 0.0
        self._n_bad = 0
        self._best_t: float | None = None
        self._best_key: tuple[float, float] = (-math.inf, -math.inf)
        self._best_score: float | None = None
        self._last_emit_t: float | None = None

    # -- queries -----------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """A violation is open (opened and not yet closed)."""
        return self._open

    @property
    def is_pending(self) -> bool:
        """A run of bad frames is in progress but has not opened a violation (yet)."""
        return self._start_t is not None and not self._open

    @property
    def start_s(self) -> float | None:
        """Time of the first True frame of the current run, None when idle."""
        return self._start_t

    @property
    def last_bad_s(self) -> float | None:
        """Time of the last True frame of the current run, None when idle."""
        return self._last_bad_t

    @property
    def best_t(self) -> float | None:
        """The clearest frame of the current run (highest score, else highest confidence)."""
        return self._best_t

    @property
    def best_score(self) -> float | None:
        return self._best_score

    @property
    def confidence(self) -> float:
        """Mean confidence of the True frames of the current run (0 when idle)."""
        return self._conf_sum / self._n_bad if self._n_bad else 0.0

    @property
    def last_t(self) -> float | None:
        """Time of the last update of any kind."""
        return self._last_t

    @property
    def cooldown_until(self) -> float:
        """A new violation cannot open before this time (-inf when no violation has closed)."""
        return self._cooldown_until

    def in_cooldown(self, t: float) -> bool:
        return t < self._cooldown_until - _EPS

    # -- updates -----------------------------------------------------------

    def update(
        self, t: float, state: bool | None, confidence: float = 1.0, score: float | None = None
    ) -> GateEvent | None:
        """Feed one frame's state for this key; returns the event it produced, if any."""
        t = float(t)
        dt = 0.0 if self._last_t is None else max(0.0, t - self._last_t)
        if self._last_t is None or t > self._last_t:
            self._last_t = t
        if state is not None:
            self._tau += dt

        event: GateEvent | None = None
        if self._start_t is not None:
            stale = self._last_known_t is not None and t - self._last_known_t >= self.params.stale - _EPS
            limit = self.params.clear if self._open else self.params.grace_s
            gap_over = state is not None and self._tau - self._last_bad_tau >= limit - _EPS
            if stale or gap_over:
                event = self._end_run(t)

        if state is None:
            return event
        self._last_known_t = t
        if not state:
            return event

        if self._start_t is None:
            self._start_t, self._start_tau = t, self._tau
        self._record_bad(t, confidence, score)
        if event is not None:  # this frame already closed the previous violation
            return event
        if not self._open:
            sustained = self._tau - self._start_tau >= self.params.sustain_s - _EPS
            if sustained and not self.in_cooldown(t):
                self._open = True
                self._last_emit_t = t
                return self._event("opened", t)
            return None
        repeat = self.params.repeat_s
        if repeat is not None and self._last_emit_t is not None and t - self._last_emit_t >= repeat - _EPS:
            self._last_emit_t = t
            return self._event("updated", t)
        return None

    def finish(self, t: float) -> GateEvent | None:
        """The stream or key ended at `t`: close an open violation at its last True; drop a pending run."""
        if self._start_t is None:
            return None
        return self._end_run(float(t))

    def _record_bad(self, t: float, confidence: float, score: float | None) -> None:
        self._last_bad_t, self._last_bad_tau = t, self._tau
        self._conf_sum += float(confidence)
        self._n_bad += 1
        key = (-math.inf if score is None else float(score), float(confidence))
        if self._best_t is None or key > self._best_key:
            self._best_t, self._best_key, self._best_score = t, key, score

    def _end_run(self, t: float) -> GateEvent | None:
        event = None
        if self._open:
            event = self._event("closed", t)
            assert event.end_s is not None
            self._cooldown_until = event.end_s + self.params.cooldown_s
            self._open = False
        self._reset_run()
        return event

    def _event(self, kind: str, t: float) -> GateEvent:
        assert self._start_t is not None and self._best_t is not None
        return GateEvent(
            kind=kind,
            start_s=self._start_t,
            end_s=self._last_bad_t if kind == "closed" else None,
            t=t,
            confidence=self.confidence,
            best_t=self._best_t,
            best_score=self._best_score,
        )


GateKey = tuple[str, Hashable]


class GateBank:
    """Gates keyed by (clause_id, key) created on demand with per-clause params.

    `expire` closes gates whose key was not seen for `forget_s` (a track that
    left the picture): their violation ends at its last True frame. A gate
    still in cooldown is kept (idle) after that, so a key that comes back soon
    cannot re-open at once; it is forgotten once its cooldown has passed.
    """

    def __init__(self, params_for: Callable[[str], TemporalParams], forget_s: float = 5.0):
        self.params_for = params_for
        self.forget_s = float(forget_s)
        self._gates: dict[GateKey, Gate] = {}
        self._params: dict[str, TemporalParams] = {}

    def gate(self, clause: str, key: Hashable) -> Gate:
        """The gate for (clause, key), created with the clause's params if new."""
        gate = self._gates.get((clause, key))
        if gate is None:
            params = self._params.get(clause)
            if params is None:
                params = self._params[clause] = self.params_for(clause)
            gate = self._gates[(clause, key)] = Gate(params)
        return gate

    def update(
        self,
        clause: str,
        key: Hashable,
        t: float,
        state: bool | None,
        confidence: float = 1.0,
        score: float | None = None,
    ) -> GateEvent | None:
        return self.gate(clause, key).update(t, state, confidence, score)

    def expire(self, t: float) -> list[tuple[str, Hashable, GateEvent]]:
        """Close the gates not updated for `forget_s`; forget those with no cooldown left."""
        out: list[tuple[str, Hashable, GateEvent]] = []
        for (clause, key), gate in list(self._gates.items()):
            if gate.last_t is not None and t - gate.last_t < self.forget_s - _EPS:
                continue
            event = gate.finish(t)
            if event is not None:
                out.append((clause, key, event))
            if not gate.in_cooldown(t):
                del self._gates[(clause, key)]
        return out

    def finish(self, t: float) -> list[tuple[str, Hashable, GateEvent]]:
        """The stream ended: close every open violation, drop every pending run, forget all gates."""
        out = [
            (clause, key, ev)
            for (clause, key), gate in self._gates.items()
            if (ev := gate.finish(t)) is not None
        ]
        self._gates.clear()
        return out

    def open_keys(self) -> list[tuple[str, Hashable]]:
        """The (clause, key) pairs with an ongoing violation."""
        return [ck for ck, gate in self._gates.items() if gate.is_open]

    def __len__(self) -> int:
        return len(self._gates)
