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


# Plain ALTER TABLE on both (SQLite 3.35+ drops columns): a batch "copy and move" of jobs
# on SQLite would drop the old table, and job_levels' ON DELETE CASCADE with it.


def upgrade() -> None:
    op.add_column('jobs', sa.Column('name', sa.String(length=120), nullable=True))
    op.add_column('jobs', sa.Column('tags', sa.String(length=600), nullable=False,
                                    server_default=''))


def downgrade() -> None:
    op.execute('ALTER TABLE jobs DROP COLUMN tags')
    op.execute('ALTER TABLE jobs DROP COLUMN name')
