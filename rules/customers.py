"""Staff and customers: standing up for a customer at the desk, chatting at the door, arrivals.

Why a monitor of its own: these clauses are about two people at once - a clerk and the
customer in front of the desk, two door staff side by side, a customer coming in and the
door staff who should turn to them - so neither the person-level engine (`rules.engine`, one
person per check) nor the post monitor (`rules.zones`, one place over time) can judge them.
`CustomerMonitor` keeps, per zone of one camera, who stands on it (the same membership as
`rules.zones.ZoneMonitor`: feet inside the polygon, `ZoneTiming.entry_s` debounce, exit grace,
feet seen outside end a stay at once) and raises:

* `d1.floor.09` seated with a customer: a *customer* is a confirmed member of a `customer`
  zone (in front of the desk) who is not staff and not seated (posture `sitting` / `lying`: a
  customer sitting in a waiting chair is not standing at the desk). A *visit* of a customer
  zone starts at the first frame its first customer stood inside (backdated like the zone
  monitor) and lasts while any customer is there. A staff member on a post zone that serves
  the customer zone, seated (`sitting` or `lying`), is in the bad state while a visit lasts;
  the run starts at the later of the visit's start and the first frame of the staff's
  current seated stretch, and the alert opens once it has lasted `stand_within_s` (5 s) - so
  a clerk seated before the customer arrived must be up `stand_within_s` after the arrival.
  Sitting down again while the customer is still there starts a new run and fires the same
  way once it has lasted `stand_within_s`: a moment's sit (leaning back on the chair to reach
  a drawer; the pose model's sitting/standing flicker while someone leans on a desk) is not an
  alert, staying seated is. Gaps under `grace_s` do not split a run; the alert closes at the
  last seated frame once the staff stands or the customers leave, and the same staff member
  cannot alert again before `cooldown_s`. Per staff track, with the customer tracks in
  `details["customer_tracks"]`.

  Which posts serve which customer zone: the post zones whose role the clause applies to
  (front_desk, cashier, service_staff: door staff and guards stand anyway and have their own
  clauses) that touch or overlap the customer zone; when none touches it, the single nearest
  one. Two clerks sharing a counter each with their own post both serve the customer zone
  drawn in front of it; a second desk's post further away does not.

* `d1.reception.03` chatting at the door: two staff on the same door post zone (a `post` of
  role door_reception, the clause's role), neither seated, closer than `distance_m` (1.0 m)
  for `sustain_s` (60 s), through the shared `Gate` (grace, cooldown) per pair. The distance
  is measured between the foot points on the floor with the camera's `FloorScale.distance_m`
  when it has one; without a floor scale it falls back to image pixels divided by the two
  people's mean box height, with 1.0 m taken as `BODY_HEIGHTS_PER_M` = 0.6 body heights (a
  1.65-1.7 m adult). The fallback ignores perspective (two people one behind the other look
  closer than they are) - calibrate the floor for a door seen at a steep angle. Reported on
  the pair's lower track id, both in `details["tracks"]`.

* Customer arrivals (a report, not an alert; needs the camera's `Door`): a non-staff track
  that is *first seen near the door* - its feet within `ArrivalTiming.door_radius_bh` (1.0)
  of its own body heights from `Door.point` - and then *moves into the room*: its feet get at
  least `min_travel_bh` (0.3 body heights) further from the door point than where it was
  first seen. That covers both someone walking through the doorway in view and someone the
  detector first picks up just inside it; someone walking out (first seen far from the door)
  or standing at the door is no arrival. Tracks present in the stream's first frame were
  already inside. The tracker loses people behind desks: a new track first seen within
  `stitch_s` (2 s) of a lost one's last sighting and within `stitch_bh` (1.5) of its body
  height of that sighting continues it (same arrival, not a second one). A track that later
  turns out to be staff (confirmed on a post, or `is_staff` True) is dropped from the report.

  Greeting: the door-post staff (confirmed on a door_reception post during the window) greet
  when, within `greet_within_s` (3 s) of the arrival (first sighting), their body yaw
  (`Features.body_yaw_deg`) turns at least `turn_deg` (20) closer to the customer's direction
  than it was at the arrival, or is within `turn_deg` of it already. The customer's direction
  is read from the image (dx = image right, depth = lower in the image is nearer the camera,
  as body_yaw's 0 = facing the camera, +90 = image right), crude but right in sign and good
  enough for "turned toward them". `greeted` is None when no door-post staff was in view or
  their yaw was never known.

Staff or customer: `is_staff(person, zone)` as in `rules.zones` (e.g.
`calibration.uniform.StaffClassifier.is_staff`). A track that has been confirmed on a post
zone (where unknown counts as staff, as in the zone monitor) is staff for the rest of the
stream: a clerk who walks round the desk is not their own customer. In a customer zone a
person is a customer unless `is_staff` says True. Without a callable, presence decides
(`rules.zones.default_is_staff`).

Parameters come from the catalogue with the site's overrides for the post's role on top
(`Site.overrides_for`) and then `overrides`, as the zone monitor resolves them.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from shapely.geometry import Point
from shapely.prepared import prep

from calibration.site import Camera, Site, Zone
from rules.catalogue import Clause, load_catalogue, resolve_params, validate_overrides
from rules.engine import ViolationEvent
from rules.temporal import GateBank, GateEvent, TemporalParams
from rules.violation import Violation
from rules.zones import ZoneTiming, default_is_staff
from vision.observation import FrameObservation, PersonObservation

IsStaff = Callable[[PersonObservation, Zone], bool | None]

SEATED_WITH_CUSTOMER = "d1.floor.09"
CHATTING = "d1.reception.03"

BODY_HEIGHTS_PER_M = 0.6  # floor-scale fallback: 1 m is about 0.6 of a 1.65-1.7 m adult's height
SEATED = ("sitting", "lying")
_EPS = 1e-6  # as rules.temporal: float noise tolerated in time comparisons


@dataclass(frozen=True)
class ArrivalTiming:
    """How an arrival through the door is recognised and its greeting judged. Not catalogue
    params: arrivals are a report without a clause of their own (greetings are speech), and
    the distances describe the camera's view more than a site's rules."""

    door_radius_bh: float = 1.0  # first seen this close to Door.point (own body heights): came in
    min_travel_bh: float = 0.3  # then this much further from the door than at first sight: went in
    stitch_s: float = 2.0  # a new track this soon after a lost one ...
    stitch_bh: float = 1.5  # ... and this close to where it was lost continues it
    greet_within_s: float = 3.0  # door-post staff turn toward the customer within this of the arrival
    turn_deg: float = 20.0  # a yaw change toward the customer of at least this is a turn
    history_s: float = 15.0  # positions and yaws kept this long to judge the greeting after the fact

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"ArrivalTiming.{f.name} must be a finite number >= 0, got {value!r}")


@dataclass
class Arrival:
    """A customer came in through the door: when, and whether the door-post staff turned to them."""

    track_id: int  # the track that made it an arrival (the last of `tracks`)
    t_s: float  # first seen near the door
    confirmed_s: float  # when it had moved far enough into the room
    door_distance_bh: float  # feet to the door point at first sight, body heights
    tracks: list[int] = field(default_factory=list)  # stitched track ids, first first
    staff: list[int] = field(default_factory=list)  # door-post staff in view during the greeting window
    greeted: bool | None = None  # None: no door-post staff in view, or their yaw never known
    greeted_by: list[int] = field(default_factory=list)
    greet_s: float | None = None  # first frame a staff member had turned to them
    turn_deg: float | None = None  # the largest turn toward the customer seen in the window
    judged: bool = False  # the greeting window is over

    def to_dict(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "t_s": round(self.t_s, 3),
            "confirmed_s": round(self.confirmed_s, 3),
            "door_distance_bh": round(self.door_distance_bh, 3),
            "tracks": list(self.tracks),
            "staff": list(self.staff),
            "greeted": self.greeted,
            "greeted_by": list(self.greeted_by),
            "greet_s": None if self.greet_s is None else round(self.greet_s, 3),
            "turn_deg": None if self.turn_deg is None else round(self.turn_deg, 1),
            "judged": self.judged,
        }


@dataclass
class Visit:
    """Customers at one customer zone, from the first one's arrival until the last one left."""

    zone: str
    start_s: float
    end_s: float | None = None
    customers: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "start_s": round(self.start_s, 3),
            "end_s": None if self.end_s is None else round(self.end_s, 3),
            "customers": list(self.customers),
        }


# -- internal state ------------------------------------------------------------------------------


@dataclass
class _Stay:
    """One track on (or entering) one zone, debounced as rules.zones does."""

    track_id: int
    first_in: float
    last_in: float
    confirmed: bool = False
    gone_at: float | None = None
    verdict: bool | None = None  # last known is_staff answer for this zone


class _ZoneWatch:
    """Membership of one zone: entry debounce, exit grace, feet seen outside end a stay at once."""

    def __init__(self, zone: Zone, timing: ZoneTiming, is_staff: IsStaff) -> None:
        self.zone = zone
        self.shape = prep(zone.shape)
        self.timing = timing
        self.is_staff = is_staff
        self.stays: dict[int, _Stay] = {}
        self.ended: list[_Stay] = []  # the confirmed stays that ended in the last update

    def update(self, seen: Mapping[int, PersonObservation], t: float) -> list[_Stay]:
        """Update the stays; return the confirmed stays that ended this frame."""
        inside = {k: p for k, p in seen.items() if self.shape.covers(Point(p.foot_point))}
        for track, person in inside.items():
            stay = self.stays.get(track)
            if stay is None:
                stay = self.stays[track] = _Stay(track, first_in=t, last_in=t)
            stay.last_in, stay.gone_at = t, None
            answer = self.is_staff(person, self.zone)
            if answer is not None:
                stay.verdict = bool(answer)
            if not stay.confirmed and t - stay.first_in >= self.timing.entry_s - _EPS:
                stay.confirmed = True
        ended: list[_Stay] = []
        for track, stay in list(self.stays.items()):
            if track in inside:
                continue
            if stay.gone_at is None:
                stay.gone_at = t
            if track in seen or t - stay.last_in >= self.timing.exit_grace_s - _EPS:
                del self.stays[track]
                if stay.confirmed:
                    ended.append(stay)
        self.ended = ended
        return ended

    def confirmed(self) -> list[_Stay]:
        return [s for s in self.stays.values() if s.confirmed]

    def staff(self) -> list[_Stay]:
        """Confirmed members counted as staff: unknown counts on a post (as rules.zones)."""
        return [s for s in self.confirmed() if s.verdict is not False]


@dataclass
class _SeatRun:
    """One staff track seated while a customer is at the desk (d1.floor.09)."""

    post: str
    start_s: float
    last_bad: float
    arrival_s: float
    customers: set[int] = field(default_factory=set)
    zones: set[str] = field(default_factory=set)
    conf_sum: float = 0.0
    frames: int = 0
    index: int | None = None


@dataclass
class _Entry:
    """Where a (stitched) track was first seen, for arrivals."""

    origin: tuple[float, float]
    t0: float
    origin_dist: float  # pixels from the door point at first sight
    origin_bh: float  # that distance in the person's body heights
    near: bool  # first seen near the door (and not in the stream's first frame)
    tracks: list[int]
    last_pos: tuple[float, float]
    last_t: float
    last_h: float
    positions: deque[tuple[float, tuple[float, float]]] = field(default_factory=deque)
    arrival: Arrival | None = None
    staff: bool = False


@dataclass
class _Open:
    index: int
    clause: Clause
    details: dict[str, Any]


class CustomerMonitor:
    """d1.floor.09, d1.reception.03 and customer arrivals over one camera's stream.

    `update(obs)` returns the `ViolationEvent`s ("opened" / "closed") of the frame, like
    `RuleEngine.update` and `ZoneMonitor.update`; `finish()` closes what is still open. Reports
    that are not alerts: `arrivals`, `visits`, `reports()`.
    """

    def __init__(
        self,
        camera: Camera,
        site: Site,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        is_staff: IsStaff | None = None,
        timing: ZoneTiming | None = None,
        arrival: ArrivalTiming | None = None,
    ) -> None:
        self.camera = camera
        self.site = site
        self.timing = timing or ZoneTiming()
        self.arrival_timing = arrival or ArrivalTiming()
        self.is_staff: IsStaff = is_staff or default_is_staff
        self.overrides = validate_overrides(overrides or {}, where="overrides")
        catalogue = load_catalogue()
        self.clauses: dict[str, Clause] = {
            cid: catalogue.get(cid) for cid in (SEATED_WITH_CUSTOMER, CHATTING)
        }
        self.notes: list[str] = []

        self._posts = {
            z.name: _ZoneWatch(z, self.timing, self.is_staff) for z in camera.zones if z.kind == "post"
        }
        self._customer_zones = {
            z.name: _ZoneWatch(z, self.timing, self.is_staff) for z in camera.zones if z.kind == "customer"
        }
        self.serving: dict[str, list[str]] = {
            name: self._serving_posts(watch.zone) for name, watch in self._customer_zones.items()
        }
        self._seat_params = {
            post: self._resolve(SEATED_WITH_CUSTOMER, self._posts[post].zone.role)
            for posts in self.serving.values()
            for post in posts
        }
        chat_roles = set(self.clauses[CHATTING].roles)
        self.door_posts = [name for name, w in self._posts.items() if w.zone.role in chat_roles]
        self._chat_params = {
            name: self._resolve(CHATTING, self._posts[name].zone.role) for name in self.door_posts
        }
        for name, posts in self.serving.items():
            if not posts:
                self.notes.append(
                    f"customer zone {name!r}: no front_desk / cashier / service_staff post on camera "
                    f"{camera.id!r} serves it ({SEATED_WITH_CUSTOMER} not judged there)"
                )
        if camera.door is None:
            self.notes.append(f"camera {camera.id!r} has no door: customer arrivals are not reported")
        self._gate_params = {
            f"{CHATTING}@{name}": TemporalParams.from_params(p) for name, p in self._chat_params.items()
        }
        self._bank = GateBank(self._gate_params.__getitem__, forget_s=self.timing.forget_s)
        self._gate_open: dict[tuple[str, Any], _Open] = {}
        self._chat_keys: dict[tuple[str, tuple[int, int]], float] = {}
        self._chat_seen: dict[tuple[str, tuple[int, int]], dict[str, Any]] = {}

        self._staff_tracks: set[int] = set()  # confirmed on a post at some point: never a customer
        self._posture: dict[int, str] = {}  # posture of each track's last frame
        self._seated_since: dict[int, float] = {}
        self._seat_runs: dict[int, _SeatRun] = {}
        self._seat_cooldown: dict[int, float] = {}
        self._last_seen: dict[int, float] = {}
        self._visit: dict[str, Visit] = {}  # customer zone -> the visit in progress
        self.visits: list[Visit] = []
        self._visit_end: dict[str, float] = {}  # customer zone -> when its last visit ended

        self._entries: dict[int, _Entry] = {}  # track -> its (stitched) entry
        self._pending: list[Arrival] = []  # arrivals whose greeting window is still open
        self._arrivals: list[tuple[_Entry, Arrival]] = []
        self._door_history: deque[tuple[float, dict[int, tuple[float | None, tuple[float, float]]]]] = deque()
        self._first_t: float | None = None
        self._violations: list[Violation] = []
        self._last_t: float | None = None

    # -- configuration ----------------------------------------------------------------------------

    def _resolve(self, clause_id: str, role: str | None) -> dict[str, float]:
        site_layer = self.site.overrides_for(role).get(clause_id, {})
        return resolve_params(clause_id, site_layer, self.overrides.get(clause_id, {}))

    def _serving_posts(self, customer_zone: Zone) -> list[str]:
        roles = set(self.clauses[SEATED_WITH_CUSTOMER].roles)
        posts = [w.zone for w in self._posts.values() if w.zone.role in roles]
        if not posts:
            return []
        shape = customer_zone.shape
        distances = {z.name: float(shape.distance(z.shape)) for z in posts}
        touching = [name for name, d in distances.items() if d <= 1.0]  # a pixel of drawing slack
        return touching or [min(distances, key=lambda n: distances[n])]

    # -- queries -----------------------------------------------------------------------------------

    @property
    def violations(self) -> list[Violation]:
        """Every violation so far, in opening order (closed ones have end_s)."""
        return list(self._violations)

    def open_violations(self) -> list[Violation]:
        return [v for v in self._violations if v.open]

    @property
    def arrivals(self) -> list[Arrival]:
        """Customer arrivals so far (tracks later found to be staff left out)."""
        return [a for entry, a in self._arrivals if not entry.staff]

    def reports(self) -> dict[str, Any]:
        """What is reported besides alerts: arrivals with their greeting, visits, notes."""
        return {
            "arrivals": [a.to_dict() for a in self.arrivals],
            "visits": [v.to_dict() for v in self.visits + list(self._visit.values())],
            "notes": list(self.notes),
        }

    # -- updates -----------------------------------------------------------------------------------

    def update(self, obs: FrameObservation) -> list[ViolationEvent]:
        """Membership first, then the customers at the desk, the door post pairs and the arrivals."""
        t = float(obs.t)
        if self._last_t is not None and t < self._last_t:
            t = self._last_t  # time never goes backwards (as rules.temporal)
        self._last_t = t
        first_frame = self._first_t is None
        if first_frame:
            self._first_t = t
        seen: dict[int, PersonObservation] = {}
        for person in obs.persons:
            seen.setdefault(int(person.track_id), person)
        for track, person in seen.items():
            self._last_seen[track] = t
            posture = person.features.posture
            self._posture[track] = posture.value  # this frame's: one mislabelled frame must not stick
            if posture.value in SEATED:
                self._seated_since.setdefault(track, t)
            elif posture.known:
                self._seated_since.pop(track, None)

        for watch in self._posts.values():
            watch.update(seen, t)
            self._staff_tracks.update(s.track_id for s in watch.staff())
        for watch in self._customer_zones.values():
            watch.update(seen, t)
        self._visits(t)

        events: list[ViolationEvent] = []
        events.extend(self._seated(seen, t))
        events.extend(self._chatting(seen, t))
        self._arrive(seen, t, first_frame)
        self._refresh_open(t)
        self._forget(t)
        return events

    def _forget(self, t: float) -> None:
        """Drop per-track state of tracks long gone, so a stream of days keeps a bounded memory."""
        forget = self.timing.forget_s
        for track in [k for k, last in self._last_seen.items() if t - last >= forget - _EPS]:
            if track in self._seat_runs:
                continue
            del self._last_seen[track]
            self._posture.pop(track, None)
            self._seated_since.pop(track, None)
        keep = max(self.arrival_timing.stitch_s, self.arrival_timing.history_s)
        for track in [k for k, e in self._entries.items() if t - e.last_t > keep + _EPS]:
            del self._entries[track]

    def finish(self, t: float | None = None) -> list[ViolationEvent]:
        """The stream ended (at `t`, default the last frame): close what is open, judge greetings."""
        if t is None:
            t = self._last_t
        if t is None:
            return []
        t = float(t)
        events: list[ViolationEvent] = []
        for track in list(self._seat_runs):
            events.extend(self._end_seat_run(track, t))
        for gate_id, key, event in self._bank.finish(t):
            events.extend(self._gate_closed(gate_id, key, event))
        for name in list(self._visit):
            visit = self._visit.pop(name)
            visit.end_s = t
            self.visits.append(visit)
        for arrival in self._pending:
            self._judge_greeting(arrival, final=True)
        self._pending = []
        return events

    # -- customers at the desk ---------------------------------------------------------------------

    def _customers(self, name: str) -> list[_Stay]:
        """Confirmed non-staff members of a customer zone who are not seated."""
        return [
            s
            for s in self._customer_zones[name].confirmed()
            if s.track_id not in self._staff_tracks
            and s.verdict is not True
            and self._posture.get(s.track_id) not in SEATED
        ]

    def _visits(self, t: float) -> None:
        for name in self._customer_zones:
            customers = self._customers(name)
            visit = self._visit.get(name)
            if customers and visit is None:
                start = min(s.first_in for s in customers)
                visit = self._visit[name] = Visit(name, start)
            if visit is not None:
                for s in customers:
                    if s.track_id not in visit.customers:
                        visit.customers.append(s.track_id)
                if not customers:
                    # Dated to the frame the last customer was first missed (the exit grace bridges
                    # detector misses; it is not time at the desk).
                    gone = [
                        s.gone_at for s in self._customer_zones[name].ended if s.track_id in visit.customers
                    ]
                    visit.end_s = max([g for g in gone if g is not None], default=t)
                    self._visit_end[name] = visit.end_s
                    self.visits.append(self._visit.pop(name))

    def _seated(self, seen: Mapping[int, PersonObservation], t: float) -> list[ViolationEvent]:
        events: list[ViolationEvent] = []
        judged: set[int] = set()
        for posts in self.serving.values():
            for post in posts:
                params = self._seat_params[post]
                for stay in self._posts[post].staff():
                    track = stay.track_id
                    person = seen.get(track)
                    if track in judged or person is None:
                        continue
                    judged.add(track)
                    events.extend(self._seat_frame(track, person, post, params, t))
        for track in list(self._seat_runs):
            if track in judged:
                continue
            run = self._seat_runs[track]
            gone = t - self._last_seen.get(track, -math.inf) >= self.timing.forget_s - _EPS
            left_post = track in seen and t - run.last_bad >= self._seat_params[run.post]["grace_s"] - _EPS
            if gone or left_post:
                events.extend(self._end_seat_run(track, t))
        return events

    def _desk_visit(self, post: str) -> tuple[float | None, set[int], set[str]]:
        """The visit in progress at the customer zones `post` serves: (start, customers, zones)."""
        start: float | None = None
        customers: set[int] = set()
        zones: set[str] = set()
        for name, posts in self.serving.items():
            visit = self._visit.get(name)
            if post not in posts or visit is None:
                continue
            start = visit.start_s if start is None else min(start, visit.start_s)
            customers.update(s.track_id for s in self._customers(name))
            zones.add(name)
        return start, customers, zones

    def _seat_frame(
        self, track: int, person: PersonObservation, post: str, params: Mapping[str, float], t: float
    ) -> list[ViolationEvent]:
        posture = person.features.posture
        seated = None if not posture.known else posture.value in SEATED
        if seated is None:
            return []  # unknown posture: no evidence either way, time passes
        arrival, customers, zones = self._desk_visit(post)
        bad = seated and arrival is not None
        events: list[ViolationEvent] = []
        run = self._seat_runs.get(track)
        if run is not None and t - run.last_bad >= params["grace_s"] - _EPS:
            events.extend(self._end_seat_run(track, t))
            run = None
        if not bad:
            return events
        assert arrival is not None
        if run is None:
            start = max(arrival, self._seated_since.get(track, t))
            run = self._seat_runs[track] = _SeatRun(post, start, t, arrival)
        run.last_bad = t
        run.customers |= customers
        run.zones |= zones
        run.conf_sum += float(posture.confidence)
        run.frames += 1
        ready = t >= self._seat_cooldown.get(track, -math.inf) - _EPS
        if run.index is None and ready and t - run.start_s >= params["stand_within_s"] - _EPS:
            violation = Violation(
                clause=SEATED_WITH_CUSTOMER,
                camera=self.camera.id,
                track_id=track,
                start_s=run.start_s,
                confidence=run.conf_sum / run.frames,
                snapshot_t=t,
            )
            run.index = len(self._violations)
            self._violations.append(violation)
            self._fill_seated(violation, track, run, t)
            events.append(ViolationEvent("opened", _copy(violation), t, run.index))
        return events

    def _end_seat_run(self, track: int, t: float) -> list[ViolationEvent]:
        run = self._seat_runs.pop(track, None)
        if run is None or run.index is None:
            return []
        end = run.last_bad
        if not any(z in self._visit for z in run.zones):
            # The customers left: seated frames during their exit grace are not time with a customer.
            left = max((self._visit_end.get(z, -math.inf) for z in run.zones), default=-math.inf)
            if left >= run.start_s - _EPS:
                end = min(end, left)
        violation = self._violations[run.index]
        self._fill_seated(violation, track, run, end)
        self._seat_cooldown[track] = end + self._seat_params[run.post]["cooldown_s"]
        return [self._close(run.index, end, t)]

    def _fill_seated(self, violation: Violation, track: int, run: _SeatRun, now: float) -> None:
        params = self._seat_params[run.post]
        seated = max(0.0, now - run.start_s)
        who = ", ".join(str(c) for c in sorted(run.customers)) or "?"
        customers = f"customers (tracks {who})" if len(run.customers) > 1 else f"a customer (track {who})"
        text = (
            f"staff (track {track}) seated for {_secs(seated)} at post {run.post!r} while {customers} "
            f"stood at the desk (must stand within {params['stand_within_s']:g} s)"
        )
        violation.message = f"{text}{_cite(self.clauses[SEATED_WITH_CUSTOMER])}"
        violation.details = {
            "post": run.post,
            "customer_zones": sorted(run.zones),
            "customer_tracks": sorted(run.customers),
            "arrival_s": round(run.arrival_s, 3),
            "seated_s": round(seated, 3),
            "stand_within_s": params["stand_within_s"],
            "duration_s": round(violation.duration(now), 3),
        }

    # -- d1.reception.03 ---------------------------------------------------------------------------

    def _distance(self, a: PersonObservation, b: PersonObservation) -> tuple[float, float, str]:
        """(distance, the clause's 1 m in the same unit, unit) between two people's feet."""
        floor = self.camera.floor
        if floor is not None:
            return floor.distance_m(a.foot_point, b.foot_point), 1.0, "m"
        px = math.dist(a.foot_point, b.foot_point)
        height = (a.height_px + b.height_px) / 2.0
        return (px / height if height > 1.0 else math.inf), BODY_HEIGHTS_PER_M, "body heights"

    def _chatting(self, seen: Mapping[int, PersonObservation], t: float) -> list[ViolationEvent]:
        events: list[ViolationEvent] = []
        for name in self.door_posts:
            gate_id = f"{CHATTING}@{name}"
            limit_m = self._chat_params[name]["distance_m"]
            staff = sorted(s.track_id for s in self._posts[name].staff() if s.track_id in seen)
            pairs = {(a, b) for i, a in enumerate(staff) for b in staff[i + 1 :]}
            known = {key for (g, key) in self._chat_keys if g == gate_id}
            for key in sorted(pairs | known):
                a, b = key
                if a not in seen or b not in seen:
                    continue  # one of them unseen: time passes
                if key in pairs:
                    pa, pb = seen[a], seen[b]
                    seated = pa.features.posture.value in SEATED or pb.features.posture.value in SEATED
                    distance, per_m, unit = self._distance(pa, pb)
                    state = not seated and distance < limit_m * per_m - _EPS
                    conf = float(min(pa.confidence, pb.confidence))
                    info = self._chat_seen.setdefault((gate_id, key), {"min": math.inf})
                    info.update(distance=distance, unit=unit, limit=limit_m * per_m)
                    if state:
                        info["min"] = min(info["min"], distance)
                else:
                    state, conf = False, 1.0  # both in view, not both on the door post
                self._chat_keys[(gate_id, key)] = t
                event = self._bank.update(gate_id, key, t, state, conf)
                if event is not None:
                    events.extend(self._gate_event(gate_id, key, event, zone=name))
        for gate_id, key, event in self._bank.expire(t):
            events.extend(self._gate_closed(gate_id, key, event))
        forget = self.timing.forget_s
        self._chat_keys = {k: v for k, v in self._chat_keys.items() if t - v < forget - _EPS}
        for k in [k for k in self._chat_seen if k not in self._chat_keys and k not in self._gate_open]:
            del self._chat_seen[k]
        return events

    def _gate_event(self, gate_id: str, key: Any, event: GateEvent, zone: str) -> list[ViolationEvent]:
        if event.kind == "closed":
            return self._gate_closed(gate_id, key, event)
        if event.kind != "opened":
            return []
        violation = event.to_violation(CHATTING, self.camera.id, int(key[0]))
        index = len(self._violations)
        self._violations.append(violation)
        opened = self._gate_open[(gate_id, key)] = _Open(index, self.clauses[CHATTING], {"zone": zone})
        self._fill_chat(violation, gate_id, key, opened, event.t)
        return [ViolationEvent("opened", _copy(violation), event.t, index)]

    def _gate_closed(self, gate_id: str, key: Any, event: GateEvent) -> list[ViolationEvent]:
        opened = self._gate_open.pop((gate_id, key), None)
        if opened is None:
            return []
        violation = self._violations[opened.index]
        violation.end_s = event.end_s
        violation.confidence = event.confidence
        violation.snapshot_t = event.best_t
        self._fill_chat(violation, gate_id, key, opened, event.end_s if event.end_s is not None else event.t)
        return [ViolationEvent("closed", _copy(violation), event.t, opened.index)]

    def _fill_chat(self, violation: Violation, gate_id: str, key: Any, opened: _Open, now: float) -> None:
        zone = opened.details["zone"]
        params = self._chat_params[zone]
        info = self._chat_seen.get((gate_id, key), {})
        unit = info.get("unit", "m")
        closest = info.get("min", math.inf)
        fmt = (lambda v: f"{v:.2f} m") if unit == "m" else (lambda v: f"{v:.2f} body heights")
        apart = f" {fmt(closest)} apart" if math.isfinite(closest) else ""
        duration = violation.duration(now)
        text = (
            f"two staff (tracks {key[0]} and {key[1]}) standing{apart} at door post {zone!r} for "
            f"{_secs(duration)} (closer than {params['distance_m']:g} m for {params['sustain_s']:g} s)"
        )
        violation.message = f"{text}{_cite(opened.clause)}"
        violation.details = {
            "zone": zone,
            "tracks": [int(key[0]), int(key[1])],
            "closest": None if not math.isfinite(closest) else round(closest, 3),
            "unit": unit,
            "distance_m": params["distance_m"],
            "limit": None if "limit" not in info else round(float(info["limit"]), 3),
            "scale": "floor" if unit == "m" else f"body height (1 m = {BODY_HEIGHTS_PER_M:g} body heights)",
            "sustain_s": params["sustain_s"],
            "duration_s": round(duration, 3),
        }

    # -- arrivals ----------------------------------------------------------------------------------

    def _is_staff_track(self, track: int, person: PersonObservation) -> bool:
        if track in self._staff_tracks:
            return True
        return any(self.is_staff(person, self._posts[name].zone) is True for name in self.door_posts)

    def _arrive(self, seen: Mapping[int, PersonObservation], t: float, first_frame: bool) -> None:
        door = self.camera.door
        if door is None:
            return
        at = self.arrival_timing
        self._door_history.append(
            (
                t,
                {
                    s.track_id: (seen[s.track_id].features.body_yaw_deg.value, seen[s.track_id].foot_point)
                    for name in self.door_posts
                    for s in self._posts[name].staff()
                    if s.track_id in seen
                },
            )
        )
        while self._door_history and self._door_history[0][0] < t - at.history_s - _EPS:
            self._door_history.popleft()
        for track, person in seen.items():
            foot = person.foot_point
            height = max(person.height_px, 1.0)
            entry = self._entries.get(track)
            if entry is None:
                entry = self._stitch(track, foot, t) or self._new_entry(track, foot, height, t, first_frame)
                self._entries[track] = entry
            entry.last_pos, entry.last_t, entry.last_h = foot, t, height
            entry.positions.append((t, foot))
            while entry.positions and entry.positions[0][0] < t - at.history_s - _EPS:
                entry.positions.popleft()
            if self._is_staff_track(track, person):
                entry.staff = True
            if entry.near and entry.arrival is None and not entry.staff:
                travel = math.dist(foot, door.point) - entry.origin_dist
                if travel >= at.min_travel_bh * height - _EPS:
                    arrival = Arrival(track, entry.t0, t, entry.origin_bh, tracks=list(entry.tracks))
                    entry.arrival = arrival
                    self._arrivals.append((entry, arrival))
                    self._pending.append(arrival)
        still: list[Arrival] = []
        for arrival in self._pending:
            if t >= arrival.t_s + at.greet_within_s - _EPS:
                self._judge_greeting(arrival, final=True)
            else:
                still.append(arrival)
        self._pending = still

    def _new_entry(
        self, track: int, foot: tuple[float, float], height: float, t: float, first_frame: bool
    ) -> _Entry:
        door = self.camera.door
        assert door is not None
        dist = math.dist(foot, door.point)
        near = not first_frame and dist <= self.arrival_timing.door_radius_bh * height + _EPS
        return _Entry(foot, t, dist, dist / height, near, [track], foot, t, height)

    def _stitch(self, track: int, foot: tuple[float, float], t: float) -> _Entry | None:
        """A lost track's entry that this new track continues, if one was lost just before, nearby."""
        at = self.arrival_timing
        best: tuple[float, _Entry] | None = None
        for other, entry in self._entries.items():
            if other == track or entry.last_t >= t - _EPS or entry.tracks[-1] != other:
                continue  # still in view this frame, or already continued by another track
            if t - entry.last_t > at.stitch_s + _EPS:
                continue
            d = math.dist(foot, entry.last_pos)
            if d <= at.stitch_bh * entry.last_h + _EPS and (best is None or d < best[0]):
                best = (d, entry)
        if best is None:
            return None
        best[1].tracks.append(track)
        return best[1]

    def _judge_greeting(self, arrival: Arrival, final: bool) -> None:
        """Did a door-post staff member turn toward the customer within greet_within_s of the arrival?"""
        at = self.arrival_timing
        entry = next(e for e, a in self._arrivals if a is arrival)
        end = arrival.t_s + at.greet_within_s
        window = [
            (t, staff) for t, staff in self._door_history if arrival.t_s - 1.0 - _EPS <= t <= end + _EPS
        ]
        in_window = [(t, staff) for t, staff in window if t >= arrival.t_s - _EPS]
        arrival.staff = sorted({k for _, staff in in_window for k in staff})
        best_turn: float | None = None
        greeted_by: list[int] = []
        first_greet: float | None = None
        for k in arrival.staff:
            before = [
                (t, s[k][0]) for t, s in window if k in s and s[k][0] is not None and t <= arrival.t_s + _EPS
            ]
            during = [(t, s[k]) for t, s in in_window if k in s and s[k][0] is not None]
            if not during:
                continue
            baseline = before[-1][1] if before else during[0][1][0]
            for t, (yaw, staff_foot) in during:
                cust = _position_at(entry.positions, t)
                if cust is None or yaw is None or baseline is None:
                    continue
                target = math.degrees(math.atan2(cust[0] - staff_foot[0], cust[1] - staff_foot[1]))
                off_before = _angle_between(baseline, target)
                off_now = _angle_between(yaw, target)
                turn = off_before - off_now
                best_turn = turn if best_turn is None else max(best_turn, turn)
                if turn >= at.turn_deg - _EPS or off_now <= at.turn_deg + _EPS:
                    if k not in greeted_by:
                        greeted_by.append(k)
                    first_greet = t if first_greet is None else min(first_greet, t)
        arrival.greeted_by = sorted(greeted_by)
        arrival.greet_s = first_greet
        arrival.turn_deg = best_turn
        arrival.greeted = True if greeted_by else (None if best_turn is None else False)
        arrival.judged = final

    # -- shared ------------------------------------------------------------------------------------

    def _close(self, index: int, end_s: float, t: float) -> ViolationEvent:
        violation = self._violations[index]
        violation.end_s = max(violation.start_s, float(end_s))
        if "duration_s" in violation.details:
            violation.details["duration_s"] = round(violation.duration(), 3)
        return ViolationEvent("closed", _copy(violation), t, index)

    def _refresh_open(self, t: float) -> None:
        for track, run in self._seat_runs.items():
            if run.index is not None:
                self._fill_seated(self._violations[run.index], track, run, t)
        for (gate_id, key), opened in self._gate_open.items():
            self._fill_chat(self._violations[opened.index], gate_id, key, opened, t)


def _position_at(positions: deque[tuple[float, tuple[float, float]]], t: float) -> tuple[float, float] | None:
    """The customer's feet at the sample nearest in time to `t`."""
    if not positions:
        return None
    return min(positions, key=lambda p: abs(p[0] - t))[1]


def _angle_between(a: float, b: float) -> float:
    """The absolute difference of two yaws in degrees, 0-180."""
    d = (a - b + 180.0) % 360.0 - 180.0
    return abs(d)


def _secs(value: float) -> str:
    """A duration for a message: tenths under 10 s, whole seconds above (as rules.zones)."""
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def _cite(clause: Clause) -> str:
    """The clause reference every message ends with, as rules.engine writes it."""
    return f" [{clause.id} {clause.section}: {clause.text_zh[0]}]"


def _copy(violation: Violation) -> Violation:
    return replace(violation, details=copy.deepcopy(violation.details))
