"""Initial schema: sites, cameras, alerts, approvals, api_keys.

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Wall-clock times: the models' UTCDateTime stores UTC in a timezone-aware column.
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sites"),
    )
    op.create_table(
        "cameras",
        sa.Column("site_id", sa.String(100), nullable=False),
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(40), nullable=True),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("analysed_fps", sa.Float(), nullable=True),
        sa.Column("last_frame_t", sa.Float(), nullable=True),
        sa.Column("last_frame_at", TS, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name="fk_cameras_site_id_sites", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("site_id", "id", name="pk_cameras"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site_id", sa.String(100), nullable=False),
        sa.Column("camera_id", sa.String(100), nullable=False),
        sa.Column("clause", sa.String(40), nullable=False),
        sa.Column("role", sa.String(40), nullable=True),
        sa.Column("track_id", sa.Integer(), nullable=True),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("snapshot_t", sa.Float(), nullable=True),
        sa.Column("snapshot", sa.Text(), nullable=True),
        sa.Column("clip", sa.Text(), nullable=True),
        sa.Column("acknowledged", sa.Boolean(), nullable=False),
        sa.Column("ack_by", sa.String(200), nullable=True),
        sa.Column("ack_at", TS, nullable=True),
        sa.Column("ack_comment", sa.Text(), nullable=True),
        sa.Column("false_alarm", sa.Boolean(), nullable=False),
        sa.Column("false_alarm_by", sa.String(200), nullable=True),
        sa.Column("false_alarm_at", TS, nullable=True),
        sa.Column("false_alarm_comment", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id", "camera_id"],
            ["cameras.site_id", "cameras.id"],
            name="fk_alerts_camera_cameras",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_alerts_site_camera_started", "alerts", ["site_id", "camera_id", "started_at"])
    op.create_index("ix_alerts_clause", "alerts", ["clause"])
    op.create_index("ix_alerts_started_at", "alerts", ["started_at"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site_id", sa.String(100), nullable=False),
        sa.Column("camera_id", sa.String(100), nullable=False),
        sa.Column("post", sa.String(100), nullable=False),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        sa.Column("cancelled_at", TS, nullable=True),
        sa.Column("cancelled_by", sa.String(200), nullable=True),
        sa.CheckConstraint("ends_at > starts_at", name="ck_approvals_ordered"),
        sa.ForeignKeyConstraint(
            ["site_id", "camera_id"],
            ["cameras.site_id", "cameras.id"],
            name="fk_approvals_camera_cameras",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_approvals"),
    )
    op.create_index(
        "ix_approvals_site_camera_window", "approvals", ["site_id", "camera_id", "starts_at", "ends_at"]
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_hash", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("sites", sa.JSON(), nullable=False),
        sa.Column("cameras", sa.JSON(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.CheckConstraint("role IN ('admin', 'manager', 'trainer', 'security')", name="ck_api_keys_role"),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_id", name="uq_api_keys_key_id"),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_index("ix_approvals_site_camera_window", table_name="approvals")
    op.drop_table("approvals")
    op.drop_index("ix_alerts_started_at", table_name="alerts")
    op.drop_index("ix_alerts_clause", table_name="alerts")
    op.drop_index("ix_alerts_site_camera_started", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("cameras")
    op.drop_table("sites")
