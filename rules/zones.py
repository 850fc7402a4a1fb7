"""Post duty over time: who stands on which zone, and the presence clauses that follow from it.

Why a monitor of its own: the person-level engine (`rules.engine`) judges what one tracked
person does, but the presence clauses are about a *place* over time - a post with nobody on
it, a relief that takes over, a shift that starts with the post empty, a stranger behind the
desk, guards away from standby. `ZoneMonitor` keeps, per zone of one camera, which tracks are
on it (membership), turns membership into staffed / unstaffed intervals and raises:

* `d1.reception.02` post abandoned: a `post` zone holds fewer staff than its `min_staff` for
  `empty_s` (default 60 s), only while `camera.is_open(t)`. Zone-level (track_id None). The
  alert opens when the wait has passed, with `start_s` = when the post became short; it stays
  open while the post is short and closes when staff are back (`end_s` = their arrival), with
  the absence's full length in `details["absence_s"]` and who left in `details["left_by"]`.
  Only a *departure* starts an absence: a post that nobody has staffed yet (before the first
  arrival, or after the site reopened) is lateness (`d1.floor.02`), not abandonment.
* `d1.reception.04` handover: a departure and a different staff member's arrival within
  `handover_grace_s` (default 20 s) of each other is a handover, reported in `handovers`, not
  an absence. The alert cannot know the future, so the wait before it opens is `empty_s`,
  extended to `max(empty_s, handover_grace_s)` only while a possible relief is in sight (a
  person in view, other than whoever left, that `is_staff` does not rule out). Hence: a relief
  in sight within the grace raises no alert; with nobody in sight the post alerts after
  `empty_s` (as the chair clip needs: empty_s 0.5 opens 0.5 s after he walks out). With the
  catalogue's defaults (empty_s 60 > grace 20) the extension never matters.
* `d1.floor.14` approved leave: while an approval covers the post (`Site.approvals` for this
  camera and post, mapped to stream time with `camera.start_time`, or `approve(...)` at run
  time in stream seconds) the absence raises no alert; an alert already open closes when the
  approval starts, and a leave that overruns its approval alerts `empty_s` after the approval
  ends. Covered absences are listed in `approved_absences` with the reasons.
* `d1.floor.02` late at shift start: for every `camera.shifts` entry (needs
  `camera.start_time`) the post must be staffed within `late_tolerance_s` of the shift start;
  if not, a zone-level violation opens at the shift start and closes when staff arrive
  (`details["minutes_late"]`). A shift that started before the stream did is not judged.
* `d1.floor.08` intruder: a person whom `is_staff` calls False (explicitly) inside a
  `staff_only` zone for `sustain_s` (10 s); per track, through the shared `Gate`.
* `d11.standby.03`: a guard on a `standby` zone leaves it for longer than `sustain_s`
  (120 s); per track (the guard who left). A guard who comes back under a new track id (the
  tracker loses people who leave the picture) closes the oldest open leave.
* `d11.standby.08`: more than `max_absent_share` of the guards (the most seen on the guard
  `post` and `standby` zones since the stream or the last shift start) away from those zones
  for `sustain_s` (300 s); zone-level, through the shared `Gate`.

Membership is by the feet (`PersonObservation.foot_point`) inside the zone polygon, with an
entry debounce (`ZoneTiming.entry_s`: a person crossing the zone's corner is not on post) and
an exit grace (`ZoneTiming.exit_grace_s`: a person missed by the detector or hidden behind a
customer for a few frames has not left). Feet *seen* outside the zone end the membership at
once - the detector saw where they stand - so a walk-out is dated to the frame it is seen.
Times are backdated like the temporal layer's: a stay starts at the first frame inside, an
absence at the first frame without the person inside.

Staff or customer: `is_staff(person, zone)` answers True / False / None (unknown), e.g.
`calibration.uniform.StaffClassifier.is_staff`. A track keeps its last known answer per
zone. In `post` and `standby` zones unknown counts as staff (no evidence of an empty post);
in `staff_only` zones unknown is neither. Without a callable, anyone whose feet are in a
`post` or `standby` zone is staff of its role ("no uniform enrolled") and nobody is judged in
a `staff_only` zone, so `d1.floor.08` only fires with an `is_staff` that says False.

Which clauses run: all of the above for every zone of their kind; the catalogue's `roles`
lists are not used to filter post duty (the chair demo's post is a `front_desk` post while
d1.reception.02 lists door_reception). Parameters come from the catalogue with the site's
overrides for the zone's role on top (`Site.overrides_for`) and then `overrides`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any

from shapely.geometry import Point
from shapely.prepared import prep

from calibration.site import Camera, Shift, Site, Zone
from rules.catalogue import Clause, load_catalogue, resolve_params, validate_overrides
from rules.engine import ViolationEvent
from rules.temporal import GateBank, GateEvent, TemporalParams
from rules.violation import Violation
from vision.observation import FrameObservation, PersonObservation

IsStaff = Callable[[PersonObservation, Zone], bool | None]

ABANDONED = "d1.reception.02"
HANDOVER = "d1.reception.04"
APPROVED_LEAVE = "d1.floor.14"
LATE = "d1.floor.02"
INTRUDER = "d1.floor.08"
STANDBY_LEFT = "d11.standby.03"
GUARDS_OUT = "d11.standby.08"

_EPS = 1e-6  # as rules.temporal: float noise tolerated in time comparisons
_DAY_S = 86400.0


@dataclass(frozen=True)
class ZoneTiming:
    """How membership is debounced, and the shift-start tolerance. Not (yet) catalogue params.

    Why constants: they describe the detector and tracker (missed frames, jitter at a polygon
    edge) more than a site's rules; a site with a slow or flaky camera may still want them.
    """

    entry_s: float = 0.4  # in the zone this long before counting (a walk across a corner is not a stay)
    exit_grace_s: float = 2.0  # unseen this long before "gone" (missed detections, hidden behind a customer)
    late_tolerance_s: float = 60.0  # the post must be staffed within this long of a shift start
    forget_s: float = 5.0  # per-track gates not fed for this long close (the person left the picture)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"ZoneTiming.{f.name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class Leave:
    """An approved leave (d1.floor.14) in stream seconds: the post may stand empty in [start_s, end_s)."""

    post: str
    start_s: float
    end_s: float
    reason: str = ""
    source: str = "api"  # "site" (Site.approvals) or "api" (ZoneMonitor.approve)

    def covers(self, t: float) -> bool:
        return self.start_s - _EPS <= t < self.end_s - _EPS


@dataclass
class Handover:
    """A relief took over the post (d1.reception.04): a report, not an alert."""

    zone: str
    from_track: int | None
    to_track: int
    left_s: float
    arrived_s: float
    gap_s: float  # 0 when the relief arrived before the other left

    def to_dict(self) -> dict[str, Any]:
        return {
            "clause": HANDOVER,
            "zone": self.zone,
            "from_track": self.from_track,
            "to_track": self.to_track,
            "left_s": round(self.left_s, 3),
            "arrived_s": round(self.arrived_s, 3),
            "gap_s": round(self.gap_s, 3),
        }


@dataclass
class Absence:
    """One stretch of a post short of staff, from the departure to the return (or the stream's end)."""

    zone: str
    start_s: float
    end_s: float | None = None
    left_by: int | None = None
    returned_by: int | None = None
    reasons: list[str] = field(default_factory=list)  # approvals that covered part of it (d1.floor.14)
    approved_s: float = 0.0  # how much of it an approval covered
    alerts: list[int] = field(default_factory=list)  # indices of the d1.reception.02 violations it raised
    during_open_hours: bool = True
    ongoing: bool = False  # the stream ended before anyone came back

    @property
    def approved(self) -> bool:
        return bool(self.reasons)

    @property
    def absence_s(self) -> float:
        return 0.0 if self.end_s is None else max(0.0, self.end_s - self.start_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "start_s": round(self.start_s, 3),
            "end_s": None if self.end_s is None else round(self.end_s, 3),
            "absence_s": round(self.absence_s, 3),
            "left_by": self.left_by,
            "returned_by": self.returned_by,
            "approved": self.approved,
            "reasons": list(self.reasons),
            "approved_s": round(self.approved_s, 3),
            "alerts": list(self.alerts),
            "during_open_hours": self.during_open_hours,
            "ongoing": self.ongoing,
        }


# -- internal state ------------------------------------------------------------------------------


@dataclass
class _Member:
    """One track on (or entering) one zone."""

    track_id: int
    first_in: float  # first frame inside of the current stay (backdated start)
    last_in: float
    confirmed: bool = False  # inside for entry_s: counts
    gone_at: float | None = None  # first frame after last_in without the person inside
    verdict: bool | None = None  # last known is_staff answer for this zone


@dataclass
class _OpenAbsence:
    record: Absence
    departed: set[int] = field(default_factory=set)  # tracks that left during it (never "relief")
    eligible: bool = True  # began during opening hours and the site has not closed since
    relief_seen: bool = False
    uncovered_since: float | None = None  # start of the current stretch without approval
    covered_until: float | None = None  # end of the last approval that covered it
    alert: int | None = None  # index of the open d1.reception.02 violation
    last_t: float = 0.0


@dataclass
class _ZoneState:
    zone: Zone
    shape: Any  # prepared polygon
    params: dict[str, dict[str, float]]  # clause id -> resolved params for this zone's role
    members: dict[int, _Member] = field(default_factory=dict)
    staffed: bool = False
    intervals: list[list[Any]] = field(default_factory=list)  # [start, end | None] staffed stretches
    absence: _OpenAbsence | None = None
    handed: set[int] = field(default_factory=set)  # arrivals already matched in a handover
    cooldown_until: float = -math.inf  # d1.reception.02 may not open again before this

    @property
    def need(self) -> int:
        return max(1, self.zone.min_staff)

    def counts(self, m: _Member) -> bool:
        """A confirmed member counts as staff here (unknown counts on post/standby, not staff_only)."""
        if not m.confirmed:
            return False
        return m.verdict is True if self.zone.kind == "staff_only" else m.verdict is not False

    def staff(self) -> list[_Member]:
        return [m for m in self.members.values() if self.counts(m)]


@dataclass
class _ShiftWatch:
    """One shift's next start, in stream seconds, and whether it is being judged late."""

    shift: Shift
    s: float
    started: bool = False
    late: int | None = None  # index of the open d1.floor.02 violation


@dataclass
class _StandbyLeave:
    track_id: int
    zone: str
    since: float
    index: int | None = None


@dataclass
class _Open:
    """An open per-gate violation (d1.floor.08, d11.standby.08) and what its message is built from."""

    index: int
    clause: Clause
    details: dict[str, Any]


class ZoneMonitor:
    """The presence clauses of one camera's zones over a stream of observations.

    `update(obs)` returns the `ViolationEvent`s ("opened" / "closed") the frame produced, like
    `RuleEngine.update`; `finish()` closes what is still open at the end of the stream. Reports
    that are not alerts: `handovers`, `absences`, `approved_absences`, `presence(zone)`.
    """

    def __init__(
        self,
        camera: Camera,
        site: Site,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        is_staff: IsStaff | None = None,
        timing: ZoneTiming | None = None,
    ) -> None:
        self.camera = camera
        self.site = site
        self.timing = timing or ZoneTiming()
        self.is_staff: IsStaff = is_staff or default_is_staff
        self.overrides = validate_overrides(overrides or {}, where="overrides")  # ParamError names the key
        catalogue = load_catalogue()
        self.clauses: dict[str, Clause] = {
            cid: catalogue.get(cid)
            for cid in (ABANDONED, HANDOVER, APPROVED_LEAVE, LATE, INTRUDER, STANDBY_LEFT, GUARDS_OUT)
        }
        self.notes: list[str] = []  # what could not be applied (shifts or approvals without start_time)

        self._zones: dict[str, _ZoneState] = {}
        for zone in camera.zones:
            if zone.kind not in ("post", "standby", "staff_only"):
                continue
            wanted = {
                "post": (ABANDONED, HANDOVER, LATE),
                "standby": (STANDBY_LEFT, LATE),
                "staff_only": (INTRUDER, LATE),
            }[zone.kind]
            params = {cid: self._resolve(cid, zone.role) for cid in wanted}
            self._zones[zone.name] = _ZoneState(zone, prep(zone.shape), params)
        guard_roles = set(self.clauses[GUARDS_OUT].roles)
        self._guard_zones = [
            z.zone.name
            for z in self._zones.values()
            if z.zone.kind == "standby" or (z.zone.kind == "post" and z.zone.role in guard_roles)
        ]
        first_guard_role = self._zones[self._guard_zones[0]].zone.role if self._guard_zones else None
        self._guards_params = self._resolve(GUARDS_OUT, first_guard_role)

        self._leaves: list[Leave] = self._site_leaves()
        self._shifts: list[_ShiftWatch] = self._shift_watches()

        self._gate_params: dict[str, TemporalParams] = {
            f"{INTRUDER}@{name}": TemporalParams.from_params(z.params[INTRUDER])
            for name, z in self._zones.items()
            if z.zone.kind == "staff_only"
        }
        self._gate_params[GUARDS_OUT] = TemporalParams.from_params(self._guards_params)
        self._bank = GateBank(self._gate_params.__getitem__, forget_s=self.timing.forget_s)
        self._gate_open: dict[tuple[str, Any], _Open] = {}
        self._intruder_keys: dict[tuple[str, int], float] = {}  # (gate id, track) -> last fed, as the bank
        self._guards_now: dict[str, Any] = {}  # d11.standby.08 counts of the last frame

        self._standby_guards: set[int] = set()  # tracks seen as staff on a standby zone
        self._standby_leaves: dict[int, _StandbyLeave] = {}
        self._standby_cooldown: dict[int, float] = {}
        self._standby_returns: list[tuple[_StandbyLeave, float, float]] = []  # (leave, end_s, t) to close
        self._roster = 0  # d11.standby.08: guards counted since the stream / last shift start

        self._violations: list[Violation] = []
        self.handovers: list[Handover] = []
        self.absences: list[Absence] = []
        self._last_t: float | None = None

    # -- configuration ----------------------------------------------------------------------------

    def _resolve(self, clause_id: str, role: str | None) -> dict[str, float]:
        site_layer = self.site.overrides_for(role).get(clause_id, {})
        return resolve_params(clause_id, site_layer, self.overrides.get(clause_id, {}))

    def _site_leaves(self) -> list[Leave]:
        """Site.approvals for this camera in stream seconds (they need camera.start_time)."""
        mine = [a for a in self.site.approvals if a.camera == self.camera.id]
        if not mine:
            return []
        if self.camera.start_time is None:
            self.notes.append(
                f"{len(mine)} approval(s) for camera {self.camera.id!r} ignored: the camera has no "
                "start_time to place them on the stream (use ZoneMonitor.approve in stream seconds)"
            )
            return []
        return [
            Leave(a.post, self._stream_s(a.start), self._stream_s(a.end), a.reason, "site")
            for a in mine
            if a.post in self._zones
        ]

    def _stream_s(self, when: datetime) -> float:
        start = self.camera.start_time
        assert start is not None
        # A naive time in the site file means the camera's local time (and the other way round).
        if (when.tzinfo is None) != (start.tzinfo is None):
            when = when.replace(tzinfo=start.tzinfo)
        return (when - start).total_seconds()

    def _shift_watches(self) -> list[_ShiftWatch]:
        if not self.camera.shifts:
            return []
        start = self.camera.start_time
        if start is None:
            self.notes.append(
                f"shifts of camera {self.camera.id!r} not judged (d1.floor.02): the camera has no start_time"
            )
            return []
        watches = []
        for shift in self.camera.shifts:
            if shift.post not in self._zones:
                self.notes.append(
                    f"shift {shift.name!r}: zone {shift.post!r} is not a post, standby or staff zone"
                )
                continue
            first = datetime.combine(start.date(), shift.start, tzinfo=start.tzinfo)
            if first < start:  # today's start is before the stream began: cannot judge it
                first += timedelta(days=1)
            watches.append(_ShiftWatch(shift, (first - start).total_seconds()))
        return watches

    # -- queries -----------------------------------------------------------------------------------

    @property
    def violations(self) -> list[Violation]:
        """Every violation so far, in opening order (closed ones have end_s)."""
        return list(self._violations)

    def open_violations(self) -> list[Violation]:
        return [v for v in self._violations if v.open]

    @property
    def approved_absences(self) -> list[Absence]:
        """Absences an approval covered (d1.floor.14), with the reasons: the report's 'approved'."""
        return [a for a in self.absences if a.approved]

    @property
    def leaves(self) -> list[Leave]:
        return list(self._leaves)

    def presence(self, zone_name: str) -> list[tuple[float, float]]:
        """The stretches when the zone held at least max(1, min_staff) staff; an ongoing one ends now."""
        state = self._state(zone_name)
        now = self._last_t if self._last_t is not None else 0.0
        return [(float(a), float(now if b is None else b)) for a, b in state.intervals]

    def members(self, zone_name: str) -> list[int]:
        """Track ids counted as staff on the zone now (for the person-level engine: who is on post)."""
        return sorted(m.track_id for m in self._state(zone_name).staff())

    def _state(self, zone_name: str) -> _ZoneState:
        if zone_name not in self._zones:
            self.camera.zone(zone_name)  # KeyError naming the camera for an unknown zone
            raise KeyError(f"zone {zone_name!r} is a {self.camera.zone(zone_name).kind} zone: not monitored")
        return self._zones[zone_name]

    # -- run-time input ------------------------------------------------------------------------------

    def approve(self, post: str, start_s: float, end_s: float, reason: str = "") -> Leave:
        """Record an approved leave (d1.floor.14) for `post` in stream seconds, e.g. from the API."""
        self._state(post)
        if not (math.isfinite(start_s) and math.isfinite(end_s)) or end_s <= start_s:
            raise ValueError(f"approval for {post!r}: end_s must be after start_s, got {start_s}..{end_s}")
        leave = Leave(post, float(start_s), float(end_s), reason, "api")
        self._leaves.append(leave)
        return leave

    def _leave_at(self, post: str, t: float) -> Leave | None:
        return next((lv for lv in self._leaves if lv.post == post and lv.covers(t)), None)

    # -- updates -----------------------------------------------------------------------------------

    def update(self, obs: FrameObservation) -> list[ViolationEvent]:
        """Membership first (so a return in this frame counts), then every presence clause."""
        t = float(obs.t)
        if self._last_t is not None and t < self._last_t:
            t = self._last_t  # time never goes backwards (as rules.temporal)
        self._last_t = t
        seen: dict[int, PersonObservation] = {}
        for person in obs.persons:
            seen.setdefault(int(person.track_id), person)  # a duplicated id: the first one counts

        events: list[ViolationEvent] = []
        for state in self._zones.values():
            events.extend(self._membership(state, seen, t))
        for state in self._zones.values():
            if state.zone.kind == "post":
                events.extend(self._abandonment(state, seen, t))
        events.extend(self._late(t))
        events.extend(self._intruders(seen, t))
        events.extend(self._standby_left(t))
        events.extend(self._guards_out(t))
        self._refresh_open(t)
        return events

    def open_absences(self) -> list[Absence]:
        """The absences still running, as copies ended at the last frame and marked `ongoing`
        (a report written mid-shift shows the post empty now, not only the absences that ended)."""
        out = []
        for state in self._zones.values():
            if state.absence is not None:
                record = copy.deepcopy(state.absence.record)
                record.end_s, record.ongoing = self._last_t, True
                out.append(record)
        return out

    def finish(self, t: float | None = None) -> list[ViolationEvent]:
        """The stream ended (at `t`, default the last frame): close what is open, end the absences."""
        if t is None:
            t = self._last_t
        if t is None:
            return []
        t = float(t)
        events: list[ViolationEvent] = []
        for state in self._zones.values():
            if state.absence is not None:
                ab = state.absence
                if ab.alert is not None:
                    events.append(self._close_alert(state, ab, t, t))
                ab.record.end_s, ab.record.ongoing = t, True
                self.absences.append(ab.record)
                state.absence = None
            if state.intervals and state.intervals[-1][1] is None:
                state.intervals[-1][1] = t
            state.members.clear()
            state.staffed = False
        for watch in self._shifts:
            if watch.late is not None:
                self._fill_late(self._violations[watch.late], watch, t)
                events.append(self._close(watch.late, t, t))
                watch.late = None
        for leave in self._standby_leaves.values():
            if leave.index is not None:
                self._fill_standby(self._violations[leave.index], leave, t)
                events.append(self._close(leave.index, t, t))
        self._standby_leaves.clear()
        for gate_id, key, event in self._bank.finish(t):
            events.extend(self._gate_closed(gate_id, key, event))
        self._refresh_open(t)
        return events

    # -- membership --------------------------------------------------------------------------------

    def _verdict(self, person: PersonObservation, state: _ZoneState) -> bool | None:
        answer = self.is_staff(person, state.zone)
        return None if answer is None else bool(answer)

    def _membership(
        self, state: _ZoneState, seen: Mapping[int, PersonObservation], t: float
    ) -> list[ViolationEvent]:
        """Update who is on the zone; date the staffed / short transitions; note handovers."""
        timing = self.timing
        before = {m.track_id for m in state.staff()}
        inside = {track: p for track, p in seen.items() if state.shape.covers(Point(p.foot_point))}
        for track, person in inside.items():
            m = state.members.get(track)
            if m is None:
                m = state.members[track] = _Member(track, first_in=t, last_in=t)
            m.last_in, m.gone_at = t, None
            verdict = self._verdict(person, state)
            if verdict is not None:
                m.verdict = verdict
            if not m.confirmed and t - m.first_in >= timing.entry_s - _EPS:
                m.confirmed = True
        departed: list[tuple[_Member, float]] = []
        for track, m in list(state.members.items()):
            if track in inside:
                continue
            if m.gone_at is None:
                m.gone_at = t
            if track in seen or t - m.last_in >= timing.exit_grace_s - _EPS:
                del state.members[track]
                if m.confirmed:
                    departed.append((m, m.gone_at))

        staff = state.staff()
        now = {m.track_id for m in staff}
        arrived = [m for m in staff if m.track_id not in before]
        left = [(m, d) for m, d in departed if m.track_id in before]
        events: list[ViolationEvent] = []
        if state.zone.kind == "standby":
            self._standby_moves(state, arrived, left, t)
        staffed = len(now) >= state.need
        if staffed and not state.staffed:
            floor = state.intervals[-1][1] if state.intervals else -math.inf
            e = max([m.first_in for m in arrived], default=t)
            e = max(e, floor, state.absence.record.start_s if state.absence else -math.inf)
            state.intervals.append([e, None])
            if state.absence is not None:
                returned = max(arrived, key=lambda m: m.first_in).track_id if arrived else None
                events.extend(self._absence_ended(state, e, t, returned))
        elif not staffed and state.staffed:
            d = max([d for _, d in left], default=t)
            d = max(d, state.intervals[-1][0])
            state.intervals[-1][1] = d
            who = max(left, key=lambda md: md[1])[0].track_id if left else None
            if state.zone.kind == "post" and state.zone.min_staff >= 1:
                record = Absence(state.zone.name, d, left_by=who, during_open_hours=self.camera.is_open(d))
                state.absence = _OpenAbsence(
                    record,
                    departed={m.track_id for m, _ in left},
                    eligible=record.during_open_hours,
                    last_t=d,
                )
        elif staffed and left and state.zone.kind == "post":
            # Still staffed after someone left: a relief who came within the grace took over.
            self._overlap_handover(state, left)
        state.staffed = staffed
        if state.absence is not None:
            state.absence.departed.update(m.track_id for m, _ in left)
        return events

    def _overlap_handover(self, state: _ZoneState, left: list[tuple[_Member, float]]) -> None:
        grace = state.params[HANDOVER]["handover_grace_s"]
        for m, d in left:
            relief = [
                r
                for r in state.staff()
                if r.track_id not in state.handed and abs(r.first_in - d) <= grace + _EPS
            ]
            if relief:
                r = min(relief, key=lambda r: abs(r.first_in - d))
                state.handed.add(r.track_id)
                self.handovers.append(
                    Handover(state.zone.name, m.track_id, r.track_id, d, r.first_in, max(0.0, r.first_in - d))
                )

    # -- d1.reception.02 / .04 / d1.floor.14 ---------------------------------------------------------

    def _abandonment(
        self, state: _ZoneState, seen: Mapping[int, PersonObservation], t: float
    ) -> list[ViolationEvent]:
        """Open, keep or close the post's d1.reception.02 alert for the absence in progress."""
        ab = state.absence
        if ab is None:
            return []
        events: list[ViolationEvent] = []
        params = state.params[ABANDONED]
        leave = self._leave_at(state.zone.name, t)
        if leave is not None:
            if leave.reason not in ab.record.reasons:
                ab.record.reasons.append(leave.reason)
            ab.record.approved_s += max(0.0, t - ab.last_t)
        ab.last_t = t
        if ab.eligible and not self.camera.is_open(t):
            ab.eligible = False  # the site closed: this absence can no longer alert
            if ab.alert is not None:
                events.append(self._close_alert(state, ab, t, t))
        if not ab.eligible:
            return events
        if leave is not None:
            ab.uncovered_since, ab.covered_until = None, leave.end_s
            if ab.alert is not None:
                events.append(self._close_alert(state, ab, max(leave.start_s, ab.record.start_s), t))
            return events
        if ab.uncovered_since is None:
            resumed = ab.covered_until if ab.covered_until is not None else -math.inf
            ab.uncovered_since = max(ab.record.start_s, resumed)
        if not ab.relief_seen:
            ab.relief_seen = any(self._may_relieve(state, ab, track, p) for track, p in seen.items())
        if ab.alert is not None:
            return events
        wait = params["empty_s"]
        if ab.relief_seen:
            wait = max(wait, state.params[HANDOVER]["handover_grace_s"])
        if t - ab.uncovered_since >= wait - _EPS and t >= state.cooldown_until - _EPS:
            violation = Violation(
                clause=ABANDONED,
                camera=self.camera.id,
                track_id=None,
                start_s=ab.uncovered_since,
                confidence=1.0,
                snapshot_t=t,
            )
            ab.alert = len(self._violations)
            ab.record.alerts.append(ab.alert)
            self._violations.append(violation)
            self._fill_abandoned(violation, state, ab, t)
            events.append(ViolationEvent("opened", _copy(violation), t, ab.alert))
        return events

    def _may_relieve(
        self, state: _ZoneState, ab: _OpenAbsence, track: int, person: PersonObservation
    ) -> bool:
        """Someone in view who may be coming to take the post: not who left, not already counted
        on it, and not ruled out as staff."""
        if track in ab.departed:
            return False
        m = state.members.get(track)
        if m is not None and state.counts(m):
            return False
        verdict = m.verdict if m is not None and m.verdict is not None else self._verdict(person, state)
        return verdict is not False

    def _close_alert(self, state: _ZoneState, ab: _OpenAbsence, end_s: float, t: float) -> ViolationEvent:
        """Close the absence's open d1.reception.02 alert at `end_s`; the cooldown starts there."""
        assert ab.alert is not None
        index, ab.alert = ab.alert, None
        self._fill_abandoned(self._violations[index], state, ab, end_s)
        state.cooldown_until = (
            max(end_s, self._violations[index].start_s) + state.params[ABANDONED]["cooldown_s"]
        )
        return self._close(index, end_s, t)

    def _absence_ended(
        self, state: _ZoneState, e: float, t: float, returned: int | None
    ) -> list[ViolationEvent]:
        ab = state.absence
        assert ab is not None
        state.absence = None
        record = ab.record
        record.end_s, record.returned_by = e, returned
        events: list[ViolationEvent] = []
        if ab.alert is not None:
            events.append(self._close_alert(state, ab, e, t))
        grace = state.params[HANDOVER]["handover_grace_s"]
        relief = returned is not None and returned not in ab.departed
        if relief and not record.alerts and not record.approved and record.absence_s <= grace + _EPS:
            assert returned is not None
            state.handed.add(returned)
            self.handovers.append(
                Handover(state.zone.name, record.left_by, returned, record.start_s, e, record.absence_s)
            )
        else:
            self.absences.append(record)
        return events

    def _fill_abandoned(self, violation: Violation, state: _ZoneState, ab: _OpenAbsence, now: float) -> None:
        record = ab.record
        absence_s = max(0.0, now - record.start_s)
        who = "unknown track" if record.left_by is None else f"track {record.left_by}"
        after = ""
        if record.approved:
            after = f", after approved leave ({'; '.join(r for r in record.reasons if r) or 'no reason'})"
        text = (
            f"post {state.zone.name!r} unstaffed for {_secs(absence_s)} "
            f"(needs {state.zone.min_staff}, last left: {who}{after})"
        )
        violation.message = f"{text}{_cite(self.clauses[ABANDONED])}"
        violation.details = {
            "zone": state.zone.name,
            "role": state.zone.role,
            "min_staff": state.zone.min_staff,
            "staff": len(state.staff()),
            "left_by": record.left_by,
            "absence_start_s": round(record.start_s, 3),
            "absence_s": round(absence_s, 3),
            "empty_s": state.params[ABANDONED]["empty_s"],
            "handover_grace_s": state.params[HANDOVER]["handover_grace_s"],
            "relief_in_sight": ab.relief_seen,
            "approved_leave": list(record.reasons),
            # No approval covered the alerted stretch: leaving without permission (d1.floor.14) too.
            "also_breaks": [APPROVED_LEAVE],
            "duration_s": round(violation.duration(now), 3),
        }

    # -- d1.floor.02 -------------------------------------------------------------------------------

    def _late(self, t: float) -> list[ViolationEvent]:
        events: list[ViolationEvent] = []
        tol = self.timing.late_tolerance_s
        for w in self._shifts:
            if t < w.s - _EPS:
                continue
            if not w.started:
                w.started = True
                self._roster = self._guard_count()  # d11.standby.08 counts the shift from here
            state = self._zones[w.shift.post]
            if w.late is None:
                if state.staffed:
                    self._next_day(w)
                elif t >= w.s + tol - _EPS:
                    violation = Violation(
                        clause=LATE,
                        camera=self.camera.id,
                        track_id=None,
                        start_s=w.s,
                        confidence=1.0,
                        snapshot_t=t,
                    )
                    w.late = len(self._violations)
                    self._violations.append(violation)
                    self._fill_late(violation, w, t)
                    events.append(ViolationEvent("opened", _copy(violation), t, w.late))
            elif state.staffed:
                arrived = max(state.intervals[-1][0], w.s)
                self._fill_late(self._violations[w.late], w, arrived)
                events.append(self._close(w.late, arrived, t))
                w.late = None
                self._next_day(w)
        return events

    @staticmethod
    def _next_day(w: _ShiftWatch) -> None:
        w.s += _DAY_S
        w.started = False

    def _fill_late(self, violation: Violation, w: _ShiftWatch, now: float) -> None:
        minutes = max(0.0, now - w.s) / 60.0
        text = (
            f"post {w.shift.post!r} not staffed at the {w.shift.name!r} shift start "
            f"{w.shift.start.strftime('%H:%M')} ({minutes:.1f} min late)"
        )
        violation.message = f"{text}{_cite(self.clauses[LATE])}"
        violation.details = {
            "zone": w.shift.post,
            "shift": w.shift.name,
            "shift_start": w.shift.start.isoformat(),
            "minutes_late": round(minutes, 2),
            "late_tolerance_s": self.timing.late_tolerance_s,
            "duration_s": round(violation.duration(now), 3),
        }

    # -- d1.floor.08 -------------------------------------------------------------------------------

    def _intruders(self, seen: Mapping[int, PersonObservation], t: float) -> list[ViolationEvent]:
        events: list[ViolationEvent] = []
        for name, state in self._zones.items():
            if state.zone.kind != "staff_only":
                continue
            gate_id = f"{INTRUDER}@{name}"
            for track, person in seen.items():
                m = state.members.get(track)
                if m is not None and m.last_in == t:  # inside this frame
                    verdict = m.verdict
                    bad = None if verdict is None else not verdict
                elif (gate_id, track) in self._intruder_keys:
                    bad = False  # seen outside the zone again
                else:
                    continue
                self._intruder_keys[(gate_id, track)] = t
                event = self._bank.update(gate_id, track, t, bad, float(person.confidence))
                if event is not None:
                    events.extend(self._gate_event(gate_id, track, event, zone=name))
        for gate_id, key, event in self._bank.expire(t):
            events.extend(self._gate_closed(gate_id, key, event))
        forget = self.timing.forget_s
        self._intruder_keys = {k: v for k, v in self._intruder_keys.items() if t - v < forget - _EPS}
        return events

    # -- d11.standby.03 ----------------------------------------------------------------------------

    def _standby_moves(
        self, state: _ZoneState, arrived: list[_Member], left: list[tuple[_Member, float]], t: float
    ) -> None:
        """Guards arriving on a standby zone end their leave; guards leaving it start one."""
        for m in arrived:
            leave = self._standby_leaves.pop(m.track_id, None)
            if leave is None and m.track_id not in self._standby_guards and self._standby_leaves:
                # A new track: most likely a guard who left the picture and came back; end the oldest leave.
                oldest = min(self._standby_leaves.values(), key=lambda lv: lv.since)
                leave = self._standby_leaves.pop(oldest.track_id)
            self._standby_guards.add(m.track_id)
            if leave is not None and leave.index is not None:
                violation = self._violations[leave.index]
                violation.details["returned_as"] = m.track_id
                self._standby_returns.append((leave, max(m.first_in, leave.since), t))
        for m, d in left:
            self._standby_guards.add(m.track_id)
            on_other = any(
                z.zone.kind == "standby" and m.track_id in {s.track_id for s in z.staff()}
                for z in self._zones.values()
                if z is not state
            )
            if not on_other:
                self._standby_leaves[m.track_id] = _StandbyLeave(m.track_id, state.zone.name, d)

    def _standby_left(self, t: float) -> list[ViolationEvent]:
        events: list[ViolationEvent] = []
        returns, self._standby_returns = self._standby_returns, []
        for leave, end, at in returns:
            assert leave.index is not None
            self._fill_standby(self._violations[leave.index], leave, end)
            events.append(self._close(leave.index, end, at))
            cooldown = self._zones[leave.zone].params[STANDBY_LEFT]["cooldown_s"]
            self._standby_cooldown[leave.track_id] = end + cooldown
        for leave in self._standby_leaves.values():
            if leave.index is not None:
                continue
            params = self._zones[leave.zone].params[STANDBY_LEFT]
            ready = t >= self._standby_cooldown.get(leave.track_id, -math.inf) - _EPS
            if ready and t - leave.since >= params["sustain_s"] - _EPS:
                violation = Violation(
                    clause=STANDBY_LEFT,
                    camera=self.camera.id,
                    track_id=leave.track_id,
                    start_s=leave.since,
                    confidence=1.0,
                    snapshot_t=t,
                )
                leave.index = len(self._violations)
                self._violations.append(violation)
                self._fill_standby(violation, leave, t)
                events.append(ViolationEvent("opened", _copy(violation), t, leave.index))
        return events

    def _fill_standby(self, violation: Violation, leave: _StandbyLeave, now: float) -> None:
        away = max(0.0, now - leave.since)
        text = f"guard (track {leave.track_id}) away from standby zone {leave.zone!r} for {_secs(away)}"
        violation.message = f"{text}{_cite(self.clauses[STANDBY_LEFT])}"
        violation.details = violation.details | {
            "zone": leave.zone,
            "away_s": round(away, 3),
            "sustain_s": self._zones[leave.zone].params[STANDBY_LEFT]["sustain_s"],
            "duration_s": round(violation.duration(now), 3),
        }

    # -- d11.standby.08 ----------------------------------------------------------------------------

    def _guard_count(self) -> int:
        return len({m.track_id for name in self._guard_zones for m in self._zones[name].staff()})

    def _guards_out(self, t: float) -> list[ViolationEvent]:
        if not self._guard_zones:
            return []
        present = self._guard_count()
        self._roster = max(self._roster, present)
        absent = self._roster - present
        share = absent / self._roster if self._roster else 0.0
        limit = self._guards_params["max_absent_share"]
        state = self._roster > 0 and share > limit + _EPS
        event = self._bank.update(GUARDS_OUT, self.camera.id, t, state)
        self._guards_now = {"roster": self._roster, "present": present, "absent": absent, "share": share}
        if event is None:
            return []
        return self._gate_event(GUARDS_OUT, self.camera.id, event)

    # -- gate-backed violations --------------------------------------------------------------------

    def _gate_event(
        self, gate_id: str, key: Any, event: GateEvent, zone: str | None = None
    ) -> list[ViolationEvent]:
        if event.kind == "closed":
            return self._gate_closed(gate_id, key, event)
        if event.kind != "opened":
            return []
        clause_id = gate_id.split("@")[0]
        track = key if clause_id == INTRUDER else None
        violation = event.to_violation(clause_id, self.camera.id, track)
        index = len(self._violations)
        self._violations.append(violation)
        opened = self._gate_open[(gate_id, key)] = _Open(index, self.clauses[clause_id], {"zone": zone})
        self._fill_gate(violation, gate_id, opened, event.t)
        return [ViolationEvent("opened", _copy(violation), event.t, index)]

    def _gate_closed(self, gate_id: str, key: Any, event: GateEvent) -> list[ViolationEvent]:
        opened = self._gate_open.pop((gate_id, key), None)
        if opened is None:
            return []
        violation = self._violations[opened.index]
        violation.end_s = event.end_s
        violation.confidence = event.confidence
        violation.snapshot_t = event.best_t
        self._fill_gate(violation, gate_id, opened, event.end_s if event.end_s is not None else event.t)
        return [ViolationEvent("closed", _copy(violation), event.t, opened.index)]

    def _fill_gate(self, violation: Violation, gate_id: str, opened: _Open, now: float) -> None:
        duration = violation.duration(now)
        if opened.clause.id == INTRUDER:
            zone = opened.details["zone"]
            text = (
                f"person (track {violation.track_id}) not verified as staff inside staff-only zone "
                f"{zone!r} for {_secs(duration)}"
            )
            details = {"zone": zone, "sustain_s": self._gate_params[gate_id].sustain_s}
        else:
            if violation.open:
                opened.details.update(self._guards_now)
            c = opened.details
            text = (
                f"{c.get('absent', '?')} of {c.get('roster', '?')} guards away from the standby and post "
                f"zones ({c.get('share', 0.0):.0%} > {self._guards_params['max_absent_share']:.0%})"
            )
            details = {
                "roster": c.get("roster"),
                "present": c.get("present"),
                "absent": c.get("absent"),
                "share": round(float(c.get("share", 0.0)), 3),
                "max_absent_share": self._guards_params["max_absent_share"],
                "zones": list(self._guard_zones),
            }
        violation.message = f"{text}{_cite(opened.clause)}"
        violation.details = details | {"duration_s": round(duration, 3)}

    # -- shared ------------------------------------------------------------------------------------

    def _close(self, index: int, end_s: float, t: float) -> ViolationEvent:
        violation = self._violations[index]
        violation.end_s = max(violation.start_s, float(end_s))
        if "duration_s" in violation.details:
            violation.details["duration_s"] = round(violation.duration(), 3)
        return ViolationEvent("closed", _copy(violation), t, index)

    def _refresh_open(self, t: float) -> None:
        """Keep open violations current: durations up to now, counts, messages."""
        for state in self._zones.values():
            ab = state.absence
            if ab is not None and ab.alert is not None:
                self._fill_abandoned(self._violations[ab.alert], state, ab, t)
        for w in self._shifts:
            if w.late is not None:
                self._fill_late(self._violations[w.late], w, t)
        for leave in self._standby_leaves.values():
            if leave.index is not None:
                self._fill_standby(self._violations[leave.index], leave, t)
        for (gate_id, _), opened in self._gate_open.items():
            self._fill_gate(self._violations[opened.index], gate_id, opened, t)


def default_is_staff(person: PersonObservation, zone: Zone) -> bool | None:
    """No uniform enrolled: presence stands in for it.

    Anyone whose feet are in a `post` or `standby` zone counts as staff of its role (the issue:
    "when they stand in a post zone of that role and no uniform is enrolled"); elsewhere, and
    in `staff_only` zones, nobody is verified either way (None), so d1.floor.08 stays quiet.
    """
    if zone.kind in ("post", "standby") and zone.contains(person.foot_point):
        return True
    return None


def _secs(value: float) -> str:
    """A duration for a message: tenths under 10 s (the demo's 0.5 s wait), whole seconds above."""
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def _cite(clause: Clause) -> str:
    """The clause reference every message ends with, as rules.engine writes it."""
    return f" [{clause.id} {clause.section}: {clause.text_zh[0]}]"


def _copy(violation: Violation) -> Violation:
    return replace(violation, details=copy.deepcopy(violation.details))
