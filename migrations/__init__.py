"""Alembic migrations of the PLOT service, shipped in the wheel as package data
(``env.py``, ``script.py.mako``, ``versions/*.py``); ``api.db.migrate`` finds them here."""
