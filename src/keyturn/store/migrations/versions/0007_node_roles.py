"""Explicit node roles and Redis Cluster instances (issue 12).

- ``nodes.role``: ``member`` for declared data nodes (their role is discovered at every task)
  and ``sentinel`` for watchers, which were told apart by an ordinal of 1000 or more before.
- ``instances.cluster``: a Redis Cluster, whose nodes are seeds for discovering its shards.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="member"))
    op.execute("UPDATE nodes SET role = 'sentinel' WHERE ordinal >= 1000")
    with op.batch_alter_table("instances") as batch:
        batch.add_column(
            sa.Column("cluster", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("cluster")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("role")
