"""The body limit middleware: 413 records as soon as a body passes its route's limit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from api.body_limit import BodyLimitMiddleware, BodyLimits


async def echo_size(request: Request) -> JSONResponse:
    return JSONResponse({"size": len(await request.body())})


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = Starlette(routes=[Route("/v1/jobs", echo_size, methods=["POST"]),
                            Route("/v1/datasets", echo_size, methods=["POST"])])
    app.add_middleware(BodyLimitMiddleware, limits=BodyLimits(json_bytes=100,
                                                              upload_bytes=1000))
    with TestClient(app) as test_client:
        yield test_client


def chunks(total: int, size: int = 30) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


@pytest.mark.parametrize(("path", "limit"), [("/v1/jobs", 100), ("/v1/datasets", 1000)])
def test_a_body_at_the_limit_passes_and_one_byte_more_is_refused(
    client: TestClient, path: str, limit: int
) -> None:
    assert client.post(path, content=b"x" * limit).json() == {"size": limit}
    refused = client.post(path, content=b"x" * (limit + 1))
    assert refused.status_code == 413
    assert refused.json()["type"] == "TooLargeError" and refused.json()["where"] == "body"


def test_a_streamed_body_is_refused_whatever_its_length_says(client: TestClient) -> None:
    refused = client.post("/v1/jobs", content=chunks(10_000))  # chunked: no Content-Length
    assert refused.status_code == 413
    assert "PLOT_MAX_JSON_BYTES" in refused.json()["message"]


def test_a_declared_length_over_the_limit_is_refused_before_the_route_runs(
    client: TestClient
) -> None:
    refused = client.post("/v1/datasets", content=b"x" * 5000)
    assert refused.status_code == 413
    assert refused.json()["message"].startswith("Content-Length 5000")
    assert "PLOT_MAX_UPLOAD_BYTES" in refused.json()["message"]


def test_only_methods_with_bodies_are_counted(client: TestClient) -> None:
    # a GET's body is never read by a route: the route answers, not the limit
    assert client.request("GET", "/v1/jobs", content=b"x" * 5000).status_code == 405
