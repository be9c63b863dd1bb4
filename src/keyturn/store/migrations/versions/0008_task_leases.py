"""Task leases and the node registry (issue 13).

- ``tasks.owner``, ``tasks.fence``, ``tasks.lease_until``: the node running a task, the fencing
  token of its claim (incremented at every claim) and until when its lease holds. Tasks left
  unfinished by an older version have no owner, so the first node to start claims them.
- ``tasks.error_code``: the domain error behind a failure, for synchronous calls answered by
  a node that did not run the task.
- ``cluster_nodes``: one heartbeat row per running node.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyturn.store.schema import UtcDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("owner", sa.String(128), nullable=True))
        batch.add_column(sa.Column("fence", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("lease_until", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("error_code", sa.String(64), nullable=True))
        batch.create_index("ix_tasks_state_lease_until", ["state", "lease_until"])
    op.create_table(
        "cluster_nodes",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("heartbeat_at", UtcDateTime(), nullable=False),
        sa.Column("address", sa.String(255), nullable=False, server_default=""),
        sa.Column("version", sa.String(64), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id", name="pk_cluster_nodes"),
    )


def downgrade() -> None:
    op.drop_table("cluster_nodes")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_index("ix_tasks_state_lease_until")
        batch.drop_column("error_code")
        batch.drop_column("lease_until")
        batch.drop_column("fence")
        batch.drop_column("owner")
