"""The alert store: the one place that reads and writes alerts, cameras, approvals and keys.

Who uses it and how:

* Camera workers turn rule-engine events into alerts - `open_alert(violation, camera,
  site)`, `update_alert`, `close_alert` (or `CameraRecorder`, which maps a RuleEngine's
  `ViolationEvent.index` to stored alert ids) - attach media with `set_media`, and report
  their health with `set_camera_status`.
* Delivery (SSE, webhooks, MQTT) and running rules call `subscribe(callback)`: after each
  committed change the store calls every subscriber with a `StoreEvent` (alert opened /
  updated / closed / acknowledged, approval created / cancelled, ...). Callbacks run in
  the thread that made the change, so they must be quick: put the event on a queue.
* The HTTP API reads through the same methods, passing the caller's `Scope` so that a
  key never sees another site's (or another role's) alerts - the scope is applied in the
  queries, not left to each route.

Every method opens and commits its own short transaction and returns plain frozen
records, detached from the database, so they can cross threads freely.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, case, func, or_, select, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from rules.violation import Violation
from service.db import WRITE, database_url, make_engine, upgrade
from service.models import (
    AlertRow,
    ApiKeyRow,
    ApprovalRow,
    CameraReportRow,
    CameraRow,
    SiteRow,
    as_utc,
    utcnow,
)

if TYPE_CHECKING:
    from calibration.site import Approval as SiteApproval
    from calibration.site import Camera as SiteCamera
    from calibration.site import Site
    from rules.engine import ViolationEvent

log = logging.getLogger(__name__)

# Event kinds passed to subscribers.
ALERT_OPENED = "alert.opened"
ALERT_UPDATED = "alert.updated"
ALERT_CLOSED = "alert.closed"
ALERT_MEDIA = "alert.media"  # snapshot or clip attached
ALERT_ACKNOWLEDGED = "alert.acknowledged"
ALERT_FALSE_ALARM = "alert.false_alarm"
APPROVAL_CREATED = "approval.created"
APPROVAL_CANCELLED = "approval.cancelled"
CAMERA_STATUS = "camera.status"  # connected flipped or the error changed
EVENT_KINDS = (
    ALERT_OPENED,
    ALERT_UPDATED,
    ALERT_CLOSED,
    ALERT_MEDIA,
    ALERT_ACKNOWLEDGED,
    ALERT_FALSE_ALARM,
    APPROVAL_CREATED,
    APPROVAL_CANCELLED,
    CAMERA_STATUS,
)


class NotFound(LookupError):
    """No such record - or one the caller's scope does not cover (the two look the same)."""


class Conflict(ValueError):
    """The change contradicts the record's state (e.g. an alert acknowledged twice)."""


# -- records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Review:
    """Who reviewed an alert (acknowledged it, or called it a false alarm), when, and why."""

    by: str
    at: datetime
    comment: str = ""


@dataclass(frozen=True)
class Alert:
    """A stored alert: one violation, numbered, with wall-clock times and its review state."""

    id: int
    site: str
    camera: str
    clause: str
    role: str | None
    track_id: int | None
    start_s: float
    end_s: float | None
    started_at: datetime
    ended_at: datetime | None
    duration_s: float
    confidence: float
    message: str
    details: dict[str, Any]
    snapshot_t: float | None
    snapshot: str | None
    clip: str | None
    acknowledged: bool
    ack: Review | None
    false_alarm: bool
    false_alarm_review: Review | None
    created_at: datetime
    updated_at: datetime

    @property
    def open(self) -> bool:
        return self.end_s is None

    @classmethod
    def from_row(cls, row: AlertRow) -> Alert:
        ack = Review(row.ack_by or "", row.ack_at, row.ack_comment or "") if row.ack_at else None
        fa = (
            Review(row.false_alarm_by or "", row.false_alarm_at, row.false_alarm_comment or "")
            if row.false_alarm_at
            else None
        )
        return cls(
            id=row.id,
            site=row.site_id,
            camera=row.camera_id,
            clause=row.clause,
            role=row.role,
            track_id=row.track_id,
            start_s=row.start_s,
            end_s=row.end_s,
            started_at=row.started_at,
            ended_at=row.ended_at,
            duration_s=row.duration_s,
            confidence=row.confidence,
            message=row.message,
            details=dict(row.details or {}),
            snapshot_t=row.snapshot_t,
            snapshot=row.snapshot,
            clip=row.clip,
            acknowledged=row.acknowledged,
            ack=ack,
            false_alarm=row.false_alarm,
            false_alarm_review=fa,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@dataclass(frozen=True)
class Approval:
    """Approved leave for one post of one camera, in [start, end)."""

    id: int
    site: str
    camera: str
    post: str
    start: datetime
    end: datetime
    reason: str
    created_by: str
    created_at: datetime
    cancelled: bool
    cancelled_at: datetime | None
    cancelled_by: str | None

    def active(self, at: datetime) -> bool:
        at = as_utc(at)  # type: ignore[assignment]
        return not self.cancelled and self.start <= at < self.end

    def to_site_approval(self) -> SiteApproval:
        """The same leave as the site file's `Approval`, the shape the rules read."""
        from calibration.site import Approval as SiteApproval

        return SiteApproval(
            camera=self.camera, post=self.post, start=self.start, end=self.end, reason=self.reason
        )

    @classmethod
    def from_row(cls, row: ApprovalRow) -> Approval:
        return cls(
            id=row.id,
            site=row.site_id,
            camera=row.camera_id,
            post=row.post,
            start=row.starts_at,
            end=row.ends_at,
            reason=row.reason,
            created_by=row.created_by,
            created_at=row.created_at,
            cancelled=row.cancelled,
            cancelled_at=row.cancelled_at,
            cancelled_by=row.cancelled_by,
        )


@dataclass(frozen=True)
class CameraStatus:
    """A camera and its live status as its worker last reported it."""

    site: str
    id: str
    name: str
    role: str | None
    connected: bool
    analysed_fps: float | None
    last_frame_t: float | None
    last_frame_at: datetime | None
    last_error: str | None
    updated_at: datetime | None

    @classmethod
    def from_row(cls, row: CameraRow) -> CameraStatus:
        return cls(
            site=row.site_id,
            id=row.id,
            name=row.name or row.id,
            role=row.role,
            connected=row.connected,
            analysed_fps=row.analysed_fps,
            last_frame_t=row.last_frame_t,
            last_frame_at=row.last_frame_at,
            last_error=row.last_error,
            updated_at=row.updated_at,
        )


@dataclass(frozen=True)
class CameraReport:
    """What one run of a camera reported besides alerts, as its worker last saved it.

    `payload` is `service.session.CameraRules.reports()`: handovers, absences (approved or not),
    salutes and other gestures, customer arrivals and visits, the guards' shift audit.
    `audit_html` is that audit as a printable page (cameras with guard posts only)."""

    id: int
    site: str
    camera: str
    started_at: datetime
    updated_at: datetime
    stream_t: float
    final: bool
    has_audit: bool
    payload: dict[str, Any] = field(repr=False)
    audit_html: str | None = field(repr=False, default=None)

    @classmethod
    def from_row(cls, row: CameraReportRow, full: bool = True) -> CameraReport:
        return cls(
            id=row.id,
            site=row.site_id,
            camera=row.camera_id,
            started_at=row.started_at,
            updated_at=row.updated_at,
            stream_t=row.stream_t,
            final=row.final,
            has_audit=row.audit_html is not None,
            payload=dict(row.payload or {}) if full else {},
            audit_html=row.audit_html if full else None,
        )


@dataclass(frozen=True)
class ApiKey:
    """A stored key without its secret: what a request was authenticated as."""

    key_id: str
    name: str
    role: str
    sites: tuple[str, ...]
    cameras: tuple[str, ...] | None
    created_at: datetime
    revoked: bool
    secret_hash: str = field(repr=False, default="")

    @classmethod
    def from_row(cls, row: ApiKeyRow) -> ApiKey:
        return cls(
            key_id=row.key_id,
            name=row.name,
            role=row.role,
            sites=tuple(row.sites or ()),
            cameras=tuple(row.cameras) if row.cameras is not None else None,
            created_at=row.created_at,
            revoked=row.revoked,
            secret_hash=row.secret_hash,
        )


@dataclass(frozen=True)
class StoreEvent:
    """A committed change, as passed to subscribers; exactly one of the records is set."""

    kind: str
    alert: Alert | None = None
    approval: Approval | None = None
    camera: CameraStatus | None = None

    @property
    def site(self) -> str:
        record = self.alert or self.approval or self.camera
        return record.site if record is not None else ""


@dataclass(frozen=True)
class Total:
    """Count and summed duration of a group of alerts (a report line)."""

    count: int
    duration_s: float
    open: int = 0


@dataclass(frozen=True)
class ShiftReport:
    """Alerts that started in [start, end): per clause, and per tracked person (with their clauses)."""

    start: datetime
    end: datetime
    total: Total
    clauses: dict[str, Total]
    tracks: dict[tuple[str, str, int | None], dict[str, Total]]  # (site, camera, track) -> clause -> total

    def track_total(self, key: tuple[str, str, int | None]) -> Total:
        parts = self.tracks[key].values()
        return Total(
            sum(p.count for p in parts), sum(p.duration_s for p in parts), sum(p.open for p in parts)
        )


# -- queries -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """What a caller may see. None means no restriction on that axis.

    `sites` and `cameras` are ids; `cameras` applies within every allowed site. A
    `clause_prefixes` scope (security keys: "d11.") hides alerts of other clauses.
    """

    sites: frozenset[str] | None = None
    cameras: frozenset[str] | None = None
    clause_prefixes: tuple[str, ...] | None = None

    def allows(self, site: str, camera: str | None = None, clause: str | None = None) -> bool:
        if self.sites is not None and site not in self.sites:
            return False
        if camera is not None and self.cameras is not None and camera not in self.cameras:
            return False
        if clause is not None and self.clause_prefixes is not None:
            return clause.startswith(self.clause_prefixes)
        return True

    def where(self, stmt: Select[Any], site_col: Any, camera_col: Any, clause_col: Any = None) -> Select[Any]:
        if self.sites is not None:
            stmt = stmt.where(site_col.in_(sorted(self.sites)))
        if self.cameras is not None:
            stmt = stmt.where(camera_col.in_(sorted(self.cameras)))
        if clause_col is not None and self.clause_prefixes is not None:
            stmt = stmt.where(or_(*(clause_col.startswith(p, autoescape=True) for p in self.clause_prefixes)))
        return stmt


EVERYTHING = Scope()


@dataclass(frozen=True)
class AlertFilter:
    """Filters of `list_alerts`; each None is "any". Times bound `started_at`: [since, until)."""

    sites: Sequence[str] | None = None
    cameras: Sequence[str] | None = None
    clauses: Sequence[str] | None = None
    roles: Sequence[str] | None = None
    track_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    open: bool | None = None
    acknowledged: bool | None = None
    false_alarm: bool | None = None

    def where(self, stmt: Select[Any]) -> Select[Any]:
        a = AlertRow
        if self.sites:
            stmt = stmt.where(a.site_id.in_(list(self.sites)))
        if self.cameras:
            stmt = stmt.where(a.camera_id.in_(list(self.cameras)))
        if self.clauses:
            stmt = stmt.where(a.clause.in_(list(self.clauses)))
        if self.roles:
            stmt = stmt.where(a.role.in_(list(self.roles)))
        if self.track_id is not None:
            stmt = stmt.where(a.track_id == self.track_id)
        if self.since is not None:
            stmt = stmt.where(a.started_at >= as_utc(self.since))
        if self.until is not None:
            stmt = stmt.where(a.started_at < as_utc(self.until))
        if self.open is not None:
            stmt = stmt.where(a.end_s.is_(None) if self.open else a.end_s.is_not(None))
        if self.acknowledged is not None:
            stmt = stmt.where(a.acknowledged.is_(self.acknowledged))
        if self.false_alarm is not None:
            stmt = stmt.where(a.false_alarm.is_(self.false_alarm))
        return stmt


# -- helpers -----------------------------------------------------------------------------------


def _site_id(site: str | Site) -> str:
    return site if isinstance(site, str) else site.name


def _camera_id(camera: str | SiteCamera) -> str:
    return camera if isinstance(camera, str) else camera.id


def camera_role(camera: SiteCamera) -> str | None:
    """The role on duty at a site camera: that of its first post (else standby) zone."""
    for kind in ("post", "standby"):
        for zone in camera.zones_of(kind):
            if zone.role:
                return zone.role
    return None


def _jsonable(value: Any) -> Any:
    """`value` as plain JSON types (numpy scalars and the like become floats or strings).

    Why: details come from the rules and may hold numpy numbers; a JSON column would fail
    on them mid-shift, and NaN is not valid JSON for PostgreSQL.
    """

    def default(obj: Any) -> Any:
        try:
            return float(obj)
        except (TypeError, ValueError):
            return str(obj)

    def clean(obj: Any) -> Any:
        if isinstance(obj, float) and not math.isfinite(obj):
            return None
        if isinstance(obj, dict):
            return {str(k): clean(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [clean(v) for v in obj]
        return obj

    return clean(json.loads(json.dumps(value, default=default)))


def _num(value: Any, fallback: float = 0.0) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return fallback
    return out if math.isfinite(out) else fallback


Subscriber = Callable[[StoreEvent], None]


class AlertStore:
    """Repository over one database (SQLite file or PostgreSQL), shared by workers and the API.

    `AlertStore(url)` does not touch the schema; call `upgrade()` (the app does at start).
    `clock` returns the current wall time (aware); tests pass a fixed one.
    """

    def __init__(
        self,
        url: str | URL | None = None,
        *,
        engine: Engine | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine if engine is not None else make_engine(url)
        self.url = self.engine.url if engine is not None else database_url(url)
        self._clock = clock
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(**{WRITE: True}), expire_on_commit=False)
        self._subscribers: list[tuple[Subscriber, frozenset[str] | None]] = []
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------

    def upgrade(self) -> None:
        """Run the migrations up to the latest revision (idempotent)."""
        upgrade(self.engine)

    def ping(self) -> bool:
        """Whether the database answers (for /healthz)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:  # any driver error means "not healthy"; the cause is logged
            log.warning("database ping failed", exc_info=True)
            return False

    def close(self) -> None:
        self.engine.dispose()

    def now(self) -> datetime:
        return as_utc(self._clock())  # type: ignore[return-value]

    # -- events ----------------------------------------------------------------------------------

    def subscribe(self, callback: Subscriber, kinds: Iterable[str] | None = None) -> Callable[[], None]:
        """Call `callback(event)` after every committed change (of `kinds`, default all).

        Returns a function that unsubscribes. A subscriber that raises is logged and
        skipped; it never undoes the change or stops the other subscribers.
        """
        wanted = frozenset(kinds) if kinds is not None else None
        if wanted is not None and not wanted <= set(EVENT_KINDS):
            raise ValueError(f"unknown event kinds: {', '.join(sorted(wanted - set(EVENT_KINDS)))}")
        entry = (callback, wanted)
        with self._lock:
            self._subscribers.append(entry)

        def unsubscribe() -> None:
            with self._lock:
                if entry in self._subscribers:
                    self._subscribers.remove(entry)

        return unsubscribe

    def _emit(self, event: StoreEvent) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback, kinds in subscribers:
            if kinds is not None and event.kind not in kinds:
                continue
            try:
                callback(event)
            except Exception:  # a broken subscriber must not break the worker that wrote
                log.exception("store subscriber %r failed on %s", callback, event.kind)

    # -- sites and cameras -----------------------------------------------------------------------

    def sync_site(self, site: Site) -> None:
        """Register a site file's site and cameras (name, role on duty); existing rows keep their status.

        Cameras no longer in the file are kept: their alerts still refer to them.
        """
        with self._write.begin() as s:
            row = self._ensure_site(s, site.name)
            row.name = row.name or site.name
            for cam in site.cameras:
                cam_row = self._ensure_camera(s, site.name, cam.id)
                cam_row.role = camera_role(cam) or cam_row.role

    def ensure_camera(self, site: str | Site, camera: str | SiteCamera, role: str | None = None) -> None:
        """Make sure the site and camera exist (workers call this before their first status)."""
        with self._write.begin() as s:
            row = self._ensure_camera(s, _site_id(site), _camera_id(camera))
            if role is None and not isinstance(camera, str):
                role = camera_role(camera)
            if role is not None:
                row.role = role

    def set_camera_status(
        self,
        site: str | Site,
        camera: str | SiteCamera,
        *,
        connected: bool | None = None,
        analysed_fps: float | None = None,
        last_frame_t: float | None = None,
        last_frame_at: datetime | None = None,
        error: str | None = None,
        clear_error: bool = False,
    ) -> CameraStatus:
        """Update a camera's live status; only the fields given change.

        Workers call this every second or so. Subscribers hear `camera.status` only when
        `connected` flips or the error changes, not on every call.
        """
        with self._write.begin() as s:
            row = self._ensure_camera(s, _site_id(site), _camera_id(camera))
            before = (row.connected, row.last_error)
            if connected is not None:
                row.connected = connected
            if analysed_fps is not None:
                row.analysed_fps = _num(analysed_fps)
            if last_frame_t is not None:
                row.last_frame_t = _num(last_frame_t)
                row.last_frame_at = as_utc(last_frame_at) or self.now()
            elif last_frame_at is not None:
                row.last_frame_at = as_utc(last_frame_at)
            if error is not None:
                row.last_error = error
            elif clear_error:
                row.last_error = None
            row.updated_at = self.now()
            status = CameraStatus.from_row(row)
        if (status.connected, status.last_error) != before:
            self._emit(StoreEvent(CAMERA_STATUS, camera=status))
        return status

    def cameras(self, scope: Scope = EVERYTHING) -> list[CameraStatus]:
        stmt = scope.where(select(CameraRow), CameraRow.site_id, CameraRow.id)
        with self._read() as s:
            rows = s.scalars(stmt.order_by(CameraRow.site_id, CameraRow.id)).all()
            return [CameraStatus.from_row(r) for r in rows]

    def camera(self, site: str, camera: str) -> CameraStatus | None:
        with self._read() as s:
            row = s.get(CameraRow, (site, camera))
            return CameraStatus.from_row(row) if row else None

    # -- camera reports ----------------------------------------------------------------------------

    def save_report(
        self,
        site: str | Site,
        camera: str | SiteCamera,
        started_at: datetime,
        stream_t: float,
        payload: dict[str, Any],
        *,
        audit_html: str | None = None,
        final: bool = False,
    ) -> CameraReport:
        """Write a run's report (the run is the camera and its wall-clock start): the first call
        creates it, later ones replace its content. A final report is not written over again."""
        site_id, camera_id = _site_id(site), _camera_id(camera)
        started = as_utc(started_at)
        with self._write.begin() as s:
            self._ensure_camera(s, site_id, camera_id)
            stmt = select(CameraReportRow).where(
                CameraReportRow.site_id == site_id,
                CameraReportRow.camera_id == camera_id,
                CameraReportRow.started_at == started,
            )
            row = s.scalars(stmt).first()
            if row is None:
                row = CameraReportRow(site_id=site_id, camera_id=camera_id, started_at=started)
                s.add(row)
            elif row.final:
                return CameraReport.from_row(row)
            row.payload = _jsonable(payload)
            row.audit_html = audit_html
            row.stream_t = _num(stream_t)
            row.final = final
            row.updated_at = self.now()
            s.flush()
            return CameraReport.from_row(row)

    def close_reports(self, site: str | Site, camera: str | SiteCamera) -> int:
        """Mark a camera's unfinished reports final (a run that was killed: a new run starts its
        own report, and the old one keeps what was saved of it). Returns how many."""
        r = CameraReportRow
        with self._write.begin() as s:
            rows = s.scalars(
                select(r).where(
                    r.site_id == _site_id(site), r.camera_id == _camera_id(camera), r.final.is_(False)
                )
            ).all()
            for row in rows:
                row.final = True
            return len(rows)

    def camera_reports(
        self,
        scope: Scope = EVERYTHING,
        *,
        sites: Sequence[str] | None = None,
        cameras: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
    ) -> list[CameraReport]:
        """Runs' reports, newest start first, without their content; `since`/`until` bound the
        run's start: [since, until)."""
        r = CameraReportRow
        stmt = scope.where(select(r), r.site_id, r.camera_id)
        if sites:
            stmt = stmt.where(r.site_id.in_(list(sites)))
        if cameras:
            stmt = stmt.where(r.camera_id.in_(list(cameras)))
        if since is not None:
            stmt = stmt.where(r.started_at >= as_utc(since))
        if until is not None:
            stmt = stmt.where(r.started_at < as_utc(until))
        stmt = stmt.order_by(r.started_at.desc(), r.id.desc()).limit(limit)
        with self._read() as s:
            return [CameraReport.from_row(row, full=False) for row in s.scalars(stmt)]

    def camera_report(self, report_id: int, scope: Scope = EVERYTHING) -> CameraReport | None:
        """One run's report with its content, None when missing or outside `scope`."""
        with self._read() as s:
            row = s.get(CameraReportRow, report_id)
            if row is None or not scope.allows(row.site_id, row.camera_id):
                return None
            return CameraReport.from_row(row)

    def sites(self) -> list[str]:
        with self._read() as s:
            return list(s.scalars(select(SiteRow.id).order_by(SiteRow.id)))

    def _ensure_site(self, s: Session, site_id: str) -> SiteRow:
        row = s.get(SiteRow, site_id)
        if row is None:
            try:
                with s.begin_nested():
                    row = SiteRow(id=site_id, name=site_id, created_at=self.now())
                    s.add(row)
            except IntegrityError:  # another writer created it in between
                row = s.get(SiteRow, site_id)
        assert row is not None
        return row

    def _ensure_camera(self, s: Session, site_id: str, camera_id: str) -> CameraRow:
        if not site_id or not camera_id:
            raise ValueError("site and camera ids must not be empty")
        row = s.get(CameraRow, (site_id, camera_id))
        if row is None:
            self._ensure_site(s, site_id)
            try:
                with s.begin_nested():
                    row = CameraRow(site_id=site_id, id=camera_id, name=camera_id, created_at=self.now())
                    s.add(row)
            except IntegrityError:
                row = s.get(CameraRow, (site_id, camera_id))
        assert row is not None
        return row

    # -- alerts: written by workers --------------------------------------------------------------

    def _wall(self, at: datetime | None, t: float | None, stream_s: float) -> datetime:
        """The wall time of stream time `stream_s`, given that stream time `t` happened at `at`.

        One linear mapping per call, so the wall-clock duration always equals the stream one.
        """
        at = as_utc(at) or self.now()
        if t is None:
            return at
        return at + timedelta(seconds=float(stream_s) - float(t))

    @staticmethod
    def _fill(row: AlertRow, violation: Violation, t: float | None) -> None:
        row.confidence = _num(violation.confidence)
        row.message = violation.message or ""
        row.details = _jsonable(violation.details or {})
        row.snapshot_t = None if violation.snapshot_t is None else _num(violation.snapshot_t)
        if violation.snapshot:
            row.snapshot = str(violation.snapshot)
        if violation.end_s is not None:
            row.duration_s = max(0.0, _num(violation.end_s) - row.start_s)
        elif t is not None:
            row.duration_s = max(0.0, float(t) - row.start_s)
        else:
            row.duration_s = _num((violation.details or {}).get("duration_s"), row.duration_s or 0.0)

    def open_alert(
        self,
        violation: Violation,
        camera: str | SiteCamera,
        site: str | Site,
        *,
        role: str | None = None,
        t: float | None = None,
        at: datetime | None = None,
    ) -> Alert:
        """Store a new alert for `violation` and tell subscribers ("alert.opened").

        Wall times: stream time `t` (the event's `t`) happened at wall time `at` (default
        now), so `started_at = at - (t - start_s)`. Without `t`, the violation's own
        duration so far (details["duration_s"]) stands in for `t - start_s`. `role`
        defaults to the camera's role on duty. A violation that is already closed is
        stored closed and subscribers hear "alert.opened" then "alert.closed".
        """
        site_id, camera_id = _site_id(site), _camera_id(camera)
        if t is None:
            t = violation.start_s + _num((violation.details or {}).get("duration_s"))
        now = self.now()
        with self._write.begin() as s:
            cam = self._ensure_camera(s, site_id, camera_id)
            if role is None and not isinstance(camera, str):
                role = camera_role(camera)
            row = AlertRow(
                site_id=site_id,
                camera_id=camera_id,
                clause=violation.clause,
                role=role or cam.role,
                track_id=violation.track_id,
                start_s=_num(violation.start_s),
                started_at=self._wall(at, t, violation.start_s),
                acknowledged=False,
                false_alarm=False,
                created_at=now,
                updated_at=now,
            )
            if violation.end_s is not None:
                row.end_s = _num(violation.end_s)
                row.ended_at = self._wall(at, t, violation.end_s)
            self._fill(row, violation, t)
            s.add(row)
            s.flush()
            alert = Alert.from_row(row)
        self._emit(StoreEvent(ALERT_OPENED, alert=alert))
        if not alert.open:
            self._emit(StoreEvent(ALERT_CLOSED, alert=alert))
        return alert

    def update_alert(
        self,
        alert_id: int,
        violation: Violation,
        *,
        t: float | None = None,
        at: datetime | None = None,
        notify: bool = True,
    ) -> Alert:
        """Refresh an open alert from the engine's current copy of its violation.

        `notify=False` for the periodic duration refresh of open alerts (no event); the
        engine's "updated" reminders use the default and reach subscribers. A closed
        violation closes the alert (as `close_alert`).
        """
        if violation.end_s is not None:
            return self.close_alert(alert_id, violation, t=t, at=at)
        with self._write.begin() as s:
            row = self._alert_row(s, alert_id, lock=True)
            self._fill(row, violation, t)
            row.updated_at = self.now()
            alert = Alert.from_row(row)
        if notify:
            self._emit(StoreEvent(ALERT_UPDATED, alert=alert))
        return alert

    def close_alert(
        self,
        alert_id: int,
        violation: Violation | None = None,
        *,
        t: float | None = None,
        at: datetime | None = None,
    ) -> Alert:
        """Close an alert: `end_s` from the violation (else `t`), `ended_at` from `at`/`t` as in open_alert.

        Closing a closed alert updates it without a second "alert.closed" event.
        """
        with self._write.begin() as s:
            row = self._alert_row(s, alert_id, lock=True)
            was_open = row.end_s is None
            if violation is not None and violation.end_s is not None:
                end_s = _num(violation.end_s)
            elif t is not None:
                end_s = float(t)
            elif row.end_s is not None:
                end_s = row.end_s
            else:
                end_s = row.start_s + (row.duration_s or 0.0)
            if t is None:
                t = end_s  # the close is happening now
            if violation is not None:
                self._fill(row, violation, t)
            row.end_s = max(end_s, row.start_s)
            row.ended_at = self._wall(at, t, row.end_s)
            row.duration_s = row.end_s - row.start_s
            row.updated_at = self.now()
            alert = Alert.from_row(row)
        if was_open:
            self._emit(StoreEvent(ALERT_CLOSED, alert=alert))
        return alert

    def close_open_alerts(
        self, site: str | Site, camera: str | SiteCamera, at: datetime | None = None
    ) -> int:
        """Close every open alert of a camera at `at` (default now); returns how many.

        Why: a worker that restarts has a fresh engine that knows nothing of the alerts
        its predecessor left open; it calls this before it starts.
        """
        site_id, camera_id = _site_id(site), _camera_id(camera)
        closed: list[Alert] = []
        at = as_utc(at) or self.now()
        with self._write.begin() as s:
            stmt = select(AlertRow).where(
                AlertRow.site_id == site_id, AlertRow.camera_id == camera_id, AlertRow.end_s.is_(None)
            )
            for row in s.scalars(stmt.with_for_update()):
                row.end_s = row.start_s + (row.duration_s or 0.0)
                row.ended_at = max(at, row.started_at)
                row.updated_at = self.now()
                closed.append(Alert.from_row(row))
        for alert in closed:
            self._emit(StoreEvent(ALERT_CLOSED, alert=alert))
        return len(closed)

    def set_media(self, alert_id: int, *, snapshot: str | None = None, clip: str | None = None) -> Alert:
        """Attach the snapshot and/or clip file of an alert (the clip writer calls this)."""
        with self._write.begin() as s:
            row = self._alert_row(s, alert_id, lock=True)
            if snapshot is not None:
                row.snapshot = str(snapshot)
            if clip is not None:
                row.clip = str(clip)
            row.updated_at = self.now()
            alert = Alert.from_row(row)
        self._emit(StoreEvent(ALERT_MEDIA, alert=alert))
        return alert

    # -- alerts: read and reviewed through the API -----------------------------------------------

    @staticmethod
    def _alert_row(s: Session, alert_id: int, scope: Scope = EVERYTHING, lock: bool = False) -> AlertRow:
        stmt = select(AlertRow).where(AlertRow.id == alert_id)
        if lock:
            stmt = stmt.with_for_update()
        row = s.scalars(stmt).first()
        if row is None or not scope.allows(row.site_id, row.camera_id, row.clause):
            raise NotFound(f"no alert {alert_id}")
        return row

    def get_alert(self, alert_id: int, scope: Scope = EVERYTHING) -> Alert | None:
        with self._read() as s:
            try:
                return Alert.from_row(self._alert_row(s, alert_id, scope))
            except NotFound:
                return None

    def list_alerts(
        self,
        filters: AlertFilter | None = None,
        scope: Scope = EVERYTHING,
        *,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[Alert]:
        """Alerts newest first (by id); `before_id` continues a previous page.

        Keyset pagination on the id: alerts stored while a client pages through do not
        shift later pages, so every alert is seen exactly once.
        """
        stmt = scope.where(select(AlertRow), AlertRow.site_id, AlertRow.camera_id, AlertRow.clause)
        stmt = (filters or AlertFilter()).where(stmt)
        if before_id is not None:
            stmt = stmt.where(AlertRow.id < before_id)
        stmt = stmt.order_by(AlertRow.id.desc()).limit(max(1, int(limit)))
        with self._read() as s:
            return [Alert.from_row(r) for r in s.scalars(stmt)]

    def acknowledge(self, alert_id: int, by: str, comment: str = "", scope: Scope = EVERYTHING) -> Alert:
        """Mark an alert acknowledged. A second acknowledgement is a Conflict: the first one stands."""
        with self._write.begin() as s:
            row = self._alert_row(s, alert_id, scope, lock=True)
            if row.acknowledged:
                raise Conflict(f"alert {alert_id} was already acknowledged by {row.ack_by} at {row.ack_at}")
            row.acknowledged = True
            row.ack_by, row.ack_at, row.ack_comment = by, self.now(), comment
            row.updated_at = self.now()
            alert = Alert.from_row(row)
        self._emit(StoreEvent(ALERT_ACKNOWLEDGED, alert=alert))
        return alert

    def mark_false_alarm(
        self, alert_id: int, by: str, comment: str = "", value: bool = True, scope: Scope = EVERYTHING
    ) -> Alert:
        """Flag (or, with value=False, unflag) an alert as a false alarm; who and why are kept."""
        with self._write.begin() as s:
            row = self._alert_row(s, alert_id, scope, lock=True)
            row.false_alarm = value
            row.false_alarm_by, row.false_alarm_at, row.false_alarm_comment = by, self.now(), comment
            row.updated_at = self.now()
            alert = Alert.from_row(row)
        self._emit(StoreEvent(ALERT_FALSE_ALARM, alert=alert))
        return alert

    # -- approvals -------------------------------------------------------------------------------

    def add_approval(
        self,
        site: str | Site,
        camera: str | SiteCamera,
        post: str,
        start: datetime,
        end: datetime,
        reason: str = "",
        created_by: str = "",
    ) -> Approval:
        """Store approved leave and tell subscribers ("approval.created") so running rules use it now."""
        start_u, end_u = as_utc(start), as_utc(end)
        assert start_u is not None and end_u is not None
        if end_u <= start_u:
            raise ValueError("end must be after start")
        if not post:
            raise ValueError("post must not be empty")
        with self._write.begin() as s:
            self._ensure_camera(s, _site_id(site), _camera_id(camera))
            row = ApprovalRow(
                site_id=_site_id(site),
                camera_id=_camera_id(camera),
                post=post,
                starts_at=start_u,
                ends_at=end_u,
                reason=reason,
                created_by=created_by,
                created_at=self.now(),
                cancelled=False,
            )
            s.add(row)
            s.flush()
            approval = Approval.from_row(row)
        self._emit(StoreEvent(APPROVAL_CREATED, approval=approval))
        return approval

    def approvals(
        self,
        scope: Scope = EVERYTHING,
        *,
        sites: Sequence[str] | None = None,
        cameras: Sequence[str] | None = None,
        active_at: datetime | None = None,
        include_cancelled: bool = False,
    ) -> list[Approval]:
        """Approvals in scope, by start time; `active_at` keeps those covering that instant."""
        a = ApprovalRow
        stmt = scope.where(select(a), a.site_id, a.camera_id)
        if sites:
            stmt = stmt.where(a.site_id.in_(list(sites)))
        if cameras:
            stmt = stmt.where(a.camera_id.in_(list(cameras)))
        if not include_cancelled or active_at is not None:
            stmt = stmt.where(a.cancelled.is_(False))
        if active_at is not None:
            at = as_utc(active_at)
            stmt = stmt.where(a.starts_at <= at, a.ends_at > at)
        with self._read() as s:
            return [Approval.from_row(r) for r in s.scalars(stmt.order_by(a.starts_at, a.id))]

    def get_approval(self, approval_id: int, scope: Scope = EVERYTHING) -> Approval | None:
        with self._read() as s:
            row = s.get(ApprovalRow, approval_id)
            if row is None or not scope.allows(row.site_id, row.camera_id):
                return None
            return Approval.from_row(row)

    def cancel_approval(self, approval_id: int, by: str = "", scope: Scope = EVERYTHING) -> Approval:
        """Cancel approved leave (idempotent); subscribers hear "approval.cancelled" the first time."""
        with self._write.begin() as s:
            row = s.scalars(
                select(ApprovalRow).where(ApprovalRow.id == approval_id).with_for_update()
            ).first()
            if row is None or not scope.allows(row.site_id, row.camera_id):
                raise NotFound(f"no approval {approval_id}")
            changed = not row.cancelled
            if changed:
                row.cancelled, row.cancelled_at, row.cancelled_by = True, self.now(), by
            approval = Approval.from_row(row)
        if changed:
            self._emit(StoreEvent(APPROVAL_CANCELLED, approval=approval))
        return approval

    def is_approved(self, site: str, camera: str, post: str, at: datetime | None = None) -> bool:
        """Whether leave from `post` is approved at `at` (default now): what the d1.floor.14 rule asks."""
        at = as_utc(at) or self.now()
        return any(a.post == post for a in self.approvals(sites=[site], cameras=[camera], active_at=at))

    # -- API keys (hashing lives in service.keys) ------------------------------------------------

    def add_key(
        self,
        key_id: str,
        secret_hash: str,
        role: str,
        sites: Sequence[str],
        cameras: Sequence[str] | None = None,
        name: str = "",
    ) -> ApiKey:
        with self._write.begin() as s:
            row = ApiKeyRow(
                key_id=key_id,
                secret_hash=secret_hash,
                role=role,
                sites=list(sites),
                cameras=list(cameras) if cameras is not None else None,
                name=name,
                created_at=self.now(),
                revoked=False,
            )
            s.add(row)
            s.flush()
            return ApiKey.from_row(row)

    def key(self, key_id: str) -> ApiKey | None:
        with self._read() as s:
            row = s.scalars(select(ApiKeyRow).where(ApiKeyRow.key_id == key_id)).first()
            return ApiKey.from_row(row) if row else None

    def keys(self) -> list[ApiKey]:
        with self._read() as s:
            return [ApiKey.from_row(r) for r in s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))]

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key (it stops working at the next request); False when there is no such key."""
        with self._write.begin() as s:
            row = s.scalars(select(ApiKeyRow).where(ApiKeyRow.key_id == key_id)).first()
            if row is None:
                return False
            if not row.revoked:
                row.revoked, row.revoked_at = True, self.now()
            return True

    # -- reports and metrics ---------------------------------------------------------------------

    def shift_report(
        self,
        start: datetime,
        end: datetime,
        scope: Scope = EVERYTHING,
        *,
        sites: Sequence[str] | None = None,
        cameras: Sequence[str] | None = None,
        include_false_alarms: bool = False,
    ) -> ShiftReport:
        """Counts and summed durations of the alerts that started in [start, end).

        Durations of alerts still open are their duration so far. False alarms are left
        out unless asked for: a report should count what happened.
        """
        a = AlertRow
        start_u, end_u = as_utc(start), as_utc(end)
        assert start_u is not None and end_u is not None
        stmt = select(
            a.site_id,
            a.camera_id,
            a.track_id,
            a.clause,
            func.count(a.id),
            func.coalesce(func.sum(a.duration_s), 0.0),
            func.sum(case((a.end_s.is_(None), 1), else_=0)),
        ).where(a.started_at >= start_u, a.started_at < end_u)
        stmt = scope.where(stmt, a.site_id, a.camera_id, a.clause)
        stmt = AlertFilter(sites=sites, cameras=cameras).where(stmt)
        if not include_false_alarms:
            stmt = stmt.where(a.false_alarm.is_(False))
        stmt = stmt.group_by(a.site_id, a.camera_id, a.track_id, a.clause)
        clauses: dict[str, list[float]] = {}
        tracks: dict[tuple[str, str, int | None], dict[str, Total]] = {}
        with self._read() as s:
            rows = s.execute(stmt).all()
        for site_id, camera_id, track_id, clause, count, duration, open_count in rows:
            count, duration, open_count = int(count), float(duration or 0.0), int(open_count or 0)
            acc = clauses.setdefault(clause, [0, 0.0, 0])
            acc[0] += count
            acc[1] += duration
            acc[2] += open_count
            tracks.setdefault((site_id, camera_id, track_id), {})[clause] = Total(count, duration, open_count)
        clause_totals = {
            c: Total(int(v[0]), float(v[1]), int(v[2]))
            for c, v in sorted(clauses.items(), key=lambda kv: (-kv[1][0], kv[0]))
        }
        total = Total(
            sum(t.count for t in clause_totals.values()),
            sum(t.duration_s for t in clause_totals.values()),
            sum(t.open for t in clause_totals.values()),
        )

        def track_order(key: tuple[str, str, int | None]) -> tuple[str, str, int, int]:
            return (key[0], key[1], key[2] is None, key[2] if key[2] is not None else 0)

        ordered = {k: dict(sorted(tracks[k].items())) for k in sorted(tracks, key=track_order)}
        return ShiftReport(start_u, end_u, total, clause_totals, ordered)

    def alert_counts(self, scope: Scope = EVERYTHING) -> list[tuple[str, str, str, int, int]]:
        """(site, camera, clause, alerts ever, alerts open now) for the metrics endpoint."""
        a = AlertRow
        stmt = select(
            a.site_id,
            a.camera_id,
            a.clause,
            func.count(a.id),
            func.sum(case((a.end_s.is_(None), 1), else_=0)),
        )
        stmt = scope.where(stmt, a.site_id, a.camera_id, a.clause)
        stmt = stmt.group_by(a.site_id, a.camera_id, a.clause).order_by(a.site_id, a.camera_id, a.clause)
        with self._read() as s:
            return [(r[0], r[1], r[2], int(r[3]), int(r[4] or 0)) for r in s.execute(stmt)]


class CameraRecorder:
    """Stores one camera's RuleEngine events as alerts: the glue a camera worker needs.

    The engine numbers its violations (`ViolationEvent.index`); the recorder remembers
    which stored alert each index became. Make a new recorder whenever the worker makes a
    new engine (indices restart), and call `store.close_open_alerts` first after a restart.
    """

    def __init__(
        self, store: AlertStore, site: str | Site, camera: str | SiteCamera, role: str | None = None
    ):
        self.store = store
        self.site = _site_id(site)
        self.camera = _camera_id(camera)
        self.role = role if role is not None or isinstance(camera, str) else camera_role(camera)
        self.alert_ids: dict[int, int] = {}  # engine index -> alert id

    def handle(self, events: Iterable[ViolationEvent], at: datetime | None = None) -> list[Alert]:
        """Store the events of one frame; `at` is the wall time of the frame (default now)."""
        out: list[Alert] = []
        for event in events:
            alert_id = self.alert_ids.get(event.index)
            if alert_id is None:
                alert = self.store.open_alert(
                    event.violation, self.camera, self.site, role=self.role, t=event.t, at=at
                )
                self.alert_ids[event.index] = alert.id
                if event.kind == "updated":  # opened before this recorder existed: still a reminder
                    alert = self.store.update_alert(alert.id, event.violation, t=event.t, at=at)
            elif event.kind == "closed":
                alert = self.store.close_alert(alert_id, event.violation, t=event.t, at=at)
            else:
                alert = self.store.update_alert(alert_id, event.violation, t=event.t, at=at)
            out.append(alert)
        return out

    def refresh(self, violations: Sequence[Violation], t: float, at: datetime | None = None) -> None:
        """Bring the stored duration of open alerts up to stream time `t`, silently.

        `violations` is `RuleEngine.violations` (indexed like the events); call it every
        few seconds so the API shows ongoing alerts growing.
        """
        for index, alert_id in self.alert_ids.items():
            if 0 <= index < len(violations) and violations[index].open:
                self.store.update_alert(alert_id, violations[index], t=t, at=at, notify=False)


def record_fields(record: Any) -> dict[str, Any]:
    """A record as a dict (nested reviews included), e.g. for JSON delivery payloads."""
    out: dict[str, Any] = {}
    for f in fields(record):
        if f.name == "secret_hash":
            continue
        value = getattr(record, f.name)
        out[f.name] = record_fields(value) if hasattr(value, "__dataclass_fields__") else value
    return out


__all__ = [
    "Alert",
    "AlertFilter",
    "AlertStore",
    "ApiKey",
    "Approval",
    "CameraRecorder",
    "CameraReport",
    "CameraStatus",
    "Conflict",
    "EVERYTHING",
    "EVENT_KINDS",
    "NotFound",
    "Review",
    "Scope",
    "ShiftReport",
    "StoreEvent",
    "Total",
    "record_fields",
]
