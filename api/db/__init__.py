"""Persistence: SQLAlchemy tables, sessions, migrations and the job state machine."""
