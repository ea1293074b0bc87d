"""Log lines: one JSON object (or one text line) per record, with the job id of the job
bound to the writing thread, or given as an extra."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from api.logs import configure_logging
from workers.logcontext import bound_job


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, str]]:
    """Configure logging into a buffer (JSON); restore the root logger afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("json", "INFO", stream)
    yield stream, "json"
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_lines_inside_a_bound_job_carry_its_id_and_others_do_not(
        captured: tuple[io.StringIO, str]) -> None:
    stream, _ = captured
    log = logging.getLogger("plot.test")
    log.info("before")
    with bound_job("a" * 32):
        log.info("level %d done", 2)
        logging.getLogger("uvicorn.error").warning("from a server logger")
    log.info("after", extra={"job_id": "b" * 32})
    log.info("plain")
    records = lines(stream)
    assert [r.get("job_id") for r in records] == [None, "a" * 32, "a" * 32, "b" * 32, None]
    assert records[1]["message"] == "level 2 done" and records[1]["level"] == "INFO"
    assert records[1]["logger"] == "plot.test" and str(records[1]["ts"]).endswith("+00:00")


def test_a_traceback_stays_inside_one_json_line(captured: tuple[io.StringIO, str]) -> None:
    stream, _ = captured
    with bound_job("c" * 32):
        try:
            raise RuntimeError("actor node went away")
        except RuntimeError:
            logging.getLogger("plot.test").exception("job crashed")
    (record,) = lines(stream)
    assert record["job_id"] == "c" * 32
    assert "RuntimeError: actor node went away" in str(record["exc"])


def test_a_new_thread_does_not_inherit_the_job(captured: tuple[io.StringIO, str]) -> None:
    stream, _ = captured
    with bound_job("d" * 32):
        thread = threading.Thread(target=lambda: logging.getLogger("t").info("other thread"))
        thread.start()
        thread.join()
    (record,) = lines(stream)
    assert record["message"] == "other thread" and "job_id" not in record


def test_text_lines_name_the_job() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        configure_logging("text", "INFO", stream)
        with bound_job("e" * 32):
            logging.getLogger("plot.test").info("claimed")
        logging.getLogger("plot.test").debug("hidden at INFO")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    (line,) = stream.getvalue().splitlines()
    assert line.endswith(f"INFO plot.test [job={'e' * 32}]: claimed")
