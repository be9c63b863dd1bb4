"""State shared by every node on the store (issue 13): rate-limit windows and the lock after
wrong old passwords.

- ``rate_windows``: calls accepted per (tenant, action) and wall-clock second, counted by one
  atomic upsert, so all nodes together accept at most the limit.
- ``change_locks``: consecutive wrong old passwords per account (as a SHA-256 key) and until
  when changes are locked, surviving restarts.

Revision ID: 0009
Revises: 0008 (re-chained after 0008 when the branches merge)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyturn.store.schema import UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_windows",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("action", sa.String(128), nullable=False),
        sa.Column("second", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "action", "second", name="pk_rate_windows"),
    )
    op.create_table(
        "change_locks",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_change_locks"),
    )


def downgrade() -> None:
    op.drop_table("change_locks")
    op.drop_table("rate_windows")
