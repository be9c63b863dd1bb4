"""Secret look-ups per fleet target: an index on ``secrets (tenant_id, instance_id, account,
name)`` (a fleet job asks, for every target, which managed secret holds its account, the first
by name: the index answers it alone).

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

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


def downgrade() -> None:
    op.drop_index("ix_secrets_tenant_id_instance_id_account_name", table_name="secrets")
