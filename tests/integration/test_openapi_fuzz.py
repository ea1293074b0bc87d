"""Property tests against the served OpenAPI document: random and mutated requests to every
operation never give a 500, and every status returned is one the document declares."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.causal.dataset import write_dataset
from core.causal.registry import build_task, make_banks
from core.spec import PairsSpec
from tests.integration.conftest import TINY_SPEC, Service

log = logging.getLogger(__name__)

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=12,
)
SPEC_PATHS = [("task",), ("task", "builtin"), ("task", "params"), ("task", "dataset"),
              ("pairs",), ("pairs", "fit"), ("levels",), ("levels", 0, "granularity"),
              ("coupling", "epsilons"), ("coupling", "solver"), ("calibration", "top_k"),
              ("priority",), ("model",), ("model", "id"), ("max_rows",), ("seed",)]
ids = st.text(min_size=1, max_size=40)
query_values = st.one_of(st.text(max_size=12), st.integers(-10**12, 10**12).map(str))


def path_segment(ident: str) -> str:
    """``ident`` as one path segment. A segment of dots alone is percent-encoded: sent bare,
    every client resolves it as a relative reference (``/jobs/./cancel`` is ``/jobs/cancel``),
    so the server would never see it as an id."""
    segment = quote(ident, safe="")
    return segment.replace(".", "%2E") if set(segment) == {"."} else segment


def mutated_spec(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """TINY_SPEC with the value at ``path`` replaced (containers created as needed)."""
    spec: Any = {k: (v.copy() if isinstance(v, dict) else list(v) if isinstance(v, list)
                     else v) for k, v in TINY_SPEC.items()}
    node = spec
    for part in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(part, {})
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node[part] = dict(node[part])
            node = node[part]
    if isinstance(node, dict):
        node[path[-1]] = value
    mutated: dict[str, Any] = spec
    return mutated


@pytest.fixture
def declared(api_only: Service) -> dict[tuple[str, str], set[int]]:
    """Status codes each operation declares in the served OpenAPI document."""
    document = httpx.get(f"{api_only.url}/openapi.json").json()
    codes: dict[tuple[str, str], set[int]] = {
        (method.upper(), path): {int(code) for code in operation["responses"]}
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    return codes


def check(response: httpx.Response, declared: dict[tuple[str, str], set[int]],
          operation: tuple[str, str]) -> None:
    assert response.status_code < 500, response.text
    assert response.status_code in declared[operation], (operation, response.status_code,
                                                         response.text)
    if response.status_code >= 400:
        assert set(response.json()) == {"type", "message", "where"}


def test_every_operation_declares_its_errors(declared: dict[tuple[str, str], set[int]]
                                             ) -> None:
    assert declared[("POST", "/v1/jobs")] >= {201, 401, 422, 429}
    assert declared[("GET", "/v1/jobs/{job_id}/result")] >= {200, 401, 404, 409, 422}
    assert declared[("POST", "/v1/datasets")] >= {201, 401, 413, 422}
    assert declared[("GET", "/readyz")] >= {200, 503}


def test_submitting_any_json_never_500s(api_only: Service,
                                        declared: dict[tuple[str, str], set[int]]) -> None:
    with api_only.client() as client:
        @FUZZ
        @given(st.one_of(json_values, st.builds(mutated_spec, st.sampled_from(SPEC_PATHS),
                                                 json_values)))
        def submit(body: Any) -> None:
            check(client.post("/v1/jobs", json=body), declared, ("POST", "/v1/jobs"))

        submit()


def test_reads_with_any_ids_and_query_never_500(api_only: Service,
                                                declared: dict[tuple[str, str], set[int]]
                                                ) -> None:
    operations = [("GET", "/v1/jobs/{job_id}"), ("GET", "/v1/jobs/{job_id}/result"),
                  ("POST", "/v1/jobs/{job_id}/cancel"), ("GET", "/v1/jobs/{job_id}/events"),
                  ("GET", "/v1/datasets/{dataset_id}"), ("GET", "/v1/models/{net_id}")]
    with api_only.client() as client:
        @FUZZ
        @given(st.sampled_from(operations), ids,
               st.dictionaries(st.sampled_from(["status", "limit", "offset", "x"]),
                               query_values, max_size=3))
        @example(("POST", "/v1/jobs/{job_id}/cancel"), ".", {})
        @example(("GET", "/v1/jobs/{job_id}/result"), "..", {})
        def read(operation: tuple[str, str], ident: str, query: dict[str, str]) -> None:
            method, template = operation
            path = re.sub(r"\{\w+\}", path_segment(ident), template)
            check(client.request(method, path), declared, operation)
            check(client.get("/v1/jobs", params=query), declared, ("GET", "/v1/jobs"))

        read()


def test_uploads_and_registrations_of_any_bytes_never_500(
    api_only: Service, declared: dict[tuple[str, str], set[int]]
) -> None:
    with api_only.client() as client:
        @FUZZ
        @given(st.binary(max_size=300) | json_values.map(lambda v: repr(v).encode()),
               st.text(min_size=1, max_size=30), json_values)
        def upload(data: bytes, name: str, model_body: Any) -> None:
            check(client.post("/v1/datasets", params={"name": name}, content=data), declared,
                  ("POST", "/v1/datasets"))
            check(client.post("/v1/models", json=model_body), declared, ("POST", "/v1/models"))

        upload()


def test_malformed_last_event_ids_are_refused(api_only: Service,
                                              declared: dict[tuple[str, str], set[int]]
                                              ) -> None:
    with api_only.client() as client:
        job = client.post("/v1/jobs", json=TINY_SPEC).json()

        @FUZZ
        @given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                       min_size=1, max_size=30).map(str.strip).filter(
                           lambda s: s != "" and not re.fullmatch(r"\d+-\d+", s)))
        def resume(last_event_id: str) -> None:
            response = client.get(f"/v1/jobs/{job['id']}/events",
                                  headers={"Last-Event-ID": last_event_id})
            check(response, declared, ("GET", "/v1/jobs/{job_id}/events"))
            assert response.status_code == 422

        resume()


def test_the_result_route_declares_the_typed_result(api_only: Service) -> None:
    document = httpx.get(f"{api_only.url}/openapi.json").json()
    schemas = document["components"]["schemas"]

    def properties(ref: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = schemas[ref["$ref"].rsplit("/", 1)[1]]["properties"]
        return found

    ok = document["paths"]["/v1/jobs/{job_id}/result"]["get"]["responses"]["200"]
    result = properties(properties(ok["content"]["application/json"]["schema"])["result"])
    assert {"levels", "handles", "timing", "das", "controls"} <= set(result)
    level = properties(result["levels"]["items"])
    assert {"sites", "cost", "coupling", "kept", "handles", "plans", "diagnostics"} <= set(level)
    handle = properties(level["handles"]["additionalProperties"])
    assert {"sites", "weights", "iia_test", "hard_iia_test"} <= set(handle)


def valid_jsonl(tmp_path: Any) -> bytes:
    """A small valid counterfactual dataset, so uploads also reach the 201 path."""
    banks = make_banks(build_task("hierarchical_equality"),
                       PairsSpec.model_validate({"fit": 4, "calibration": 2, "test": 2}))
    path = tmp_path / "rows.jsonl"
    write_dataset(path, banks.fit)
    return bytes(path.read_bytes())


def body_strategy(media_type: str, path: str, rows: bytes) -> st.SearchStrategy[bytes]:
    """Bodies for one declared media type: well-formed ones and garbage."""
    garbage = st.binary(max_size=200)
    if media_type == "application/json":
        documents: st.SearchStrategy[Any] = json_values
        if path == "/v1/jobs":
            documents = st.one_of(json_values, st.builds(
                mutated_spec, st.sampled_from(SPEC_PATHS), json_values))
        elif path == "/v1/models":
            documents = st.one_of(json_values, st.fixed_dictionaries({"path": st.text()}))
        return st.one_of(documents.map(lambda value: json.dumps(value).encode()), garbage)
    if media_type in ("application/x-ndjson", "application/octet-stream"):
        lines = rows.splitlines(keepends=True)
        return st.one_of(garbage, st.just(rows), st.lists(
            st.sampled_from(lines) | garbage, min_size=1, max_size=6).map(b"".join))
    return st.one_of(garbage, st.text(max_size=200).map(str.encode),
                     st.just(b"task:\n  builtin: hierarchical_equality\n"))


def query_strategy(parameters: list[dict[str, Any]]) -> st.SearchStrategy[dict[str, str]]:
    names = [p["name"] for p in parameters if p["in"] == "query"]
    if not names:
        return st.just({})
    return st.dictionaries(st.sampled_from(names), query_values, max_size=len(names))


def test_every_operation_of_the_served_document_never_500s(
    api_only: Service, declared: dict[tuple[str, str], set[int]], tmp_path: Any
) -> None:
    """Requests drawn from the served document itself (every operation, its path and query
    parameters, its request body's media types, datasets included): no 5xx, no status the
    document does not declare."""
    document = httpx.get(f"{api_only.url}/openapi.json").json()
    rows = valid_jsonl(tmp_path)
    operations = sorted(declared)
    seen: Counter[tuple[str, str, int]] = Counter()

    def request_for(operation: tuple[str, str]) -> st.SearchStrategy[dict[str, Any]]:
        method, template = operation
        spec = document["paths"][template][method.lower()]
        content = spec.get("requestBody", {}).get("content", {})
        bodies: st.SearchStrategy[tuple[str, bytes] | None] = st.none()
        if content:
            bodies = st.one_of(*(st.tuples(st.just(media), body_strategy(media, template, rows))
                                 for media in content))
        return st.fixed_dictionaries({
            "path": st.builds(lambda ident: re.sub(r"\{\w+\}", path_segment(ident),
                                                   template), ids),
            "query": query_strategy(spec.get("parameters", [])),
            "body": bodies,
        })

    with api_only.client() as client:
        @settings(FUZZ, max_examples=400)
        @given(st.sampled_from(operations).flatmap(
            lambda op: st.tuples(st.just(op), request_for(op))))
        @example((("POST", "/v1/datasets"), {"path": "/v1/datasets",
                                              "query": {"name": "rows.jsonl"},
                                              "body": ("application/x-ndjson", rows)}))
        def call(drawn: tuple[tuple[str, str], dict[str, Any]]) -> None:
            operation, request = drawn
            body = request["body"]
            headers = {"Content-Type": body[0]} if body else {}
            response = client.request(operation[0], request["path"], params=request["query"],
                                      content=body[1] if body else None, headers=headers)
            seen[(*operation, response.status_code)] += 1
            check(response, declared, operation)

        call()
    by_status = Counter(status // 100 * 100 for (_, _, status) in seen.elements())
    log.info("%s: %d requests over %d operations, statuses %s",
             str(api_only.settings.database_url).split(":")[0], sum(seen.values()),
             len({(m, p) for m, p, _ in seen}), dict(sorted(Counter(
                 status for (_, _, status) in seen.elements()).items())))
    log.info("POST /v1/datasets: statuses %s", {status: count for (m, p, status), count
                                                 in sorted(seen.items())
                                                 if (m, p) == ("POST", "/v1/datasets")})
    assert by_status[500] == 0
    assert {(m, p) for m, p, _ in seen} == set(operations)
    assert seen[("POST", "/v1/datasets", 201)] > 0
