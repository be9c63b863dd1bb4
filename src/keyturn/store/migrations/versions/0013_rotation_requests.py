"""A requested rotation (``keyturn secrets rotate-now``, issue 16): ``secrets.
rotate_requested_at`` marks the secret's due slot as asked for by an operator, so the flow the
scheduler fires for it is labelled ``manual`` in the history (not ``schedule``); a flow's end
clears it.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keyturn.store.schema import UtcDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("secrets", sa.Column("rotate_requested_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("secrets") as batch:
        batch.drop_column("rotate_requested_at")
