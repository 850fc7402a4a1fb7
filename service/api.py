"""The HTTP API of the alert service: `create_app(store, site)` builds the FastAPI app.

Routes read and change the store only through `AlertStore` methods, always passing the
caller's scope (see `service.auth`), so access rules live in one place. The app migrates
the database when it is created and registers the site file's cameras, so a fresh
install needs nothing but `postwatch serve`.

Other parts plug in through `app.state`: `store` (subscribe for delivery), `metrics`
(workers set their gauges), `sites` (the site files by name). No endpoint returns a
traceback: unexpected errors are logged and answered with a generic 500.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import logging
import re
from collections.abc import Sequence
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope

from rules.catalogue import ROLES, Clause, load_catalogue
from service.auth import Permission, Principal, require
from service.metrics import CONTENT_TYPE, Metrics, Sample, render_family
from service.models import as_utc
from service.schemas import (
    CLAUSE_ID,
    AckIn,
    AlertDetailOut,
    AlertOut,
    AlertPage,
    ApprovalIn,
    ApprovalOut,
    CameraOut,
    CameraReportOut,
    ClauseText,
    ClauseTotalOut,
    ErrorOut,
    FalseAlarmIn,
    HealthOut,
    ShiftReportOut,
    TotalOut,
    TrackTotalOut,
)
from service.store import AlertFilter, AlertStore, CameraReport, Conflict, NotFound, ShiftReport

if TYPE_CHECKING:
    from calibration.site import Site

log = logging.getLogger(__name__)

_CLAUSE = re.compile(CLAUSE_ID)
E401 = {401: {"model": ErrorOut, "description": "No API key, or an unknown or revoked one."}}
E403 = {403: {"model": ErrorOut, "description": "The key's role or scope does not allow this."}}
E404 = {404: {"model": ErrorOut, "description": "No such record within the key's scope."}}
E400 = {400: {"model": ErrorOut, "description": "A malformed or contradictory request; the detail says why."}}
AUTH = {**E401, **E403}

# The caller, once their role is known to grant the permission (401/403 otherwise).
AlertReader = Annotated[Principal, Depends(require(Permission.ALERTS_READ))]
AlertReviewer = Annotated[Principal, Depends(require(Permission.ALERTS_REVIEW))]
ClipReader = Annotated[Principal, Depends(require(Permission.CLIPS_READ))]
ApprovalReader = Annotated[Principal, Depends(require(Permission.APPROVALS_READ))]
ApprovalWriter = Annotated[Principal, Depends(require(Permission.APPROVALS_WRITE))]
ReportReader = Annotated[Principal, Depends(require(Permission.REPORTS_READ))]
CameraReader = Annotated[Principal, Depends(require(Permission.CAMERAS_READ))]
ClauseReader = Annotated[Principal, Depends(require(Permission.CLAUSES_READ))]
MetricsReader = Annotated[Principal, Depends(require(Permission.METRICS_READ))]

TAGS = [
    {"name": "alerts", "description": "Stored alerts, their review (acknowledge, false alarm) and media."},
    {"name": "approvals", "description": "Approved leave from a post (clause d1.floor.14)."},
    {"name": "site", "description": "The clause catalogue and the cameras' live status."},
    {"name": "reports", "description": "Shift reports: counts and durations per clause and per person."},
    {"name": "ops", "description": "Health and Prometheus metrics."},
]


def _version() -> str:
    try:
        return metadata.version("postwatch")
    except metadata.PackageNotFoundError:
        return "0"


class CatchAll:
    """Turns any unhandled exception into a logged error and a generic 500 JSON body.

    A plain ASGI middleware (not BaseHTTPMiddleware) so streaming responses such as SSE
    pass through untouched; once a response has started, the error can only be logged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                return
            response = JSONResponse({"detail": "internal server error"}, status_code=500)
            await response(scope, receive, send)


# -- cursors -----------------------------------------------------------------------------------


def encode_cursor(before_id: int) -> str:
    """An opaque page cursor: clients pass it back, they do not read it."""
    raw = json.dumps({"b": before_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)["b"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "invalid cursor: pass next_cursor unchanged"
        ) from None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "invalid cursor: pass next_cursor unchanged")
    return value


# -- helpers -----------------------------------------------------------------------------------


def _window(since: datetime | None, until: datetime | None) -> tuple[datetime | None, datetime | None]:
    since, until = as_utc(since), as_utc(until)
    if since is not None and until is not None and until <= since:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "'to' must be after 'from'")
    return since, until


def _check_clauses(clauses: Sequence[str] | None) -> None:
    for clause in clauses or ():
        if not _CLAUSE.match(clause):
            raise HTTPException(
                422,
                f"clause {clause!r} is not a clause id (like d5.stance.01)",
            )


def _base(request: Request) -> str:
    """Where the app is mounted: media URLs are paths below it (no host, so proxies work)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _clause_text(clause_id: str) -> ClauseText | None:
    catalogue = load_catalogue()
    if clause_id not in catalogue:
        return None
    c = catalogue.get(clause_id)
    return ClauseText(id=c.id, section=c.section, text_zh=list(c.text_zh), gloss=c.gloss, kind=c.kind)


def _gloss(clause_id: str) -> str | None:
    catalogue = load_catalogue()
    return catalogue.get(clause_id).gloss if clause_id in catalogue else None


def _report_out(report: ShiftReport) -> ShiftReportOut:
    tracks = []
    for key, per_clause in report.tracks.items():
        total = report.track_total(key)
        tracks.append(
            TrackTotalOut(
                site=key[0],
                camera=key[1],
                track_id=key[2],
                count=total.count,
                duration_s=round(total.duration_s, 3),
                open=total.open,
                clauses=[ClauseTotalOut.of_clause(c, _gloss(c), t) for c, t in per_clause.items()],
            )
        )
    return ShiftReportOut(
        **{"from": report.start},
        to=report.end,
        total=TotalOut.of(report.total),
        clauses=[ClauseTotalOut.of_clause(c, _gloss(c), t) for c, t in report.clauses.items()],
        tracks=tracks,
    )


def _report_csv(report: ShiftReport) -> str:
    """One table: `by` says whether a row totals a clause, a person, or a person's clause."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["by", "site", "camera", "track_id", "clause", "count", "duration_s", "open"])
    for clause, t in report.clauses.items():
        writer.writerow(["clause", "", "", "", clause, t.count, f"{t.duration_s:.3f}", t.open])
    for key, per_clause in report.tracks.items():
        site, camera, track = key[0], key[1], "" if key[2] is None else key[2]
        t = report.track_total(key)
        writer.writerow(["track", site, camera, track, "", t.count, f"{t.duration_s:.3f}", t.open])
        for clause, ct in per_clause.items():
            writer.writerow(
                ["track_clause", site, camera, track, clause, ct.count, f"{ct.duration_s:.3f}", ct.open]
            )
    return out.getvalue()


def _media(store: AlertStore, principal: Principal, alert_id: int, which: str, root: Path | None) -> Path:
    alert = store.get_alert(alert_id, principal.scope)
    if alert is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id}")
    stored = alert.snapshot if which == "snapshot" else alert.clip
    if not stored:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"alert {alert_id} has no {which} yet")
    path = Path(stored)
    if not path.is_absolute() and root is not None:
        path = root / path
    if not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the {which} file of alert {alert_id} is missing")
    return path


# -- the app -----------------------------------------------------------------------------------


def create_app(
    store: AlertStore,
    site: Site | Sequence[Site] | None = None,
    *,
    metrics: Metrics | None = None,
    media_root: str | Path | None = None,
    migrate: bool = True,
    docs: bool = True,
) -> FastAPI:
    """The API over `store`. `site`: the site file(s) being monitored (their cameras are
    registered, approvals are checked against their posts). `metrics`: the registry the
    camera workers write to (a new one by default). `media_root`: where relative snapshot
    and clip paths live. `migrate`: bring the schema up to date now (the default). `docs`:
    serve /docs, /redoc and /openapi.json (public: the schema holds no data); False hides them."""
    if migrate:
        store.upgrade()
    sites: dict[str, Site] = {}
    for s in [site] if site is not None and not isinstance(site, Sequence) else list(site or ()):
        store.sync_site(s)
        sites[s.name] = s

    app = FastAPI(
        title="postwatch alert service",
        version=_version(),
        description=(
            "Alerts raised by the conduct rules, their review, approved leave, shift reports and "
            "camera status. Every route except /healthz needs an API key "
            "(`Authorization: Bearer <key>` or `X-API-Key`); what a key may see depends on its "
            "role and its sites."
        ),
        openapi_tags=TAGS,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.store = store
    app.state.metrics = metrics if metrics is not None else Metrics()
    app.state.sites = sites
    app.state.media_root = Path(media_root) if media_root is not None else None
    app.add_middleware(CatchAll)

    # -- ops -------------------------------------------------------------------------------------

    @app.get(
        "/healthz",
        tags=["ops"],
        summary="Liveness and database check (no key needed)",
        response_model=HealthOut,
        responses={503: {"model": HealthOut, "description": "The database does not answer."}},
    )
    def healthz() -> Any:
        ok = store.ping()
        body = HealthOut(status="ok" if ok else "degraded", database="ok" if ok else "unreachable")
        return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

    @app.get(
        "/metrics",
        tags=["ops"],
        summary="Prometheus metrics of the key's sites",
        response_class=PlainTextResponse,
        responses={**AUTH, 200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
    )
    def get_metrics(principal: MetricsReader) -> Response:
        scope = principal.scope

        def include(labels: dict[str, str]) -> bool:
            if "site" not in labels:
                return scope.sites is None  # process-wide series: only for keys that see every site
            return scope.allows(labels["site"], labels.get("camera"))

        counts = store.alert_counts(scope)
        total = [Sample({"site": s, "camera": c, "clause": k}, n) for s, c, k, n, _ in counts]
        opened = [Sample({"site": s, "camera": c, "clause": k}, o) for s, c, k, _, o in counts]
        extra = [
            render_family("postwatch_alerts_total", "Alerts raised, per clause.", "counter", total),
            render_family("postwatch_alerts_open", "Alerts still open, per clause.", "gauge", opened),
        ]
        text = app.state.metrics.render(include, extra)
        return Response(text, media_type=CONTENT_TYPE)

    # -- alerts ----------------------------------------------------------------------------------

    @app.get(
        "/alerts",
        tags=["alerts"],
        summary="List alerts, newest first, filtered, one page at a time",
        response_model=AlertPage,
        responses={**AUTH, **E400},
    )
    def list_alerts(
        request: Request,
        principal: AlertReader,
        site: Annotated[list[str] | None, Query(description="Site id(s).")] = None,
        camera: Annotated[list[str] | None, Query(description="Camera id(s).")] = None,
        clause: Annotated[list[str] | None, Query(description="Clause id(s), e.g. d5.stance.01.")] = None,
        role: Annotated[list[Literal[ROLES]] | None, Query(description="Role(s) on duty.")] = None,  # type: ignore[valid-type]
        track: Annotated[int | None, Query(ge=0, description="Tracked person id.")] = None,
        since: Annotated[
            datetime | None, Query(alias="from", description="Started at or after (ISO 8601).")
        ] = None,
        until: Annotated[datetime | None, Query(alias="to", description="Started before (ISO 8601).")] = None,
        state: Annotated[Literal["open", "closed"] | None, Query(description="Ongoing or ended.")] = None,
        acknowledged: Annotated[bool | None, Query()] = None,
        false_alarm: Annotated[bool | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
        cursor: Annotated[
            str | None, Query(max_length=200, description="next_cursor of the previous page.")
        ] = None,
    ) -> AlertPage:
        _check_clauses(clause)
        since, until = _window(since, until)
        before = decode_cursor(cursor) if cursor else None
        filters = AlertFilter(
            sites=site,
            cameras=camera,
            clauses=clause,
            roles=role,
            track_id=track,
            since=since,
            until=until,
            open=None if state is None else state == "open",
            acknowledged=acknowledged,
            false_alarm=false_alarm,
        )
        found = store.list_alerts(filters, principal.scope, before_id=before, limit=limit + 1)
        page, more = found[:limit], len(found) > limit
        base = _base(request)
        return AlertPage(
            items=[AlertOut.of(a, base) for a in page],
            next_cursor=encode_cursor(page[-1].id) if more and page else None,
        )

    @app.get(
        "/alerts/{alert_id}",
        tags=["alerts"],
        summary="One alert with the text of its clause",
        response_model=AlertDetailOut,
        responses={**AUTH, **E404},
    )
    def get_alert(
        request: Request,
        principal: AlertReader,
        alert_id: Annotated[int, PathParam(ge=1)],
    ) -> AlertDetailOut:
        alert = store.get_alert(alert_id, principal.scope)
        if alert is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id}")
        return AlertDetailOut.of(alert, _base(request), clause_text=_clause_text(alert.clause))

    @app.get(
        "/alerts/{alert_id}/snapshot",
        tags=["alerts"],
        summary="The alert's snapshot image",
        response_class=FileResponse,
        responses={**AUTH, **E404, 200: {"content": {"image/jpeg": {}}}},
    )
    def alert_snapshot(principal: ClipReader, alert_id: Annotated[int, PathParam(ge=1)]) -> FileResponse:
        return FileResponse(_media(store, principal, alert_id, "snapshot", app.state.media_root))

    @app.get(
        "/alerts/{alert_id}/clip",
        tags=["alerts"],
        summary="The alert's video clip",
        response_class=FileResponse,
        responses={**AUTH, **E404, 200: {"content": {"video/mp4": {}}}},
    )
    def alert_clip(principal: ClipReader, alert_id: Annotated[int, PathParam(ge=1)]) -> FileResponse:
        return FileResponse(_media(store, principal, alert_id, "clip", app.state.media_root))

    @app.post(
        "/alerts/{alert_id}/ack",
        tags=["alerts"],
        summary="Acknowledge an alert, with a comment",
        response_model=AlertOut,
        responses={**AUTH, **E404, 409: {"model": ErrorOut, "description": "Already acknowledged."}},
    )
    def ack_alert(
        request: Request,
        principal: AlertReviewer,
        alert_id: Annotated[int, PathParam(ge=1)],
        body: AckIn | None = None,
    ) -> AlertOut:
        body = body or AckIn()
        try:
            alert = store.acknowledge(alert_id, principal.name, body.comment, principal.scope)
        except NotFound:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id}") from None
        except Conflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        return AlertOut.of(alert, _base(request))

    @app.post(
        "/alerts/{alert_id}/false-alarm",
        tags=["alerts"],
        summary="Mark an alert as a false alarm (or take the mark back)",
        response_model=AlertOut,
        responses={**AUTH, **E404},
    )
    def false_alarm_alert(
        request: Request,
        principal: AlertReviewer,
        alert_id: Annotated[int, PathParam(ge=1)],
        body: FalseAlarmIn | None = None,
    ) -> AlertOut:
        body = body or FalseAlarmIn()
        try:
            alert = store.mark_false_alarm(
                alert_id, principal.name, body.comment, body.false_alarm, principal.scope
            )
        except NotFound:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id}") from None
        return AlertOut.of(alert, _base(request))

    # -- approvals -------------------------------------------------------------------------------

    def _approval_site(principal: Principal, requested: str | None) -> str:
        if requested:
            return requested
        if not principal.all_sites and len(principal.sites) == 1:
            return principal.sites[0]
        candidates = [s for s in (sites or dict.fromkeys(store.sites())) if principal.scope.allows(s)]
        if len(candidates) == 1:
            return candidates[0]
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "site is required: this key covers several sites")

    @app.post(
        "/approvals",
        tags=["approvals"],
        summary="Approve leave from a post (the rules use it at once)",
        status_code=status.HTTP_201_CREATED,
        response_model=ApprovalOut,
        responses={**AUTH, **E400},
    )
    def create_approval(principal: ApprovalWriter, body: ApprovalIn) -> ApprovalOut:
        site_id = _approval_site(principal, body.site)
        if not principal.scope.allows(site_id, body.camera):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this key does not cover camera {body.camera!r}")
        config = sites.get(site_id)
        if config is not None:
            cam = next((c for c in config.cameras if c.id == body.camera), None)
            if cam is None:
                raise HTTPException(
                    status.HTTP_400_BAD_REQUEST, f"site {site_id!r} has no camera {body.camera!r}"
                )
            if body.post not in [z.name for z in cam.zones]:
                known = ", ".join(z.name for z in cam.zones_of("post")) or "none"
                raise HTTPException(
                    status.HTTP_400_BAD_REQUEST,
                    f"camera {body.camera!r} has no post {body.post!r} (posts: {known})",
                )
        elif store.camera(site_id, body.camera) is None:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, f"site {site_id!r} has no camera {body.camera!r}"
            )
        approval = store.add_approval(
            site_id, body.camera, body.post, body.start, body.end, body.reason, created_by=principal.name
        )
        return ApprovalOut.of(approval)

    @app.get(
        "/approvals",
        tags=["approvals"],
        summary="List approved leave",
        response_model=list[ApprovalOut],
        responses=AUTH,
    )
    def list_approvals(
        principal: ApprovalReader,
        site: Annotated[list[str] | None, Query()] = None,
        camera: Annotated[list[str] | None, Query()] = None,
        active_at: Annotated[datetime | None, Query(description="Only leave covering this instant.")] = None,
        include_cancelled: Annotated[bool, Query()] = False,
    ) -> list[ApprovalOut]:
        found = store.approvals(
            principal.scope,
            sites=site,
            cameras=camera,
            active_at=active_at,
            include_cancelled=include_cancelled,
        )
        return [ApprovalOut.of(a) for a in found]

    @app.get(
        "/approvals/{approval_id}",
        tags=["approvals"],
        summary="One approval",
        response_model=ApprovalOut,
        responses={**AUTH, **E404},
    )
    def get_approval(
        principal: ApprovalReader,
        approval_id: Annotated[int, PathParam(ge=1)],
    ) -> ApprovalOut:
        approval = store.get_approval(approval_id, principal.scope)
        if approval is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no approval {approval_id}")
        return ApprovalOut.of(approval)

    @app.delete(
        "/approvals/{approval_id}",
        tags=["approvals"],
        summary="Cancel approved leave",
        response_model=ApprovalOut,
        responses={**AUTH, **E404},
    )
    def cancel_approval(
        principal: ApprovalWriter,
        approval_id: Annotated[int, PathParam(ge=1)],
    ) -> ApprovalOut:
        try:
            approval = store.cancel_approval(approval_id, principal.name, principal.scope)
        except NotFound:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no approval {approval_id}") from None
        return ApprovalOut.of(approval)

    # -- site --------------------------------------------------------------------------------

    @app.get(
        "/clauses",
        tags=["site"],
        summary="The clause catalogue: ids, Chinese text, gloss, roles, defaults",
        response_model=list[Clause],
        responses=AUTH,
    )
    def list_clauses(
        _principal: ClauseReader,
        role: Annotated[Literal[ROLES] | None, Query(description="Only clauses for this role.")] = None,  # type: ignore[valid-type]
    ) -> list[Clause]:
        catalogue = load_catalogue()
        return list(catalogue.clauses) if role is None else catalogue.for_role(role)

    @app.get(
        "/cameras",
        tags=["site"],
        summary="Cameras and their live status",
        response_model=list[CameraOut],
        responses=AUTH,
    )
    def list_cameras(principal: CameraReader) -> list[CameraOut]:
        return [CameraOut.of(c) for c in store.cameras(principal.scope)]

    # -- reports ---------------------------------------------------------------------------------

    @app.get(
        "/reports/shift",
        tags=["reports"],
        summary="Shift report: counts and durations per clause and per person (JSON or CSV)",
        response_model=ShiftReportOut,
        responses={**AUTH, **E400, 200: {"content": {"text/csv": {}}}},
    )
    def shift_report(
        principal: ReportReader,
        since: Annotated[datetime, Query(alias="from", description="Shift start (ISO 8601).")],
        until: Annotated[datetime, Query(alias="to", description="Shift end (ISO 8601).")],
        site: Annotated[list[str] | None, Query()] = None,
        camera: Annotated[list[str] | None, Query()] = None,
        include_false_alarms: Annotated[bool, Query()] = False,
        format: Annotated[Literal["json", "csv"], Query(description="json (default) or csv.")] = "json",
    ) -> Any:
        start, end = _window(since, until)
        assert start is not None and end is not None
        report = store.shift_report(
            start, end, principal.scope, sites=site, cameras=camera, include_false_alarms=include_false_alarms
        )
        if format == "csv":
            name = f"shift-{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}.csv"
            return Response(
                _report_csv(report),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )
        return _report_out(report)

    @app.get(
        "/reports/cameras",
        tags=["reports"],
        summary="Camera runs' reports: handovers, absences, salutes, arrivals, guards' shift audit",
        response_model=list[CameraReportOut],
        responses={**AUTH, **E400},
    )
    def list_camera_reports(
        principal: ReportReader,
        since: Annotated[
            datetime | None, Query(alias="from", description="Runs started at or after.")
        ] = None,
        until: Annotated[datetime | None, Query(alias="to", description="Runs before.")] = None,
        site: Annotated[list[str] | None, Query()] = None,
        camera: Annotated[list[str] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[CameraReportOut]:
        start, end = _window(since, until)
        found = store.camera_reports(
            principal.scope, sites=site, cameras=camera, since=start, until=end, limit=limit
        )
        return [CameraReportOut.of(r) for r in found]

    def _camera_report(principal: Principal, report_id: int) -> CameraReport:
        found = store.camera_report(report_id, principal.scope)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no camera report {report_id}")
        return found

    @app.get(
        "/reports/cameras/{report_id}",
        tags=["reports"],
        summary="One camera run's report, with its content",
        response_model=CameraReportOut,
        responses={**AUTH, **E404},
    )
    def get_camera_report(
        principal: ReportReader, report_id: Annotated[int, PathParam(ge=1)]
    ) -> CameraReportOut:
        return CameraReportOut.of(_camera_report(principal, report_id), full=True)

    @app.get(
        "/reports/cameras/{report_id}/audit",
        tags=["reports"],
        summary="The guards' shift audit of a camera run, as a printable page",
        response_class=HTMLResponse,
        responses={**AUTH, **E404, 200: {"content": {"text/html": {}}}},
    )
    def camera_report_audit(principal: ReportReader, report_id: Annotated[int, PathParam(ge=1)]) -> Any:
        found = _camera_report(principal, report_id)
        if found.audit_html is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"camera report {report_id} has no shift audit (no guard posts)"
            )
        return HTMLResponse(found.audit_html)

    return app
