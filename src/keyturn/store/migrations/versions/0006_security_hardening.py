"""Security hardening (issue 11): replay memory in the store, the admin-reset opt-in, keyed
audit chains and task ids that say nothing across tenants.

- ``replay_nonces``: nonces and signatures of verified requests, kept until they expire, so a
  captured request stays refused after a restart and on every node sharing the store. The
  nonce is stored as its SHA-256 (fixed width, whatever the client sent).
- ``instances.allow_admin_reset``: resets of the accounts keyturn logs in with, and of
  superusers, are refused through the vendor APIs unless the instance opts in.
- ``audit_log.scheme``: how a record's hash was made (``sha256`` for records written before
  the chain was keyed, ``hmac-sha256`` after).
- ``ix_tasks_tenant_id_created_at``: task ids are random, so listings order by creation time.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyturn.store.schema import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replay_nonces",
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "digest", name="pk_replay_nonces"),
    )
    op.create_index("ix_replay_nonces_expires_at", "replay_nonces", ["expires_at"])
    with op.batch_alter_table("instances") as batch:
        batch.add_column(
            sa.Column("allow_admin_reset", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(
            sa.Column("scheme", sa.String(16), nullable=False, server_default="sha256")
        )
    op.create_index("ix_tasks_tenant_id_created_at", "tasks", ["tenant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_tenant_id_created_at", table_name="tasks")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("scheme")
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("allow_admin_reset")
    op.drop_index("ix_replay_nonces_expires_at", table_name="replay_nonces")
    op.drop_table("replay_nonces")
