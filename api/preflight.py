"""Start-up checks: a process refuses to start, with one line naming the PLOT_* variable,
when its database, Redis or Ray cluster does not answer (settings errors are caught when
``Settings`` is built)."""

from __future__ import annotations

import re
import socket
import time
from typing import Literal

from api.errors import ConfigError
from api.settings import Settings

CONNECT_TIMEOUT_S = 5
JOIN_ATTEMPTS = 3  # a head that answers may still fail a Ray Client start once (its
JOIN_RETRY_S = 2.0  # per-client server dies starting on a loaded machine): try again
Need = Literal["database", "redis", "ray"]


def one_line(error: BaseException) -> str:
    """An exception's message on one line (psycopg's span several)."""
    cause = getattr(error, "orig", None) or error
    text = re.sub(r"\s+", " ", str(cause)).strip()
    return text or type(cause).__name__


def check_database(settings: Settings) -> None:
    """Connect and run ``SELECT 1``.

    Raises:
        ConfigError: the database cannot be reached, does not exist, or refuses the login.
    """
    from sqlalchemy import create_engine, text

    url = settings.resolved_database_url
    arguments = {} if url.startswith("sqlite") else {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        engine = create_engine(url, connect_args=arguments)
    except Exception as error:  # a missing driver, a malformed query string
        raise ConfigError(one_line(error), "PLOT_DATABASE_URL") from None
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        raise ConfigError(f"cannot connect to {settings.database_display}: {one_line(error)}",
                          "PLOT_DATABASE_URL") from None
    finally:
        engine.dispose()


def check_redis(settings: Settings) -> None:
    """Ping Redis when one is configured.

    Raises:
        ConfigError: a malformed URL or a Redis that does not answer.
    """
    if not settings.redis_url:
        return
    import redis

    try:
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=CONNECT_TIMEOUT_S,
                                      socket_timeout=CONNECT_TIMEOUT_S)
        client.ping()
        client.close()
    except Exception as error:
        raise ConfigError(f"cannot reach Redis: {one_line(error)}", "PLOT_REDIS_URL") from None


def ray_endpoint(address: str) -> tuple[str, int] | None:
    """The host and port a Ray address connects to; None for a local Ray (``local``) or
    ``auto`` (the cluster this machine joined with ``ray start``).

    Raises:
        ConfigError: not ``host:port`` or ``ray://host:port``.
    """
    if address in ("", "local", "auto"):
        return None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if "://" in rest or not sep or not host or not port.isdigit():
        raise ConfigError(f"{address!r} is not host:port or ray://host:port",
                          "PLOT_RAY_ADDRESS")
    return host.strip("[]"), int(port)


def check_ray_reachable(address: str) -> None:
    """Open (and close) a TCP connection to the Ray head's GCS or Ray Client port.

    Raises:
        ConfigError: a malformed address, or nothing answers there.
    """
    endpoint = ray_endpoint(address)
    if endpoint is None:
        return
    try:
        socket.create_connection(endpoint, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"no Ray cluster answers at {address} ({reason})",
                          "PLOT_RAY_ADDRESS") from None


def check_ray(settings: Settings) -> None:
    """Check the Ray head answers, then join it (a local Ray starts here for ``local``),
    trying the join ``JOIN_ATTEMPTS`` times: a Ray Client server can fail one start.

    Raises:
        ConfigError: nothing answers there, or Ray refuses this process (version mismatch).
    """
    address = settings.ray_address
    if not address:
        return
    check_ray_reachable(address)
    import ray

    from workers import cluster

    for attempt in range(1, JOIN_ATTEMPTS + 1):
        try:
            cluster.connect(address, settings.ray_num_cpus)
            return
        except Exception as error:
            if attempt == JOIN_ATTEMPTS:
                raise ConfigError(f"cannot join the Ray cluster at {address} "
                                  f"({JOIN_ATTEMPTS} tries): {one_line(error)}",
                                  "PLOT_RAY_ADDRESS") from None
            ray.shutdown()  # forget the failed connection before the next try
            time.sleep(JOIN_RETRY_S)


CHECKS = {"database": check_database, "redis": check_redis, "ray": check_ray}


def check_start(settings: Settings, *needs: Need) -> None:
    """Run the named checks in order (database, then Redis, then Ray).

    Raises:
        ConfigError: the first that fails, naming its PLOT_* variable.
    """
    for need in needs:
        CHECKS[need](settings)
