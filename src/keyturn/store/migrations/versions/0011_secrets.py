"""Managed secrets (issue 16): ``secrets`` (spec and schedule state), ``secret_versions``
(sealed passwords with their stage) and ``secret_flows`` (rotation flows and history, one
unfinished per instance account through the unique ``lock_key``).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyturn.store.schema import TaskId, UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secrets",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("vendor", sa.String(16), nullable=False),
        sa.Column("instance_id", sa.String(64), nullable=False),
        sa.Column("account", sa.String(128), nullable=False),
        sa.Column("rotation_seconds", sa.BigInteger(), nullable=True),
        sa.Column("begin_time", sa.String(8), nullable=True),
        sa.Column("window_seconds", sa.BigInteger(), nullable=True),
        sa.Column("overlap_seconds", sa.BigInteger(), nullable=True),
        sa.Column("description", sa.String(2048), nullable=False),
        sa.Column("sub_type", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("rotation_enabled", sa.Boolean(), nullable=False),
        sa.Column("anchor_at", UtcDateTime(), nullable=True),
        sa.Column("next_rotation_at", UtcDateTime(), nullable=True),
        sa.Column("last_rotation_at", UtcDateTime(), nullable=True),
        sa.Column("current_version", sa.String(40), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "name", name="pk_secrets"),
    )
    op.create_index("ix_secrets_next_rotation_at", "secrets", ["next_rotation_at"])
    op.create_table(
        "secret_versions",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version_id", sa.String(40), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("account", sa.String(128), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("password_sealed", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "name", "version_id", name="pk_secret_versions"),
    )
    op.create_table(
        "secret_flows",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("version_id", sa.String(40), nullable=False),
        sa.Column("account", sa.String(128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("task_id", TaskId, nullable=True),
        sa.Column("lock_key", sa.String(200), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("message", sa.String(1024), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("drop_old_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_secret_flows"),
        sa.UniqueConstraint("lock_key", name="uq_secret_flows_lock_key"),
    )
    op.create_index("ix_secret_flows_drop_old_at", "secret_flows", ["drop_old_at"])
    op.create_index(
        "ix_secret_flows_tenant_id_name_created_at",
        "secret_flows",
        ["tenant_id", "name", "created_at"],
    )


def downgrade() -> None:
    op.drop_table("secret_flows")
    op.drop_table("secret_versions")
    op.drop_table("secrets")
