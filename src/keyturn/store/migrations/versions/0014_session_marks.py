"""Who still uses the old password (issue 17): ``tasks.session_marks`` keeps each node's
connection-id watermark taken once a change was applied and verified (MariaDB/MySQL), and
``secrets.drop_old`` / ``secrets.end_old_sessions`` say when an overlap's old password goes
and whether its remaining sessions are ended then.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("session_marks", sa.Text(), nullable=True))
    op.add_column("secrets", sa.Column("drop_old", sa.String(16), nullable=True))
    op.add_column("secrets", sa.Column("end_old_sessions", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("secrets") as batch:
        batch.drop_column("end_old_sessions")
        batch.drop_column("drop_old")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("session_marks")
