"""Jobs carry the spec's display name and tags as columns, so the job list can filter on
them: ``name`` (NULL when unnamed) and ``tags`` (``,a,b,``: each tag between commas, ``''``
when none; tags hold no commas). Jobs submitted before have neither.

Revision ID: 3c8d1e6f0a27
Revises: 7a3f2c9e1d05
Create Date: 2026-12-02 03:20:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '3c8d1e6f0a27'
down_revision: str | None = '7a3f2c9e1d05'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name', sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column('tags', sa.String(length=600), nullable=False,
                                      server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('tags')
        batch_op.drop_column('name')
