"""SQLAlchemy tables of the alert service: sites, cameras, alerts, approvals, API keys, camera reports.

These classes are the storage layout only; the rest of the service works with the
plain records of `service.store` (detached from any session, safe to hand to delivery
threads). The schema in a database comes from the Alembic migrations, which must match
these models (a test compares them).

Wall-clock times are stored in UTC through `UTCDateTime`, so SQLite (no time zones) and
PostgreSQL (timestamptz) store and compare them the same way and every value read back
is timezone-aware.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names: migrations (and SQLite's batch mode) refer to constraints by name.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

KEY_ROLES = ("admin", "manager", "trainer", "security")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime | None) -> datetime | None:
    """`value` in UTC; a naive datetime is taken to be UTC already."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime stored as UTC and read back timezone-aware, on every backend.

    SQLite stores naive text, so values are converted to UTC and stripped before they are
    written; text in one format and one zone compares correctly in range filters.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        value = as_utc(value)
        if value is not None and dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return as_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class SiteRow(Base):
    """A shop (one site file). Its id is the site file's `name`."""

    __tablename__ = "sites"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CameraRow(Base):
    """A camera of a site and its live status, which the camera worker keeps current."""

    __tablename__ = "cameras"

    site_id: Mapped[str] = mapped_column(
        String(100), ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str | None] = mapped_column(String(40))  # the role on duty at its post, if any
    connected: Mapped[bool] = mapped_column(Boolean, default=False)
    analysed_fps: Mapped[float | None] = mapped_column(Float)
    last_frame_t: Mapped[float | None] = mapped_column(Float)  # stream time of the last analysed frame
    last_frame_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # wall time of that frame
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertRow(Base):
    """One violation as a numbered alert, with its review state."""

    __tablename__ = "alerts"
    __table_args__ = (
        ForeignKeyConstraint(
            ["site_id", "camera_id"],
            ["cameras.site_id", "cameras.id"],
            name="fk_alerts_camera_cameras",
            ondelete="CASCADE",
        ),
        Index("ix_alerts_site_camera_started", "site_id", "camera_id", "started_at"),
        Index("ix_alerts_clause", "clause"),
        Index("ix_alerts_started_at", "started_at"),
        {"sqlite_autoincrement": True},  # ids are never reused, even after a delete
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(100))
    camera_id: Mapped[str] = mapped_column(String(100))
    clause: Mapped[str] = mapped_column(String(40))
    role: Mapped[str | None] = mapped_column(String(40))
    track_id: Mapped[int | None] = mapped_column(Integer)
    start_s: Mapped[float] = mapped_column(Float)  # stream time (Violation.start_s)
    end_s: Mapped[float | None] = mapped_column(Float)  # None while open
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    snapshot_t: Mapped[float | None] = mapped_column(Float)
    snapshot: Mapped[str | None] = mapped_column(Text)  # file path of the clearest frame
    clip: Mapped[str | None] = mapped_column(Text)  # file path of the clip, once written
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)
    ack_by: Mapped[str | None] = mapped_column(String(200))
    ack_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ack_comment: Mapped[str | None] = mapped_column(Text)
    false_alarm: Mapped[bool] = mapped_column(Boolean, default=False)
    false_alarm_by: Mapped[str | None] = mapped_column(String(200))
    false_alarm_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    false_alarm_comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApprovalRow(Base):
    """Approved leave (d1.floor.14): a post of a camera may stand empty in [starts_at, ends_at)."""

    __tablename__ = "approvals"
    __table_args__ = (
        ForeignKeyConstraint(
            ["site_id", "camera_id"],
            ["cameras.site_id", "cameras.id"],
            name="fk_approvals_camera_cameras",
            ondelete="CASCADE",
        ),
        CheckConstraint("ends_at > starts_at", name="ordered"),
        Index("ix_approvals_site_camera_window", "site_id", "camera_id", "starts_at", "ends_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(100))
    camera_id: Mapped[str] = mapped_column(String(100))
    post: Mapped[str] = mapped_column(String(100))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_by: Mapped[str | None] = mapped_column(String(200))


class ApiKeyRow(Base):
    """An API key: only its salted hash is stored; `key_id` is the public half used for lookup."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("role IN ('admin', 'manager', 'trainer', 'security')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    secret_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    sites: Mapped[list[str]] = mapped_column(JSON)  # site ids, or ["*"] for every site
    cameras: Mapped[list[str] | None] = mapped_column(JSON)  # None: every camera of those sites
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CameraReportRow(Base):
    """What a camera's run reports besides alerts (handovers, absences, salutes, arrivals and
    visits, the guards' shift audit), as the worker last saved it: one row per run, rewritten
    as the run goes on and marked final when it ends, so a crash loses at most one interval."""

    __tablename__ = "camera_reports"
    __table_args__ = (
        ForeignKeyConstraint(
            ["site_id", "camera_id"],
            ["cameras.site_id", "cameras.id"],
            name="fk_camera_reports_camera_cameras",
            ondelete="CASCADE",
        ),
        Index("ix_camera_reports_site_camera_started", "site_id", "camera_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(100))
    camera_id: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)  # wall time the run started
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    stream_t: Mapped[float] = mapped_column(Float, default=0.0)  # stream time it covers, seconds
    final: Mapped[bool] = mapped_column(Boolean, default=False)  # the run ended
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    audit_html: Mapped[str | None] = mapped_column(Text)  # the printable shift audit, guard posts only
