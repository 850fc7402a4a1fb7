"""One camera's rules around the vision pipeline: what `analyze` (and later the service's
camera workers) run per frame.

Without a site the whole frame is one post of one role, so every person is judged by that
role's clauses. With a site, a person is judged by the clauses of the role whose post or
standby zone their feet stand in (customers elsewhere are not judged), and a `ZoneMonitor`
watches the zones themselves (empty posts, handovers, intruders, standby).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from calibration.site import Camera, Site, Zone
from calibration.uniform import StaffClassifier
from rules.audit import ShiftAudit
from rules.customers import CustomerMonitor
from rules.engine import RuleEngine, ViolationEvent
from rules.guard import GestureEvent, SaluteDetector, TrafficGestureDetector
from rules.violation import Violation
from rules.zones import ZoneMonitor
from vision.observation import FrameObservation, PersonObservation

IsStaff = Callable[[PersonObservation, Zone], "bool | None"]
DUTY_ZONES = ("post", "standby")


class CameraRules:
    """Person-level engines (one per role on duty) plus the zone monitor of one camera."""

    def __init__(
        self,
        camera_id: str,
        role: str = "front_desk",
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        site: Site | None = None,
        camera: Camera | None = None,
        is_staff: IsStaff | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.site = site
        self.camera = camera
        self.zones: ZoneMonitor | None = None
        self.customers: CustomerMonitor | None = None  # d1.floor.09, d1.reception.03, arrivals
        self.audit: ShiftAudit | None = None  # guards' shift audit, when the camera has guard posts
        duty = [z for z in camera.zones if z.kind in DUTY_ZONES] if camera is not None else []
        self._duty_by_role: dict[str, list[Zone]] = {}
        for zone in duty:
            self._duty_by_role.setdefault(str(zone.role), []).append(zone)
        # Camera geometry the checks read from the evidence: the door (d1.reception.05) and the
        # floor homography (heel gap and speed in metres); computed once.
        self._camera_context: dict[str, Any] = {}
        if camera is not None and camera.door is not None:
            self._camera_context["door_facing_yaw_deg"] = float(camera.door.facing_yaw_deg)
        if camera is not None and camera.floor is not None:
            self._camera_context["floor_h"] = camera.floor.matrix().tolist()
        self.staff: StaffClassifier | None = None
        if site is not None and camera is not None:
            extra = overrides or {}
            if is_staff is None and any(r.uniform is not None for r in site.roles.values()):
                self.staff = StaffClassifier(site)
                is_staff = self.staff.is_staff
            self.zones = ZoneMonitor(camera, site, overrides=extra, is_staff=is_staff)
            self.customers = CustomerMonitor(camera, site, overrides=extra, is_staff=is_staff)
            if any(str(z.role).startswith("guard_") for z in duty):
                self.audit = ShiftAudit(camera, site, overrides=extra, is_staff=is_staff)
            roles = list(self._duty_by_role) or [role]
            self.engines = {
                r: RuleEngine(camera_id, role=r, overrides=_merge(site.overrides_for(r), extra))
                for r in roles
            }
        else:
            self.engines = {role: RuleEngine(camera_id, role=role, overrides=overrides or {})}
        # Guard gestures are reports, not alerts: salutes with their form score, traffic signals.
        guard_roles = [r for r in self.engines if r.startswith("guard_")]
        self.gestures = [SaluteDetector(), TrafficGestureDetector()] if guard_roles else []
        self.gesture_events: list[GestureEvent] = []

    def update(self, obs: FrameObservation, image: np.ndarray | None = None) -> list[ViolationEvent]:
        """Judge one frame; `image` lets enrolled uniforms be matched (appearance clauses, staff)."""
        if self.staff is not None and image is not None:
            self.staff.update(obs, image)
        events: list[ViolationEvent] = []
        for role, engine in self.engines.items():
            events.extend(engine.update(self._on_duty(obs, role)))
        if self.zones is not None:
            events.extend(self.zones.update(obs))
        if self.customers is not None:
            events.extend(self.customers.update(obs))
        if self.audit is not None:
            self.audit.update(obs)
        for detector in self.gestures:
            self.gesture_events += [e for e in detector.update(obs) if e.kind == "ended"]
        return events

    def finish(self, t: float | None = None) -> list[ViolationEvent]:
        events: list[ViolationEvent] = []
        for engine in self.engines.values():
            events.extend(engine.finish(t))
        if self.zones is not None:
            events.extend(self.zones.finish(t))
        if self.customers is not None:
            events.extend(self.customers.finish(t))
        if self.audit is not None:
            self.audit.finish(t)
        for detector in self.gestures:
            self.gesture_events += [e for e in detector.finish() if e.kind == "ended"]
        return events

    @property
    def violations(self) -> list[Violation]:
        found = [v for e in self.engines.values() for v in e.violations]
        if self.zones is not None:
            found += self.zones.violations
        if self.customers is not None:
            found += self.customers.violations
        return sorted(found, key=lambda v: (v.start_s, v.clause))

    def open_violations(self) -> list[Violation]:
        found = [v for e in self.engines.values() for v in e.open_violations()]
        if self.zones is not None:
            found += self.zones.open_violations()
        if self.customers is not None:
            found += self.customers.open_violations()
        return found

    def reports(self) -> dict[str, Any]:
        """What is reported besides alerts: handovers, absences (approved or not), guard gestures,
        customer arrivals and visits, and the guards' shift audit."""
        out: dict[str, Any] = {}
        if self.zones is not None:
            z = self.zones
            out["handovers"] = [h.to_dict() for h in z.handovers]
            out["absences"] = [a.to_dict() for a in z.absences + z.open_absences()]
            out["notes"] = list(z.notes)
        if self.gestures:
            out["gestures"] = [_gesture(e) for e in self.gesture_events]
        if self.customers is not None:
            found = self.customers.reports()
            notes = out.get("notes", []) + found.pop("notes", [])  # both monitors' notes
            out.update(found)
            out["notes"] = notes
        if self.audit is not None and self.zones is not None:
            self.audit.add(
                violations=self.violations,
                absences=self.zones.absences,
                handovers=self.zones.handovers,
                gestures=self.gesture_events,
            )
            out["audit"] = self.audit.to_dict()
        return out

    def _on_duty(self, obs: FrameObservation, role: str) -> FrameObservation:
        """The frame with only the persons a role's clauses judge (all of them without zones)."""
        zones = self._duty_by_role.get(role)
        if not zones:
            if self.camera is None:
                return obs
            out = copy.copy(obs)
            out.persons = [self._with_role(p, role) for p in obs.persons]
            return out
        out = copy.copy(obs)
        out.persons = [
            self._with_role(p, role) for p in obs.persons if any(z.contains(p.foot_point) for z in zones)
        ]
        return out

    def _with_role(self, person: PersonObservation, role: str) -> PersonObservation:
        """The person with the site context the appearance checks read from the evidence."""
        profile = self.site.roles.get(role) if self.site is not None else None
        extra: dict[str, Any] = {"role": role, **self._camera_context}
        if profile is not None:
            extra["tie_required"] = profile.tie_required
        if profile is not None and profile.uniform is not None and self.staff is not None:
            extra["uniform_match"] = self.staff.match_of(person.track_id, role)
        out = copy.copy(person)
        out.evidence = {**person.evidence, **extra}
        return out


def _gesture(e: GestureEvent) -> dict[str, Any]:
    return {
        "clause": e.clause,
        "label": e.label,
        "track_id": e.track_id,
        "start_s": round(e.start_s, 3),
        "end_s": None if e.end_s is None else round(e.end_s, 3),
        "score": None if e.score is None else round(e.score, 1),
        "parts": e.parts,
        "lowered": e.lowered,
    }


def _merge(*layers: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for clause, params in layer.items():
            merged.setdefault(clause, {}).update(params)
    return merged
