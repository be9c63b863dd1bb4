"""Secret look-ups per fleet target and drop retries in the store: an index on ``secrets (tenant_id,
instance_id, account, name)`` (a fleet job asks, for every target, which managed secret holds its
account, the first by name: the index answers it alone) and ``secret_flows.drop_failures`` (how
many tries of an overlap's drop failed: the backoff of the next one, shared by every node).

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_secrets_tenant_id_instance_id_account_name",
        "secrets",
        ["tenant_id", "instance_id", "account", "name"],
    )
    with op.batch_alter_table("secret_flows") as batch:
        batch.add_column(
            sa.Column("drop_failures", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("secret_flows") as batch:
        batch.drop_column("drop_failures")
    op.drop_index("ix_secrets_tenant_id_instance_id_account_name", table_name="secrets")
