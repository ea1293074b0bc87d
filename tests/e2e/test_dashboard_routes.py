"""The dashboard's HTTP side: the page and its assets are served with a strict CSP, and the
YAML step of the spec form parses safely and only for a signed-in caller."""

from __future__ import annotations

import httpx

from tests.integration.conftest import Service


def test_the_page_is_served_at_root_with_a_same_origin_policy(dashboard: Service) -> None:
    page = httpx.get(dashboard.url + "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    for asset in ("/static/js/main.js", "/static/css/dashboard.css"):
        assert httpx.get(dashboard.url + asset).status_code == 200
    assert "http" not in page.text.replace(dashboard.url, "")  # no outside assets


def test_the_api_is_not_shadowed_by_the_static_files(dashboard: Service) -> None:
    missing = httpx.get(dashboard.url + "/v1/nothing-here")
    assert missing.status_code == 404
    assert set(missing.json()) == {"type", "message", "where"}


def test_yaml_specs_become_json_for_a_signed_in_caller(dashboard: Service) -> None:
    body = "task:\n  builtin: hierarchical_equality\ncoupling: {epsilons: [0.03]}\n"
    assert httpx.post(dashboard.url + "/v1/specs/yaml", content=body).status_code == 401
    with dashboard.client("alice") as alice:
        parsed = alice.post("/v1/specs/yaml", content=body)
        assert parsed.status_code == 200
        assert parsed.json() == {"spec": {"task": {"builtin": "hierarchical_equality"},
                                          "coupling": {"epsilons": [0.03]}}}


def test_yaml_errors_name_the_line_and_aliases_are_refused(dashboard: Service) -> None:
    with dashboard.client("alice") as alice:
        broken = alice.post("/v1/specs/yaml", content="task:\n  builtin: [x\n")
        assert broken.status_code == 422
        assert broken.json()["where"].startswith("line ")
        bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
        refused = alice.post("/v1/specs/yaml", content=bomb)
        assert refused.status_code == 422
        assert "aliases" in refused.json()["message"]
        listed = alice.post("/v1/specs/yaml", content="- 1\n- 2\n")
        assert listed.status_code == 422
        assert "mapping" in listed.json()["message"]
        too_big = alice.post("/v1/specs/yaml", content="a: " + "x" * 300_000)
        assert too_big.status_code == 413
