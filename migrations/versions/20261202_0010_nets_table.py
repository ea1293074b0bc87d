"""The registered nets' table is ``nets`` (was ``models``): "net" is the code's one word for
a neural network. Its primary key and owner index follow the naming convention.

Revision ID: 7a3f2c9e1d05
Revises: 5e0c7d1a9b42
Create Date: 2026-12-02 00:10:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '7a3f2c9e1d05'
down_revision: str | None = '5e0c7d1a9b42'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def rename(old: str, new: str) -> None:
    with op.batch_alter_table(old, schema=None) as batch_op:
        batch_op.drop_index(f'ix_{old}_owner')
    op.rename_table(old, new)
    if op.get_bind().dialect.name == 'postgresql':  # SQLite keeps no primary key names
        op.execute(f'ALTER TABLE {new} RENAME CONSTRAINT pk_{old} TO pk_{new}')
    with op.batch_alter_table(new, schema=None) as batch_op:
        batch_op.create_index(f'ix_{new}_owner', ['owner'], unique=False)


def upgrade() -> None:
    rename('models', 'nets')


def downgrade() -> None:
    rename('nets', 'models')
