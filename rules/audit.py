"""The guard shift audit: what each guard did on each post over a shift, for the security team.

Why a report of its own: the alerts say what went wrong and when; a security manager
auditing a shift asks the other questions - how long was each guard on post, how well did
they keep the stance, did they salute and how well, was a phone seen, did they leave the
post, and was the handover done by the book (D11 7.6, `d11.handover.01`). `ShiftAudit`
collects that from what the camera's rules already produce:

* the `FrameObservation` stream (`update(obs)`): who stands on which guard zone (a `post` or
  `standby` zone whose role is a guard role, feet inside the polygon), for how long, in which
  stance, with a phone in hand;
* the guard roles' `RuleEngine` violations, the `ZoneMonitor`'s absences and handovers and
  the guards' `GestureEvent`s (salutes), passed to `add(...)` at any time (duplicates of the
  same violation - an open copy and its closed one - are merged).

Semantics:

* Time: each analysed frame counts until the next one (capped at `MAX_FRAME_GAP_S`, so a
  stalled stream is not time on post); the last frame counts the interval before it. Minutes
  on post are the frames' time with the guard's feet on the zone - not debounced like the
  zone monitor's membership, so a guard crossing a corner adds the seconds they were seen
  there.
* Stance compliance: the share of the *judged* time on a post in the right stance, per
  stance clause of the post's role (`rules.guard`'s stance checks, recomputed per frame with
  the site's parameters): frames where the check cannot tell (landmarks hidden, the guard
  seated) are not judged. The headline clause per role is the first stance clause the
  catalogue lists for it (guard_ceremonial: d11.stance.01, guard_fixed: d11.stance.02,
  guard_reception: d11.stance.03) unless `stance={role: clause_id}` picks another (a female
  ceremonial guard is judged by d11.stance.03). Time inside one of the guard's own salutes
  is not judged: a raised hand is a salute, not a stance fault.
* Phone sightings: frames where `d11.phone.01`'s check (phone held, looked at or at the ear)
  is True while on a guard zone, merged into intervals when less than `PHONE_MERGE_S` apart,
  again leaving out the guard's own salutes (the saluting hand at the brow reads as a hand at
  the ear).
* Salutes: the `d11.salute.01` "ended" events per track: count and mean form score.
* Absences: the zone monitor's absences of guard posts, listed per post and, by `left_by`,
  per guard.
* `d11.handover.01`: every zone-monitor handover on a guard post becomes a
  `HandoverReport`: who left, who took over, whether the post was ever empty (the handover's
  gap > 0, i.e. the relief stepped on after the other had left) and whether both guards
  saluted within the handover window - from `HANDOVER_LEAD_S` before the earlier of the two
  moments (the relief halts in front of the post and salutes before stepping on) to
  `HANDOVER_TAIL_S` after the later one - and whether their salutes were face to face (the
  two salutes overlap in time, or start within `SALUTE_TOGETHER_S`).

Output: `to_dict()` (JSON-ready) and `to_html(snapshots)`, a printable self-contained page
(inline CSS, every text escaped, snapshot images inlined as base64 data URIs).
"""

from __future__ import annotations

import base64
import html
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import Point
from shapely.prepared import prep

from calibration.site import Camera, Site, Zone
from rules.catalogue import ROLES, load_catalogue, resolve_params, validate_overrides
from rules.checks import Check, PersonHistory, guard_phone
from rules.guard import GUARD_RULES, SALUTE_CLAUSE, GestureEvent
from rules.violation import Violation
from rules.zones import Absence, Handover
from vision.observation import FrameObservation, PersonObservation

IsStaff = Callable[[PersonObservation, Zone], bool | None]

HANDOVER_CLAUSE = "d11.handover.01"
PHONE_CLAUSE = "d11.phone.01"
GUARD_ROLES: tuple[str, ...] = tuple(r for r in ROLES if r.startswith("guard_"))

MAX_FRAME_GAP_S = 2.0  # a frame counts until the next one, at most this long
PHONE_MERGE_S = 1.0  # phone frames closer than this are one sighting
SALUTE_MARGIN_S = 0.3  # around a salute, frames are the salute's (the hand goes up and comes down)
HANDOVER_LEAD_S = 60.0  # salutes this long before the handover count (the relief salutes, then steps on)
HANDOVER_TAIL_S = 10.0  # ... and this long after it
SALUTE_TOGETHER_S = 1.0  # two salutes starting this close (or overlapping) are face to face
_EPS = 1e-6


@dataclass
class _Frame:
    """One guard on one guard zone in one analysed frame."""

    t: float
    zone: str
    states: dict[str, bool | None]  # stance clause id -> wrong (True) / right (False) / unknown
    phone: bool | None
    dt: float = 0.0


@dataclass
class HandoverReport:
    """d11.handover.01: one guard took over a post from another, by the book or not."""

    zone: str
    role: str | None
    from_track: int | None
    to_track: int
    left_s: float
    arrived_s: float
    gap_s: float
    window: tuple[float, float]
    from_salutes: list[GestureEvent] = field(default_factory=list)
    to_salutes: list[GestureEvent] = field(default_factory=list)

    @property
    def post_empty(self) -> bool:
        """The relief stepped on after the other guard had left: the post stood empty."""
        return self.gap_s > _EPS

    @property
    def both_saluted(self) -> bool:
        return bool(self.from_salutes) and bool(self.to_salutes)

    @property
    def face_to_face(self) -> bool:
        """A salute of each guard at the same time (overlapping, or starting within SALUTE_TOGETHER_S)."""
        for a in self.from_salutes:
            for b in self.to_salutes:
                a_end = a.end_s if a.end_s is not None else a.start_s
                b_end = b.end_s if b.end_s is not None else b.start_s
                overlap = min(a_end, b_end) - max(a.start_s, b.start_s)
                if overlap >= -_EPS or abs(a.start_s - b.start_s) <= SALUTE_TOGETHER_S + _EPS:
                    return True
        return False

    @property
    def by_the_book(self) -> bool:
        return not self.post_empty and self.both_saluted

    def to_dict(self) -> dict[str, Any]:
        return {
            "clause": HANDOVER_CLAUSE,
            "zone": self.zone,
            "role": self.role,
            "from_track": self.from_track,
            "to_track": self.to_track,
            "left_s": round(self.left_s, 3),
            "arrived_s": round(self.arrived_s, 3),
            "gap_s": round(self.gap_s, 3),
            "post_empty": self.post_empty,
            "window": [round(self.window[0], 3), round(self.window[1], 3)],
            "from_salutes": [_salute_dict(e) for e in self.from_salutes],
            "to_salutes": [_salute_dict(e) for e in self.to_salutes],
            "both_saluted": self.both_saluted,
            "face_to_face": self.face_to_face,
            "by_the_book": self.by_the_book,
        }


class ShiftAudit:
    """Per guard track and guard zone of one camera: time on post, stance, salutes, phone, absences.

    `update(obs)` per analysed frame; `add(...)` the rules' outputs whenever convenient;
    `to_dict()` / `to_html()` at any time (nothing is consumed).
    """

    def __init__(
        self,
        camera: Camera,
        site: Site,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        is_staff: IsStaff | None = None,
        stance: Mapping[str, str] | None = None,
    ) -> None:
        self.camera = camera
        self.site = site
        self.is_staff = is_staff
        self.overrides = validate_overrides(overrides or {}, where="overrides")
        catalogue = load_catalogue()
        self.zones: dict[str, Zone] = {
            z.name: z for z in camera.zones if z.kind in ("post", "standby") and z.role in GUARD_ROLES
        }
        self._shapes = {name: prep(z.shape) for name, z in self.zones.items()}
        self.notes: list[str] = []
        if not self.zones:
            self.notes.append(f"camera {camera.id!r} has no guard post or standby zone: nothing to audit")
        # Stance clauses per role: every catalogue clause whose rule is a guard stance check.
        self._stance: dict[str, list[str]] = {}
        self._params: dict[tuple[str, str], dict[str, float]] = {}
        for role in {z.role for z in self.zones.values() if z.role}:
            ids = [c.id for c in catalogue.for_role(role) if c.rule in GUARD_RULES]
            self._stance[role] = ids
            for cid in [*ids, PHONE_CLAUSE]:  # the phone check runs on every guard zone, standby too
                site_layer = site.overrides_for(role).get(cid, {})
                self._params[(role, cid)] = resolve_params(cid, site_layer, self.overrides.get(cid, {}))
        self.headline: dict[str, str | None] = {
            role: (ids[0] if ids else None) for role, ids in self._stance.items()
        }
        for role, cid in (stance or {}).items():
            if role not in self._stance:
                continue
            if cid not in self._stance[role]:
                raise ValueError(
                    f"stance: {cid!r} is not a stance clause of role {role!r} ({self._stance[role]})"
                )
            self.headline[role] = cid

        self._histories: dict[int, PersonHistory] = {}
        self._frames: dict[int, list[_Frame]] = {}  # guard track -> its frames on guard zones
        self._occupied: list[tuple[float, set[str]]] = []  # per analysed frame: guard zones with a guard
        self._occupied_dt: list[float] = []
        self._last: list[_Frame] = []  # the previous frame's records, waiting for their dt
        self._last_t: float | None = None
        self._first_t: float | None = None
        self._last_dt = 0.0
        self._violations: dict[tuple[str, int | None, float], Violation] = {}
        self._absences: dict[tuple[str, float], Absence] = {}
        self._handovers: dict[tuple[str, int | None, int, float], Handover] = {}
        self._salutes: dict[tuple[int, float], GestureEvent] = {}

    # -- input -------------------------------------------------------------------------------------

    def update(self, obs: FrameObservation) -> None:
        """One analysed frame: who is on which guard zone, their stance and phone."""
        t = float(obs.t)
        if self._last_t is not None and t < self._last_t:
            t = self._last_t
        if self._first_t is None:
            self._first_t = t
        if self._last_t is not None:
            dt = min(t - self._last_t, MAX_FRAME_GAP_S)
            for rec in self._last:
                rec.dt = dt
            if self._occupied_dt:
                self._occupied_dt[-1] = dt
            self._last_dt = dt
        self._last_t = t
        records: list[_Frame] = []
        occupied: set[str] = set()
        done: set[int] = set()
        for person in obs.persons:
            track = int(person.track_id)
            if track in done:
                continue
            done.add(track)
            zone = self._zone_of(person)
            if zone is None:
                continue
            history = self._histories.setdefault(track, PersonHistory(track))
            history.add(t, person)
            role = str(zone.role)
            states = {
                cid: self._check(cid, person, history, self._params[(role, cid)]).state
                for cid in self._stance.get(role, [])
            }
            phone = guard_phone(person, history, self._params[(role, PHONE_CLAUSE)]).state
            rec = _Frame(t, zone.name, states, phone)
            self._frames.setdefault(track, []).append(rec)
            records.append(rec)
            occupied.add(zone.name)
        self._occupied.append((t, occupied))
        self._occupied_dt.append(0.0)
        self._last = records
        for track in [k for k, h in self._histories.items() if h.last_t is None or t - h.last_t > 5.0]:
            del self._histories[track]  # the track left the guard zones: its next stay starts afresh

    def add(
        self,
        violations: Iterable[Violation] = (),
        absences: Iterable[Absence] = (),
        handovers: Iterable[Handover] = (),
        gestures: Iterable[GestureEvent] = (),
    ) -> None:
        """The rules' outputs: violations (guard roles' engines, zone monitor), the zone monitor's
        absences and handovers, gesture events (only ended salutes are kept). Repeats are merged."""
        for v in violations:
            self._violations[(v.clause, v.track_id, round(v.start_s, 6))] = v
        for a in absences:
            if a.zone in self.zones:
                self._absences[(a.zone, round(a.start_s, 6))] = a
        for h in handovers:
            if h.zone in self.zones:
                self._handovers[(h.zone, h.from_track, h.to_track, round(h.left_s, 6))] = h
        for e in gestures:
            if e.clause == SALUTE_CLAUSE and e.label == "salute" and e.kind == "ended":
                self._salutes[(e.track_id, round(e.start_s, 6))] = e

    def finish(self, t: float | None = None) -> None:
        """The stream ended: the last frame counts the interval before it (or until `t`)."""
        if self._last_t is None:
            return
        dt = self._last_dt if t is None else min(max(0.0, float(t) - self._last_t), MAX_FRAME_GAP_S)
        for rec in self._last:
            rec.dt = dt
        if self._occupied_dt:
            self._occupied_dt[-1] = dt
        self._last = []

    def _zone_of(self, person: PersonObservation) -> Zone | None:
        foot = Point(person.foot_point)
        for name, shape in self._shapes.items():
            if shape.covers(foot):
                zone = self.zones[name]
                if self.is_staff is not None and self.is_staff(person, zone) is False:
                    continue
                return zone
        return None

    @staticmethod
    def _check(
        cid: str, person: PersonObservation, history: PersonHistory, params: Mapping[str, float]
    ) -> Check:
        rule = load_catalogue().get(cid).rule
        return GUARD_RULES[rule][0].check(person, history, params)

    # -- derived -----------------------------------------------------------------------------------

    def salutes(self, track: int | None = None) -> list[GestureEvent]:
        found = sorted(self._salutes.values(), key=lambda e: (e.start_s, e.track_id))
        return [e for e in found if track is None or e.track_id == track]

    def _in_salute(self, track: int, t: float) -> bool:
        for e in self.salutes(track):
            end = e.end_s if e.end_s is not None else e.start_s
            if e.start_s - SALUTE_MARGIN_S - _EPS <= t <= end + SALUTE_MARGIN_S + _EPS:
                return True
        return False

    def handover_reports(self) -> list[HandoverReport]:
        """d11.handover.01 for every handover on a guard post (standby zones have no handover)."""
        out = []
        for h in sorted(self._handovers.values(), key=lambda h: (h.left_s, h.zone)):
            zone = self.zones[h.zone]
            if zone.kind != "post":
                continue
            lo = min(h.left_s, h.arrived_s) - HANDOVER_LEAD_S
            hi = max(h.left_s, h.arrived_s) + HANDOVER_TAIL_S

            def within(track: int | None, lo: float = lo, hi: float = hi) -> list[GestureEvent]:
                if track is None:
                    return []
                return [e for e in self.salutes(track) if lo - _EPS <= e.start_s <= hi + _EPS]

            out.append(
                HandoverReport(
                    zone=h.zone,
                    role=zone.role,
                    from_track=h.from_track,
                    to_track=h.to_track,
                    left_s=h.left_s,
                    arrived_s=h.arrived_s,
                    gap_s=h.gap_s,
                    window=(lo, hi),
                    from_salutes=within(h.from_track),
                    to_salutes=within(h.to_track),
                )
            )
        return out

    def _guard(self, track: int, frames: list[_Frame]) -> dict[str, Any]:
        per_zone: dict[str, float] = {}
        for rec in frames:
            per_zone[rec.zone] = per_zone.get(rec.zone, 0.0) + rec.dt
        on_post = sum(s for z, s in per_zone.items() if self.zones[z].kind == "post")
        on_standby = sum(s for z, s in per_zone.items() if self.zones[z].kind == "standby")

        # Stance: judged time per clause on posts, leaving out the guard's own salutes.
        by_clause: dict[str, dict[str, float]] = {}
        for rec in frames:
            if self.zones[rec.zone].kind != "post" or self._in_salute(track, rec.t):
                continue
            for cid, state in rec.states.items():
                acc = by_clause.setdefault(cid, {"right": 0.0, "wrong": 0.0, "unknown": 0.0})
                acc["unknown" if state is None else "wrong" if state else "right"] += rec.dt
        roles = [str(self.zones[z].role) for z in per_zone if self.zones[z].kind == "post"]
        main_role = (
            max(roles, key=lambda r: sum(s for z, s in per_zone.items() if self.zones[z].role == r))
            if roles
            else None
        )
        headline = self.headline.get(main_role) if main_role else None
        stance = {
            "clause": headline,
            "compliance": _share(by_clause.get(headline or "", {})),
            "judged_min": _minutes(_judged(by_clause.get(headline or "", {}))),
            "by_clause": {
                cid: {
                    "compliance": _share(acc),
                    "judged_min": _minutes(_judged(acc)),
                    "wrong_min": _minutes(acc["wrong"]),
                    "unknown_min": _minutes(acc["unknown"]),
                }
                for cid, acc in sorted(by_clause.items())
            },
        }

        # Phone sightings: intervals of True frames, the guard's own salutes left out.
        phone_frames = [rec for rec in frames if rec.phone and not self._in_salute(track, rec.t)]
        intervals: list[dict[str, Any]] = []
        for rec in phone_frames:
            last = intervals[-1] if intervals else None
            if last is not None and rec.t - last["end_s"] < PHONE_MERGE_S + _EPS:
                last["end_s"] = rec.t
                last["frames"] += 1
                last["seconds"] += rec.dt
            else:
                intervals.append(
                    {"start_s": rec.t, "end_s": rec.t, "frames": 1, "seconds": rec.dt, "zone": rec.zone}
                )
        for iv in intervals:
            iv["start_s"], iv["end_s"], iv["seconds"] = (
                round(iv[k], 3) for k in ("start_s", "end_s", "seconds")
            )

        salutes = self.salutes(track)
        scores = [e.score for e in salutes if e.score is not None]
        absences = [a for a in self._absences.values() if a.left_by == track]
        violations = [v for v in self._violations.values() if v.track_id == track]
        return {
            "track_id": track,
            "posts": [
                {
                    "zone": z,
                    "kind": self.zones[z].kind,
                    "role": self.zones[z].role,
                    "minutes": _minutes(s),
                }
                for z, s in sorted(per_zone.items())
            ],
            "minutes_on_post": _minutes(on_post),
            "minutes_on_standby": _minutes(on_standby),
            "first_seen_s": round(frames[0].t, 3),
            "last_seen_s": round(frames[-1].t, 3),
            "stance": stance,
            "salutes": {
                "count": len(salutes),
                "mean_score": None if not scores else round(statistics.mean(scores), 1),
                "events": [_salute_dict(e) for e in salutes],
            },
            "phone": {
                "sightings": len(intervals),
                "frames": len(phone_frames),
                "seconds": round(sum(rec.dt for rec in phone_frames), 3),
                "intervals": intervals,
            },
            "absences": [a.to_dict() for a in sorted(absences, key=lambda a: a.start_s)],
            "violations": [_violation_dict(v) for v in sorted(violations, key=lambda v: v.start_s)],
        }

    def to_dict(self) -> dict[str, Any]:
        """The audit as JSON-ready data: period, posts, guards, handovers, zone-level violations."""
        staffed: dict[str, float] = {name: 0.0 for name in self.zones}
        for (_, occupied), dt in zip(self._occupied, self._occupied_dt):
            for name in occupied:
                staffed[name] += dt
        guards = [self._guard(track, frames) for track, frames in sorted(self._frames.items()) if frames]
        handovers = self.handover_reports()
        posts = []
        for name, zone in self.zones.items():
            posts.append(
                {
                    "zone": name,
                    "kind": zone.kind,
                    "role": zone.role,
                    "staffed_min": _minutes(staffed[name]),
                    "guards": sorted(
                        g["track_id"] for g in guards if any(p["zone"] == name for p in g["posts"])
                    ),
                    "absences": [
                        a.to_dict()
                        for a in sorted(self._absences.values(), key=lambda a: a.start_s)
                        if a.zone == name
                    ],
                    "handovers": [h.to_dict() for h in handovers if h.zone == name],
                }
            )
        zone_level = [v for v in self._violations.values() if v.track_id is None]
        start = self._first_t if self._first_t is not None else 0.0
        end = self._last_t if self._last_t is not None else start
        return {
            "report": "guard shift audit",
            "site": self.site.name,
            "camera": self.camera.id,
            "period": {
                "start_s": round(start, 3),
                "end_s": round(end, 3),
                "minutes": _minutes(end - start),
                "frames": len(self._occupied),
                "start_time": None if self.camera.start_time is None else self.camera.start_time.isoformat(),
            },
            "posts": posts,
            "guards": guards,
            "handovers": [h.to_dict() for h in handovers],
            "salutes": [_salute_dict(e) for e in self.salutes()],
            "violations": [_violation_dict(v) for v in sorted(zone_level, key=lambda v: v.start_s)],
            "notes": list(self.notes),
        }

    # -- HTML --------------------------------------------------------------------------------------

    def to_html(self, snapshots: Mapping[Any, Any] | None = None, title: str | None = None) -> str:
        """A printable, self-contained page of `to_dict()`.

        `snapshots` maps a guard's track id to an image shown with that guard (their portrait,
        the clearest frame of their worst moment), and any other key to an image shown under
        "Snapshots" with the key as its caption (e.g. a violation's snapshot path). An image is
        JPEG/PNG/GIF bytes, a path to such a file, or a BGR numpy array; all are inlined as
        base64 data URIs so the page is one file that prints and mails as it is.
        """
        data = self.to_dict()
        snapshots = dict(snapshots or {})
        e = _esc
        heading = title or f"Guard shift audit - {data['site']} / {data['camera']}"
        p = data["period"]
        parts: list[str] = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{e(heading)}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>{e(heading)}</h1>",
            "<p class=meta>"
            f"Period {e(_fmt_s(p['start_s']))} to {e(_fmt_s(p['end_s']))} of the stream "
            f"({e(p['minutes'])} min, "
            f"{e(p['frames'])} frames)"
            + (f", stream start {e(p['start_time'])}" if p["start_time"] else "")
            + "</p>",
        ]
        for note in data["notes"]:
            parts.append(f"<p class=note>{e(note)}</p>")

        parts.append("<h2>Guards</h2>")
        rows = []
        for g in data["guards"]:
            st = g["stance"]
            rows.append(
                [
                    g["track_id"],
                    ", ".join(f"{x['zone']} ({x['minutes']} min)" for x in g["posts"]),
                    g["minutes_on_post"],
                    g["minutes_on_standby"],
                    "-" if st["compliance"] is None else f"{st['compliance']:.0%} ({st['clause']})",
                    g["salutes"]["count"],
                    "-" if g["salutes"]["mean_score"] is None else g["salutes"]["mean_score"],
                    g["phone"]["sightings"],
                    len(g["absences"]),
                    len(g["violations"]),
                ]
            )
        parts.append(
            _table(
                [
                    "Track",
                    "Zones",
                    "Min on post",
                    "Min on standby",
                    "Stance compliance",
                    "Salutes",
                    "Mean form",
                    "Phone sightings",
                    "Absences",
                    "Alerts",
                ],
                rows,
                "guards",
            )
        )
        for g in data["guards"]:
            parts.append(f"<h3>Guard track {e(g['track_id'])}</h3>")
            image = snapshots.pop(g["track_id"], None)
            if image is not None:
                parts.append(_img(image, f"guard track {g['track_id']}"))
            by_clause = g["stance"]["by_clause"]
            if by_clause:
                parts.append(
                    _table(
                        ["Stance clause", "Compliance", "Judged min", "Wrong min", "Unknown min"],
                        [
                            [
                                cid,
                                "-" if s["compliance"] is None else f"{s['compliance']:.0%}",
                                s["judged_min"],
                                s["wrong_min"],
                                s["unknown_min"],
                            ]
                            for cid, s in by_clause.items()
                        ],
                        "stance",
                    )
                )
            if g["salutes"]["events"]:
                parts.append(
                    _table(
                        ["Salute start", "End", "Form score"],
                        [
                            [
                                _fmt_s(s["start_s"]),
                                _fmt_s(s["end_s"]),
                                "-" if s["score"] is None else s["score"],
                            ]
                            for s in g["salutes"]["events"]
                        ],
                        "salutes",
                    )
                )
            if g["phone"]["intervals"]:
                parts.append(
                    _table(
                        ["Phone seen from", "To", "Frames", "Zone"],
                        [
                            [_fmt_s(i["start_s"]), _fmt_s(i["end_s"]), i["frames"], i["zone"]]
                            for i in g["phone"]["intervals"]
                        ],
                        "phone",
                    )
                )
            if g["violations"]:
                parts.append(
                    _table(
                        ["Clause", "From", "To", "Message"],
                        [
                            [v["clause"], _fmt_s(v["start_s"]), _fmt_s(v["end_s"]), v["message"]]
                            for v in g["violations"]
                        ],
                        "violations",
                    )
                )

        parts.append("<h2>Posts</h2>")
        parts.append(
            _table(
                ["Zone", "Kind", "Role", "Staffed min", "Guards", "Absences", "Handovers"],
                [
                    [
                        x["zone"],
                        x["kind"],
                        x["role"],
                        x["staffed_min"],
                        ", ".join(str(t) for t in x["guards"]) or "-",
                        len(x["absences"]),
                        len(x["handovers"]),
                    ]
                    for x in data["posts"]
                ],
                "posts",
            )
        )
        absences = [a for x in data["posts"] for a in x["absences"]]
        if absences:
            parts.append("<h2>Absences</h2>")
            parts.append(
                _table(
                    ["Zone", "From", "To", "Seconds", "Left by", "Returned by", "Approved"],
                    [
                        [
                            a["zone"],
                            _fmt_s(a["start_s"]),
                            _fmt_s(a["end_s"]),
                            a["absence_s"],
                            a["left_by"],
                            a["returned_by"],
                            "; ".join(a["reasons"]) if a["approved"] else "no",
                        ]
                        for a in absences
                    ],
                    "absences",
                )
            )
        parts.append(f"<h2>Handovers ({e(HANDOVER_CLAUSE)})</h2>")
        parts.append(
            _table(
                [
                    "Zone",
                    "From track",
                    "To track",
                    "Left",
                    "Arrived",
                    "Post empty",
                    "Both saluted",
                    "Face to face",
                ],
                [
                    [
                        h["zone"],
                        h["from_track"],
                        h["to_track"],
                        _fmt_s(h["left_s"]),
                        _fmt_s(h["arrived_s"]),
                        f"yes ({h['gap_s']} s)" if h["post_empty"] else "no",
                        "yes" if h["both_saluted"] else "no",
                        "yes" if h["face_to_face"] else "no",
                    ]
                    for h in data["handovers"]
                ],
                "handovers",
            )
        )
        if data["violations"]:
            parts.append("<h2>Post alerts</h2>")
            parts.append(
                _table(
                    ["Clause", "From", "To", "Message"],
                    [
                        [v["clause"], _fmt_s(v["start_s"]), _fmt_s(v["end_s"]), v["message"]]
                        for v in data["violations"]
                    ],
                    "violations",
                )
            )
        if snapshots:
            parts.append("<h2>Snapshots</h2><div class=shots>")
            for key, image in snapshots.items():
                parts.append(f"<figure>{_img(image, str(key))}<figcaption>{e(key)}</figcaption></figure>")
            parts.append("</div>")
        parts.append("</body></html>")
        return "\n".join(parts)


# -- helpers -----------------------------------------------------------------------------------------

_CSS = (
    "body{font-family:sans-serif;margin:1.5em;color:#222}"
    "h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}h3{font-size:1em}"
    "table{border-collapse:collapse;margin:.5em 0;font-size:.9em}"
    "th,td{border:1px solid #999;padding:.25em .5em;text-align:left;vertical-align:top}"
    "th{background:#eee}.meta{color:#555}.note{color:#a40}"
    "img{max-width:320px;max-height:240px;border:1px solid #999}"
    ".shots{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}"
    "@media print{body{margin:0}h2{page-break-after:avoid}table{page-break-inside:avoid}}"
)


def _esc(value: Any) -> str:
    return html.escape("-" if value is None else str(value), quote=True)


def _table(headers: list[str], rows: list[list[Any]], css: str) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    if not rows:
        return (
            f'<table class="{_esc(css)}"><tr>{head}</tr><tr><td colspan={len(headers)}>none</td></tr></table>'
        )
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{_esc(css)}"><tr>{head}</tr>{body}</table>'


def _img(image: Any, alt: str) -> str:
    mime, data = _image_bytes(image)
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:{mime};base64,{encoded}">'


def _image_bytes(image: Any) -> tuple[str, bytes]:
    """(mime type, bytes) of a snapshot given as bytes, a file path or a BGR array."""
    if isinstance(image, np.ndarray):
        import cv2

        ok, buf = cv2.imencode(".jpg", image)
        if not ok:
            raise ValueError("snapshot array could not be encoded as JPEG")
        return "image/jpeg", buf.tobytes()
    if isinstance(image, (str, Path)):
        data = Path(image).read_bytes()
    elif isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    else:
        raise TypeError(f"snapshot must be bytes, a path or an image array, got {type(image).__name__}")
    if data.startswith(b"\x89PNG"):
        return "image/png", data
    if data[:4] in (b"GIF8",):
        return "image/gif", data
    return "image/jpeg", data


def _minutes(seconds: float) -> float:
    return round(seconds / 60.0, 2)


def _judged(acc: Mapping[str, float]) -> float:
    return acc.get("right", 0.0) + acc.get("wrong", 0.0)


def _share(acc: Mapping[str, float]) -> float | None:
    judged = _judged(acc)
    return None if judged <= _EPS else round(acc["right"] / judged, 3)


def _fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    h, rest = divmod(float(value), 3600.0)
    m, s = divmod(rest, 60.0)
    return f"{int(h)}:{int(m):02d}:{s:04.1f}" if h else f"{int(m)}:{s:04.1f}"


def _salute_dict(e: GestureEvent) -> dict[str, Any]:
    return {
        "track_id": e.track_id,
        "start_s": round(e.start_s, 3),
        "end_s": None if e.end_s is None else round(e.end_s, 3),
        "score": None if e.score is None else round(e.score, 1),
        "frames": e.frames,
        "parts": dict(e.parts),
        "lowered": e.lowered,
    }


def _violation_dict(v: Violation) -> dict[str, Any]:
    return {
        "clause": v.clause,
        "track_id": v.track_id,
        "start_s": round(v.start_s, 3),
        "end_s": None if v.end_s is None else round(v.end_s, 3),
        "duration_s": round(v.duration(), 3),
        "message": v.message,
        "snapshot": v.snapshot,
    }
