"""Index instance listings by (tenant, product, id).

DescribeInstances filters on tenant and product and pages in id order; with this index both the
page walk (OFFSET) and the total count run on the index alone.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_instances_tenant_id_product_id", "instances", ["tenant_id", "product", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_instances_tenant_id_product_id", table_name="instances")
