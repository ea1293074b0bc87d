"""Levels stored once: drop the copy of each level that jobs.result held (the job_levels
checkpoints are the levels; the result route assembles them). Data only, no schema change.

Revision ID: 5e0c7d1a9b42
Revises: abaa55af887c
Create Date: 2026-12-01 23:47:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '5e0c7d1a9b42'
down_revision: str | None = 'abaa55af887c'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# jobs.result is JSONB on Postgres and JSON text on SQLite; unfinished jobs hold SQL NULL or
# JSON null, so only objects are touched.
STRIP = {
    "postgresql": "UPDATE jobs SET result = result - 'levels' "
                  "WHERE jsonb_typeof(result) = 'object' AND result ? 'levels'",
    "sqlite": "UPDATE jobs SET result = json_remove(result, '$.levels') "
              "WHERE json_type(result) = 'object' AND json_type(result, '$.levels') IS NOT NULL",
}
# the downgrade puts every succeeded job's checkpoints back inside its result, in level order
EMBED = {
    "postgresql": "UPDATE jobs SET result = jsonb_set(result, '{levels}', COALESCE("
                  "(SELECT jsonb_agg(checkpoint ORDER BY level) FROM job_levels "
                  "WHERE job_levels.job_id = jobs.id), '[]'::jsonb)) "
                  "WHERE status = 'succeeded' AND jsonb_typeof(result) = 'object'",
    "sqlite": "UPDATE jobs SET result = json_set(result, '$.levels', COALESCE("
              "(SELECT json_group_array(json(checkpoint)) FROM (SELECT checkpoint FROM "
              "job_levels WHERE job_levels.job_id = jobs.id ORDER BY level)), json('[]'))) "
              "WHERE status = 'succeeded' AND json_type(result) = 'object'",
}


def upgrade() -> None:
    op.execute(STRIP[op.get_bind().dialect.name])


def downgrade() -> None:
    op.execute(EMBED[op.get_bind().dialect.name])
