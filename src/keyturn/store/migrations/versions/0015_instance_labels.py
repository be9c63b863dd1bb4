"""Instance labels and fleet delivery to secrets (issue 17): ``instances.labels`` (a sorted JSON
object, what fleet jobs select by) and ``fleet_targets.flow_id`` (the secret rotation flow a
target rotates through, when its account has a managed secret).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("labels", sa.Text(), nullable=True))
    with op.batch_alter_table("fleet_targets") as batch:
        batch.add_column(sa.Column("flow_id", sa.String(40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fleet_targets") as batch:
        batch.drop_column("flow_id")
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("labels")
