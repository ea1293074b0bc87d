"""Log set-up of the service processes: one line per record, plain text or JSON
(``PLOT_LOG_FORMAT``), with the job id on every line written while a job is bound
(``workers.logcontext``) or passed as ``extra={"job_id": …}``."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from workers.logcontext import current_job_id

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(job_part)s: %(message)s"
# loggers that keep their own handlers unless told otherwise
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def job_id_of(record: logging.LogRecord) -> str | None:
    """The record's ``job_id`` extra, else the job bound to the writing thread."""
    explicit = getattr(record, "job_id", None)
    return str(explicit) if explicit else current_job_id.get()


class JobContextFilter(logging.Filter):
    """Puts ``job_id`` (or None) and ``job_part`` (`` [job=…]`` or "") on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        job_id = job_id_of(record)
        record.job_id = job_id
        record.job_part = f" [job={job_id}]" if job_id else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, job_id (when known), and the
    traceback as one ``exc`` string."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = job_id_of(record)
        if job_id:
            document["job_id"] = job_id
        document["process"] = record.process
        document["thread"] = record.threadName
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def configure_logging(log_format: str = "text", level: str = "INFO",
                      stream: TextIO | None = None) -> logging.Handler:
    """Route every logger (uvicorn's included) to one handler on ``stream`` (stderr).

    Returns:
        The handler (tests remove it again).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(JobContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else
                         logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = True
    return handler
