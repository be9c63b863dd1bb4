"""Fleet rotation jobs (issue 17): ``fleet_jobs`` (selector, options, state, the driving node's
lease) and ``fleet_targets`` (one account of one instance each: wave, state, reason, the reset
task's id, the attempt's sealed password).

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyturn.store.schema import TaskId, UtcDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleet_jobs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("selector", sa.Text(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("waves", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("fence", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("lease_until", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_fleet_jobs"),
    )
    op.create_index("ix_fleet_jobs_state_lease_until", "fleet_jobs", ["state", "lease_until"])
    op.create_index("ix_fleet_jobs_tenant_id_created_at", "fleet_jobs", ["tenant_id", "created_at"])
    op.create_table(
        "fleet_targets",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("instance_id", sa.String(128), nullable=False),
        sa.Column("product", sa.String(64), nullable=False),
        sa.Column("account", sa.String(200), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("task_id", TaskId, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("password_sealed", sa.Text(), nullable=True),
        sa.Column("delivered_to", sa.String(400), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["fleet_jobs.id"],
            name="fk_fleet_targets_job_id_fleet_jobs",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("job_id", "seq", name="pk_fleet_targets"),
    )
    op.create_index(
        "ix_fleet_targets_job_id_state_wave_seq",
        "fleet_targets",
        ["job_id", "state", "wave", "seq"],
    )


def downgrade() -> None:
    op.drop_index("ix_fleet_targets_job_id_state_wave_seq", table_name="fleet_targets")
    op.drop_table("fleet_targets")
    op.drop_index("ix_fleet_jobs_tenant_id_created_at", table_name="fleet_jobs")
    op.drop_index("ix_fleet_jobs_state_lease_until", table_name="fleet_jobs")
    op.drop_table("fleet_jobs")
