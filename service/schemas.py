"""Request and response bodies of the HTTP API (pydantic), which also make its OpenAPI document.

Kept apart from the store's records on purpose: the records are what workers and
delivery handle; these are the public contract, with URLs instead of file paths and the
clause text next to the clause id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.models import as_utc
from service.store import Alert, Approval, CameraReport, CameraStatus, Review, Total

CLAUSE_ID = r"^d\d+\.[a-z_]+\.\d{2}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(BaseModel):
    """Every error: a human-readable reason (validation errors list each problem instead)."""

    detail: Any = Field(description="Why the request failed.")


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unreachable"]


class ReviewOut(BaseModel):
    by: str
    at: datetime
    comment: str = ""

    @classmethod
    def of(cls, review: Review | None) -> ReviewOut | None:
        return None if review is None else cls(by=review.by, at=review.at, comment=review.comment)


class AlertOut(BaseModel):
    """An alert as listed: what, where, who (track), when, how long, and its review state."""

    id: int = Field(description="The alert number.")
    site: str
    camera: str
    clause: str = Field(description="Clause id, e.g. d5.stance.01 (see GET /clauses).")
    role: str | None = Field(description="The role on duty where it happened.")
    track_id: int | None = Field(description="Tracked person (per camera); null for zone-level clauses.")
    open: bool = Field(description="True while the behaviour is still going on.")
    start_s: float = Field(description="Stream time the behaviour began, in seconds.")
    end_s: float | None
    started_at: datetime = Field(description="Wall-clock start (UTC).")
    ended_at: datetime | None
    duration_s: float = Field(description="Duration so far (open) or in total (closed), in seconds.")
    confidence: float
    message: str = Field(description="What was seen, quoting the clause.")
    details: dict[str, Any]
    snapshot_url: str | None = Field(description="The clearest frame, when one was written.")
    clip_url: str | None = Field(description="The video clip, once written.")
    acknowledged: bool
    ack: ReviewOut | None
    false_alarm: bool
    false_alarm_review: ReviewOut | None

    @classmethod
    def of(cls, alert: Alert, base: str, **extra: Any) -> Any:
        return cls(
            id=alert.id,
            site=alert.site,
            camera=alert.camera,
            clause=alert.clause,
            role=alert.role,
            track_id=alert.track_id,
            open=alert.open,
            start_s=alert.start_s,
            end_s=alert.end_s,
            started_at=alert.started_at,
            ended_at=alert.ended_at,
            duration_s=round(alert.duration_s, 3),
            confidence=alert.confidence,
            message=alert.message,
            details=alert.details,
            snapshot_url=f"{base}/alerts/{alert.id}/snapshot" if alert.snapshot else None,
            clip_url=f"{base}/alerts/{alert.id}/clip" if alert.clip else None,
            acknowledged=alert.acknowledged,
            ack=ReviewOut.of(alert.ack),
            false_alarm=alert.false_alarm,
            false_alarm_review=ReviewOut.of(alert.false_alarm_review),
            **extra,
        )


class ClauseText(BaseModel):
    """The written rule an alert is about, as a manager shows it to the employee."""

    id: str
    section: str
    text_zh: list[str] = Field(description="Excerpts of the Chinese conduct code, verbatim.")
    gloss: str = Field(description="English gloss.")
    kind: str


class AlertDetailOut(AlertOut):
    clause_text: ClauseText | None = Field(description="Null only for a clause no longer in the catalogue.")


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class AckIn(Strict):
    comment: str = Field("", max_length=2000, description="What was done about it.")


class FalseAlarmIn(Strict):
    comment: str = Field("", max_length=2000, description="Why it is not a real violation.")
    false_alarm: bool = Field(True, description="False takes the flag back.")


class ApprovalIn(Strict):
    """Approved leave: the post may stand empty from `start` to `end` (ISO 8601; naive = UTC)."""

    site: str | None = Field(
        None, min_length=1, max_length=100, description="Needed when the key covers several sites."
    )
    camera: str = Field(min_length=1, max_length=100)
    post: str = Field(min_length=1, max_length=100, description="The post zone's name in the site file.")
    start: datetime
    end: datetime
    reason: str = Field("", max_length=500)

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return as_utc(value)  # type: ignore[return-value]

    @model_validator(mode="after")
    def _ordered(self) -> ApprovalIn:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class ApprovalOut(BaseModel):
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

    @classmethod
    def of(cls, a: Approval) -> ApprovalOut:
        return cls(
            id=a.id,
            site=a.site,
            camera=a.camera,
            post=a.post,
            start=a.start,
            end=a.end,
            reason=a.reason,
            created_by=a.created_by,
            created_at=a.created_at,
            cancelled=a.cancelled,
            cancelled_at=a.cancelled_at,
            cancelled_by=a.cancelled_by,
        )


class CameraOut(BaseModel):
    """A camera and its live status as its worker last reported it."""

    site: str
    id: str
    name: str
    role: str | None
    connected: bool
    analysed_fps: float | None
    last_frame_t: float | None = Field(description="Stream time of the last analysed frame, seconds.")
    last_frame_at: datetime | None = Field(description="Wall time of the last analysed frame.")
    last_error: str | None
    updated_at: datetime | None

    @classmethod
    def of(cls, c: CameraStatus) -> CameraOut:
        return cls(
            site=c.site,
            id=c.id,
            name=c.name,
            role=c.role,
            connected=c.connected,
            analysed_fps=c.analysed_fps,
            last_frame_t=c.last_frame_t,
            last_frame_at=c.last_frame_at,
            last_error=c.last_error,
            updated_at=c.updated_at,
        )


class CameraReportOut(BaseModel):
    """One run of a camera and what it reported besides alerts (saved as the run goes)."""

    id: int
    site: str
    camera: str
    started_at: datetime = Field(description="Wall time the camera's run started.")
    updated_at: datetime = Field(description="Wall time the report was last saved.")
    stream_t: float = Field(description="Stream time the report covers, seconds.")
    final: bool = Field(description="The run ended; the report no longer changes.")
    has_audit: bool = Field(description="A printable shift audit exists (cameras with guard posts).")
    report: dict[str, Any] | None = Field(
        default=None,
        description=(
            "handovers, absences (approved or not), notes, gestures (salutes...), arrivals and "
            "visits, and the guards' shift audit, as the camera has them; only on a single report."
        ),
    )

    @classmethod
    def of(cls, r: CameraReport, full: bool = False) -> CameraReportOut:
        return cls(
            id=r.id,
            site=r.site,
            camera=r.camera,
            started_at=r.started_at,
            updated_at=r.updated_at,
            stream_t=r.stream_t,
            final=r.final,
            has_audit=r.has_audit,
            report=r.payload if full else None,
        )


class TotalOut(BaseModel):
    count: int
    duration_s: float
    open: int = Field(description="How many of them are still open.")

    @classmethod
    def of(cls, t: Total) -> TotalOut:
        return cls(count=t.count, duration_s=round(t.duration_s, 3), open=t.open)


class ClauseTotalOut(TotalOut):
    clause: str
    gloss: str | None

    @classmethod
    def of_clause(cls, clause: str, gloss: str | None, t: Total) -> ClauseTotalOut:
        return cls(clause=clause, gloss=gloss, count=t.count, duration_s=round(t.duration_s, 3), open=t.open)


class TrackTotalOut(TotalOut):
    site: str
    camera: str
    track_id: int | None = Field(description="Null: zone-level alerts (an empty post).")
    clauses: list[ClauseTotalOut]


class ShiftReportOut(BaseModel):
    """Alerts that started in [from, to), false alarms left out unless asked for."""

    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime
    total: TotalOut
    clauses: list[ClauseTotalOut]
    tracks: list[TrackTotalOut]
