"""The dashboard in a real browser (headless Debian chromium driven by Playwright) against a real
referee process on loopback TCP: every page renders, the chart draws, search works, an admin verifies a
run from the review queue, and an agent's token is refused the queue and its forms.

Expectations come from the referee's own API, never from the fixture's internals, so the fixture can
be any finished campaign (``finished_campaign``: data_dir, admin_token, agent_token, agent_name).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AAR = [sys.executable, "-m", "aar.cli"]
API = "/api/v1"


@pytest.fixture(scope="module")
def base_url(finished_campaign, tmp_path_factory) -> Iterator[str]:
    """`aar referee serve` on a free loopback port (queue-only executor: the campaign is finished)."""
    folder = tmp_path_factory.mktemp("serve")
    port_file, log_path = folder / "port", folder / "referee.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [*AAR, "referee", "serve", "--data", str(finished_campaign.data_dir), "--host", "127.0.0.1"]
            + ["--port", "0", "--port-file", str(port_file), "--executor", "none"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = _wait_until_serving(proc, port_file, log_path)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_serving(proc: subprocess.Popen, port_file: Path, log_path: Path) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if port_file.exists():
            url = f"http://127.0.0.1:{port_file.read_text().strip()}"
            try:
                if httpx.get(f"{url}{API}/health", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"referee did not start:\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM.exists(), "no /usr/bin/chromium: scripts/install-system-deps.sh installs it (as root)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def api(base_url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{base_url}{API}", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def logged_in(browser, base_url: str, token: str):
    """A fresh browser context (its own cookie jar) logged in through the login form."""
    context = browser.new_context()
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{base_url}/leaderboard")
    assert page.url.startswith(f"{base_url}/login?next="), "unauthenticated pages must redirect to /login"
    page.fill("input[name=token]", token)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(f"{base_url}/leaderboard")
    cookie = next(c for c in context.cookies() if c["name"] == "aar_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    return context, page


def unreviewed_runs(base_url: str, admin_token: str) -> list[dict]:
    with api(base_url, admin_token) as client:
        runs = client.get("/runs", params={"status": "done", "limit": 500}).json()
    return [r for r in runs if not r["baseline"] and r["review_state"] == "unreviewed"]


def test_every_page_renders_with_data_and_a_drawn_chart(browser, base_url, finished_campaign):
    fc = finished_campaign
    with api(base_url, fc.admin_token) as client:
        board = client.get("/leaderboard").json()
        post = client.get("/posts", params={"limit": 1}).json()["items"]
    context, page = logged_in(browser, base_url, fc.admin_token)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    assert page.locator("table#leaderboard tbody tr[data-run-id]").count() == len(board)
    assert board, "a finished campaign has done runs"

    page.goto(f"{base_url}/")
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('progress-chart'))")
    names = page.locator("table#researchers tr[data-researcher]").evaluate_all(
        "rows => rows.map(r => r.dataset.researcher)"
    )
    assert fc.agent_name in names
    chart = page.evaluate(
        """() => {
            const canvas = document.getElementById('progress-chart');
            const c = Chart.getChart(canvas);
            const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let inked = 0;
            for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) inked++;
            return {labels: c.data.datasets.map(d => d.label),
                    points: c.data.datasets.map(d => d.data.length), width: canvas.width, inked: inked};
        }"""
    )
    public = [((r["results"] or {}).get(r["task"]) or {}).get("public") or {} for r in board]
    scored = [r for r, p in zip(board, public, strict=True) if not r["baseline"] and p.get("pgr") is not None]
    assert sorted(chart["labels"]) == sorted(names)
    assert sum(chart["points"]) == len(scored) > 0
    assert chart["width"] > 0 and chart["inked"] > 1000, "the chart must actually be drawn"

    pages = ["/forum", f"/researchers/{fc.agent_name}", f"/researchers/{fc.agent_name}/transcript", "/review"]
    pages += [f"/forum/posts/{p['id']}" for p in post]
    for path in pages:
        response = page.goto(f"{base_url}{path}")
        assert response.status == 200, path
        assert page.locator("main h1").count() == 1, path
    page.goto(f"{base_url}/researchers/{fc.agent_name}")
    assert page.locator("#transcript li").count() > 0, "an admin sees the researcher's transcript"
    assert page.locator("#researcher-status").inner_text().strip()
    assert not problems, problems  # no script errors, no CSP violations, no failed loads
    context.close()


def test_forum_search_finds_the_matching_post(browser, base_url, finished_campaign):
    fc = finished_campaign
    word = f"zebra{uuid.uuid4().hex[:8]}"
    with api(base_url, fc.agent_token) as client:
        made = client.post(
            "/posts", json={"title": f"Finding {word}", "body": "searchable", "kind": "insight"}
        )
        assert made.status_code == 201
    context, page = logged_in(browser, base_url, fc.agent_token)
    page.goto(f"{base_url}/forum")
    page.fill("input[name=q]", word)
    page.press("input[name=q]", "Enter")
    page.wait_for_url(re.compile(r".*/forum\?q="))
    hits = page.locator("ul.posts li[data-post-id]")
    assert hits.count() == 1 and word in hits.first.inner_text()
    hits.first.locator("a.title").click()
    page.wait_for_url(f"{base_url}/forum/posts/{made.json()['id']}")
    assert word in page.locator("#post-title").inner_text()
    context.close()


def test_an_agent_is_refused_the_review_queue_and_forged_posts(browser, base_url, finished_campaign):
    fc = finished_campaign
    target = unreviewed_runs(base_url, fc.admin_token)[0]["id"]
    context, page = logged_in(browser, base_url, fc.agent_token)
    assert page.locator("nav a[href='/review']").count() == 0
    response = page.goto(f"{base_url}/review")
    assert response.status == 403 and "admins only" in page.locator("#error-message").inner_text()
    page.goto(f"{base_url}/")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    # a forged form post from a page of the dashboard itself, with the agent's own valid CSRF value
    status = page.evaluate(
        """async ([url, csrf]) => {
            const body = new URLSearchParams({csrf: csrf, verdict: 'verified', reason: 'trust me'});
            return (await fetch(url, {method: 'POST', body: body, redirect: 'manual'})).status;
        }""",
        [f"/review/runs/{target}", csrf],
    )
    assert status == 403
    # and one from another origin, carrying the browser's cookie
    forged = context.request.post(
        f"{base_url}/review/runs/{target}",
        form={"csrf": csrf, "verdict": "verified", "reason": "x"},
        headers={"Origin": "http://evil.example"},
        max_redirects=0,
    )
    assert forged.status == 403
    assert target in [r["id"] for r in unreviewed_runs(base_url, fc.admin_token)]
    context.close()


def test_an_admin_verifies_a_run_from_the_review_queue(browser, base_url, finished_campaign):
    fc = finished_campaign
    context, page = logged_in(browser, base_url, fc.admin_token)
    page.goto(f"{base_url}/review")
    item = page.locator("section.review-item").first
    run_id = item.get_attribute("data-run-id")
    item.locator("input[name=reason]").fill("looked at the code: a fair method")
    item.locator("button[value=verified]").click()
    page.wait_for_url(re.compile(rf".*/review\?reviewed={run_id}&verdict=verified$"))
    assert f"Run {run_id} marked verified" in page.locator("#notice").inner_text()
    assert page.locator(f"section.review-item[data-run-id='{run_id}']").count() == 0
    page.goto(f"{base_url}/leaderboard")
    assert page.locator(f"tr[data-run-id='{run_id}'] td.review").inner_text().strip() == "verified"
    with api(base_url, fc.admin_token) as client:
        assert client.get(f"/runs/{run_id}").json()["review_state"] == "verified"
    context.close()
