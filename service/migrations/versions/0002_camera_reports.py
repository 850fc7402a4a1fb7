"""Camera reports: what a camera's run reports besides alerts, saved as it goes.

Revision ID: 0002_camera_reports
Revises: 0001_initial
Create Date: 2026-11-28 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_camera_reports"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "camera_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site_id", sa.String(100), nullable=False),
        sa.Column("camera_id", sa.String(100), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("stream_t", sa.Float(), nullable=False),
        sa.Column("final", sa.Boolean(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("audit_html", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["site_id", "camera_id"],
            ["cameras.site_id", "cameras.id"],
            name="fk_camera_reports_camera_cameras",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_camera_reports"),
    )
    op.create_index(
        "ix_camera_reports_site_camera_started", "camera_reports", ["site_id", "camera_id", "started_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_camera_reports_site_camera_started", table_name="camera_reports")
    op.drop_table("camera_reports")
