"""``audit_log.seq`` as a 64-bit integer on PostgreSQL. Every signed call, reads included,
appends one record; at a thousand calls a second a 32-bit ``seq`` runs out in under a month,
and since a change whose record cannot be written is refused, the store would then refuse
every change. SQLite's ``INTEGER PRIMARY KEY`` is 64-bit already (the table's rowid): nothing
to do there. On PostgreSQL the column's type change rewrites the table once, under its lock.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("audit_log", "seq", type_=sa.BigInteger(), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("audit_log", "seq", type_=sa.Integer(), existing_nullable=False)
