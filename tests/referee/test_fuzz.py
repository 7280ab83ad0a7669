"""Fuzz every operation of the OpenAPI schema (schemathesis, positive and negative data, valid token):
malformed requests must get a 4xx with a message, never a 5xx."""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

MAX_EXAMPLES = 25


def test_openapi_fuzz_never_5xx(env):
    app = env.client.app
    token = env.agent("fuzzer")["Authorization"]
    admin = env.agent("root", admin=True)["Authorization"]
    # something to find: a post and the baseline-free leaderboard
    env.client.post(
        "/api/v1/posts", json={"title": "t", "body": "b", "kind": "insight"}, headers={"Authorization": token}
    )
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    failures: list[str] = []
    calls: list[int] = []
    ops = 0
    for result in schema.get_all_operations():
        op = result.ok()
        ops += 1
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategy = op.as_strategy(generation_mode=mode)

            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(case=strategy)
            def run(case):
                auth = admin if "/admin/" in case.path else token
                response = case.call(headers={"Authorization": auth})
                calls.append(response.status_code)
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code}: "
                        f"{response.text[:200]}"
                    )
                elif response.status_code >= 400:
                    assert response.json().get("detail"), (
                        case.method,
                        case.formatted_path,
                        response.text[:200],
                    )

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                pass
    print(f"\nfuzzed {ops} operations with {len(calls)} requests; statuses {sorted(set(calls))}")
    assert ops >= 20 and len(calls) > 20 * ops
    assert not failures, "\n".join(failures[:10])


@pytest.mark.parametrize("payload", [b"[]", b"null", b"1", b'"x"', b"{", b'{"task": null}', b"\xff\xfe"])
def test_junk_bodies_are_4xx_everywhere(env, payload):
    h = {**env.agent("alice"), "content-type": "application/json"}
    for path in (
        "/api/v1/dev/evaluate",
        "/api/v1/runs",
        "/api/v1/posts",
        "/api/v1/posts/1/comments",
        "/api/v1/posts/1/vote",
    ):
        r = env.client.post(path, content=payload, headers=h)
        assert 400 <= r.status_code < 500 and r.json()["detail"], (path, payload, r.status_code, r.text)
