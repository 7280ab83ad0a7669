"""The referee's HTTP API as the researcher sees it: a small client over TCP or a Unix socket.

Retries: connection failures and 5xx are retried with exponential backoff (logged, bounded by
``max_wait`` seconds in all) and then reported as ``RefereeUnavailable``; 4xx answers are the
referee's verdict (bad request, budget spent, not found) and come back at once as ``RefereeError``
so the tool can show the model what was wrong. Nothing here raises anything else for network trouble.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import httpx

log = logging.getLogger("aar.agents")
API = "/api/v1"


class RefereeError(Exception):
    """The referee answered with a 4xx: ``status`` and its ``detail`` message."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"referee said {status}: {detail}")
        self.status, self.detail = status, detail


class RefereeUnavailable(Exception):
    """The referee could not be reached (or kept failing) within the retry window."""


def is_socket_target(target: str) -> bool:
    return not target.startswith(("http://", "https://"))


class RefereeClient:
    def __init__(
        self,
        target: str,
        token: str | None,
        *,
        timeout: float = 60.0,
        max_wait: float = 300.0,
        backoff: float = 1.0,
        sleep=time.sleep,
    ):
        """``target``: a base URL (``http://host:port``) or a Unix socket path."""
        self.target = target
        self.token = token
        self.max_wait, self.backoff, self._sleep = max_wait, backoff, sleep
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if is_socket_target(target):
            transport = httpx.HTTPTransport(uds=os.path.abspath(target))
            self._http = httpx.Client(
                transport=transport, base_url="http://referee", headers=headers, timeout=timeout
            )
        else:
            self._http = httpx.Client(base_url=target.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict | None = None,
        content: bytes | None = None,
        headers: dict | None = None,
        raw: bool = False,
    ) -> Any:
        url = API + path
        deadline = time.monotonic() + self.max_wait
        attempt = 0
        while True:
            attempt += 1
            problem: str
            try:
                resp = self._http.request(
                    method, url, json=json, params=params, content=content, headers=headers
                )
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 400:
                    if raw:
                        return resp.content
                    return resp.json() if resp.content else None
                if resp.status_code < 500:
                    try:
                        detail = resp.json().get("detail", resp.text)
                    except ValueError:
                        detail = resp.text
                    raise RefereeError(resp.status_code, str(detail)[:2000])
                problem = f"HTTP {resp.status_code}: {resp.text[:200]}"
            wait = min(self.backoff * 2 ** (attempt - 1), 30.0)
            if time.monotonic() + wait > deadline:
                log.error("referee %s %s unavailable after %d attempts: %s", method, path, attempt, problem)
                raise RefereeUnavailable(f"referee unreachable after {attempt} attempts: {problem}")
            log.warning("referee %s %s failed (%s); retry %d in %.1f s", method, path, problem, attempt, wait)
            self._sleep(wait)

    # -- the endpoints the tools use ---------------------------------------------------------------

    def me(self) -> dict:
        return self.request("GET", "/me")

    def tasks(self) -> list[dict]:
        return self.request("GET", "/tasks")

    def dev_evaluate(self, task: str, predictions: dict[str, float]) -> dict:
        return self.request("POST", "/dev/evaluate", json={"task": task, "predictions": predictions})

    def push_bundle(self, bundle: bytes) -> list[dict]:
        return self.request(
            "POST", "/code", content=bundle, headers={"content-type": "application/octet-stream"}
        )

    def code_tarball(self, sha: str) -> bytes:
        return self.request("GET", f"/code/{sha}", raw=True)

    def submit_run(self, commit: str, idea_path: str, task: str) -> dict:
        return self.request("POST", "/runs", json={"commit": commit, "idea_path": idea_path, "task": task})

    def runs(self, agent: str | None = None, limit: int = 100) -> list[dict]:
        params: dict = {"limit": limit}
        if agent:
            params["agent"] = agent
        return self.request("GET", "/runs", params=params)

    def run(self, run_id: int) -> dict:
        return self.request("GET", f"/runs/{int(run_id)}")

    def leaderboard(self) -> list[dict]:
        return self.request("GET", "/leaderboard")

    def post(self, title: str, body: str, kind: str, tags: list[str], cites: list[int]) -> dict:
        return self.request(
            "POST", "/posts", json={"title": title, "body": body, "kind": kind, "tags": tags, "cites": cites}
        )

    def search_posts(
        self, q: str | None = None, kind: str | None = None, author: str | None = None, limit: int = 10
    ) -> dict:
        params = {k: v for k, v in {"q": q, "kind": kind, "author": author, "limit": limit}.items() if v}
        return self.request("GET", "/posts", params=params)

    def get_post(self, post_id: int) -> dict:
        return self.request("GET", f"/posts/{int(post_id)}")

    def comments(self, post_id: int) -> list[dict]:
        return self.request("GET", f"/posts/{int(post_id)}/comments")
