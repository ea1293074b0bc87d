"""Service subcommands: ``plot serve | submit | keys | db``.

The service extra's modules (FastAPI, SQLAlchemy, Alembic, uvicorn, httpx) are imported
inside the handlers, so these commands register on the base install, and ``plot submit``
starts without loading the server side.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.client import ServerEvent
    from core.result import HandleResult


def register(commands: Any) -> None:
    """Add the service subcommands to the ``plot`` parser's subparsers."""
    serve = commands.add_parser("serve", help="API + in-process runner on 127.0.0.1")
    serve.add_argument("--host", default=None, help="default PLOT_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default PLOT_PORT or 8000")
    serve.set_defaults(handler=run_serve)

    submit = commands.add_parser("submit", help="submit a job spec and follow its progress")
    submit.add_argument("spec", type=Path, help="YAML job spec")
    submit.add_argument("--server", default=os.environ.get("PLOT_SERVER",
                                                           "http://127.0.0.1:8000"))
    submit.add_argument("--key", default=os.environ.get("PLOT_API_KEY"),
                        help="API key (default PLOT_API_KEY)")
    submit.add_argument("--no-follow", action="store_true", help="print the id and return")
    submit.set_defaults(handler=run_submit)

    keys = commands.add_parser("keys", help="manage API keys (in the configured database)")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key; the token is shown once")
    create.add_argument("--owner", required=True)
    create.add_argument("--admin", action="store_true")
    create.set_defaults(handler=run_keys_create)
    actions.add_parser("list", help="list keys").set_defaults(handler=run_keys_list)
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=run_keys_revoke)

    database = commands.add_parser("db", help="database schema")
    db_actions = database.add_subparsers(dest="action", required=True, metavar="ACTION")
    db_actions.add_parser("upgrade", help="alembic upgrade head").set_defaults(
        handler=run_db_upgrade)


ADMIN_TOKEN_FILE = "admin-token"


def write_secret(path: Path, secret: str) -> Path:
    """Write ``secret`` to a new file only its owner can read (0600), replacing any old one."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(secret + "\n")
    return path


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _settings(**overrides: Any) -> Any:
    from api.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _sessions(settings: Any) -> Any:
    from api.db.migrate import upgrade_database
    from api.db.session import make_engine, make_sessions
    from api.preflight import check_start

    settings.make_dirs()
    check_start(settings, "database")
    upgrade_database(settings.resolved_database_url)
    return make_sessions(make_engine(settings.resolved_database_url))


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api import auth
    from api.app import create_app
    from api.logs import configure_logging
    from api.preflight import check_start

    settings = _settings(host=args.host, port=args.port)
    configure_logging(settings.log_format, settings.log_level)
    settings.make_dirs()
    check_start(settings, "database", "redis")
    if settings.run_jobs and settings.ray_address:
        check_start(settings, "ray")  # joins the cluster (or starts a local Ray)
    sessions = _sessions(settings)
    with sessions() as session:
        if not auth.has_admin_key(session):
            row, token = auth.create_key(session, "admin", role="admin")
            path = write_secret(settings.data_dir / ADMIN_TOKEN_FILE, token)
            # the token itself never reaches stdout (and so no captured log)
            _out(f"first start: created admin key {row.key_id}; its token is in {path} "
                 "(readable by this user only)")
    _out(f"serving on http://{settings.host}:{settings.port} "
         f"(database {settings.database_display})")
    # open SSE streams would hold a graceful shutdown forever: cut them after 10 s;
    # log_config=None: uvicorn's loggers go through configure_logging's handler
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_config=None, timeout_graceful_shutdown=10)
    return 0


def describe_event(event: ServerEvent) -> str:
    data = event.data
    if event.kind == "progress":
        return (f"  level {data.get('level')} {data.get('stage')}: "
                f"{data.get('done')}/{data.get('total')}")
    if event.kind == "level_started":
        return f"level {data.get('level')} started: {data.get('granularity')}"
    if event.kind == "failed":
        return f"failed: {data.get('type')}: {data.get('message')} ({data.get('where')})"
    return f"{event.kind}" + (f": {_short(data)}" if data else "")


def _short(data: dict[str, Any], limit: int = 160) -> str:
    text = ", ".join(f"{k}={v}" for k, v in data.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_submit(args: argparse.Namespace) -> int:
    from api.client import ApiError, PlotClient
    from api.commands.engine import ordered_handles, site_label
    from core.spec import load_job_spec

    if not args.key:
        raise ApiError(401, "AuthError", "give --key or set PLOT_API_KEY", "--key")
    spec = load_job_spec(args.spec)
    with PlotClient(args.server, args.key) as client:
        job = client.submit(spec)
        _out(f"job {job['id']} queued (position {job['queue_position']})")
        if args.no_follow:
            return 0
        for event in client.stream_events(job["id"]):
            _out(describe_event(event))
        job = client.get(job["id"])
        if job["status"] != "succeeded":
            _out(f"job {job['id']} {job['status']}")
            return 1
        result = client.result(job["id"], typed=True)
        for variable, handle in ordered_handles(result):
            sites = [site_label(result, handle.level, site) for site in handle.sites]
            _out(handle_line(variable, handle, sites))
    return 0


def handle_line(variable: str, handle: HandleResult, sites: list[str]) -> str:
    """One handle of a result, led by its verdict, its ``sites`` as the tables show them;
    the IIA of a handle that is not localized is named as such, not given as a headline
    figure."""
    verdict = handle.verdict or "not judged"
    figures = (f"iia_test={handle.iia_test.overall} "
               f"sensitivity={handle.iia_test.sensitivity}")
    if verdict != "localized":
        reason = handle.verdict_reason
        return (f"{variable}: {verdict}" + (f" ({reason})" if reason else "")
                + f"; sites={sites}; not a localization: {figures}")
    return f"{variable}: {verdict}; sites={sites} {figures}"


def run_keys_create(args: argparse.Namespace) -> int:
    from api import auth

    with _sessions(_settings())() as session:
        row, token = auth.create_key(session, args.owner, "admin" if args.admin else "user")
    _out(f"key {row.key_id} for {row.owner} ({row.role}); the token is shown only once:")
    _out(token)
    return 0


def run_keys_list(args: argparse.Namespace) -> int:
    from api import auth

    with _sessions(_settings())() as session:
        for row in auth.list_keys(session):
            state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
            _out(f"{row.key_id}  {row.owner:<20} {row.role:<6} {state}")
    return 0


def run_keys_revoke(args: argparse.Namespace) -> int:
    from api import auth

    with _sessions(_settings())() as session:
        row = auth.revoke_key(session, args.key_id)
    _out(f"revoked {row.key_id} ({row.owner})")
    return 0


def run_db_upgrade(args: argparse.Namespace) -> int:
    from api.db.migrate import upgrade_database
    from api.preflight import check_start

    settings = _settings()
    settings.make_dirs()
    check_start(settings, "database")
    upgrade_database(settings.resolved_database_url)
    _out(f"database at head: {settings.database_display}")
    return 0
