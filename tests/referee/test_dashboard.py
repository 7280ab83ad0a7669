"""The human dashboard, in process: authentication, CSRF, escaping, transcript visibility, page data."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from sqlalchemy import select

from aar.referee.dashboard.render import script_json
from aar.referee.dashboard.security import COOKIE, safe_next
from aar.referee.db import Agent, Flag, Run

from .conftest import HELD, HOME, VISIBLE

API = "/api/v1"
HTML = {"Accept": "text/html,application/xhtml+xml"}
XSS = "<script>alert(1)</script>"


VIS = VISIBLE

# Exact numbers, each with a 3-decimal signature ("%.3f", what the pages print) no released number has:
# public, private and held-out PGRs per run, and the transfer accuracy. Researchers must see none.
EXACT = {  # run key -> (public PGR, private PGR, held-out PGR)
    "a1": (0.2137, 0.137, 0.099),
    "a2": (0.1049, 0.061, 0.088),
    "a3": (0.5049, 0.444, 0.333),
    "b1": (None, None, 0.0712),
    "bq": (0.9, 0.9, 0.9),
}
RELEASED = {"a1": 0.21, "a2": None, "a3": 0.5, "b1": None, "bq": None}  # the official Ladder's answers
TRANSFER_ACC = 0.8123
HIDDEN = ["0.214", "0.105", "0.505", "0.137", "0.061", "0.444", "0.099", "0.088", "0.333", "0.071"]
HIDDEN += ["0.812", "0.2137", "0.5049", HELD]


def part(pgr: float | None) -> dict:
    ci = [None, None] if pgr is None else [pgr - 0.1, pgr + 0.1]
    return {
        "pgr": pgr,
        "pgr_ci": ci,
        "transfer_acc": TRANSFER_ACC,
        "transfer_acc_ci": [0.75, 0.85],
        "weak_acc": 0.7,
        "ceiling_acc": 0.9,
        "gap": 0.2,
        "transfer_seed_std": 0.0191,
        "n_items": 100,
        "n_seeds": 2,
    }


def results(public: float | None, private: float | None, held: float | None, vis: bool = False) -> dict:
    """A run's exact results in the contract's TaskResult shape (what only admins may see)."""
    out = {
        HOME: {"role": "home", "public": part(public), "private": part(private)},
        HELD: {"role": "held_out", "private": part(held)},
    }
    if vis:
        out[VIS] = {"role": "visible", "public": part(0.6061), "private": part(0.5151)}
    return out


def released(pgr: float | None, best: float | None = 0.5, vis: bool = False) -> dict:
    """What researchers were told (the contract's Released shape), per home/visible task."""
    ci = None if pgr is None else [round(pgr - 0.1, 2), round(pgr + 0.1, 2)]
    home = {
        "pgr": pgr,
        "pgr_ci": ci,
        "improved": pgr is not None,
        "best_pgr": pgr or best,
        "resolution": 0.01,
    }
    out = {HOME: home}
    if vis:
        out[VIS] = {"pgr": 0.6, "pgr_ci": [0.5, 0.7], "improved": True, "best_pgr": 0.6, "resolution": 0.01}
    return out


def add_run(env, author: str, key: str, minutes: int, vis: bool = False, **fields) -> int:
    """A finished official run, written straight to the table (the dashboard only reads runs)."""
    with env.ref.db.write() as s:
        agent_id = s.scalar(select(Agent.id).where(Agent.name == author))
        run = Run(
            agent_id=agent_id,
            commit="c0ffee" * 6 + "abcd",
            idea_path=f"ideas/{author}_{minutes}.py",
            task=HOME,
            seeds=2,
            day="2026-01-01",
            status=fields.pop("status", "done"),
            results=results(*EXACT[key], vis=vis),
            released=released(RELEASED[key], vis=vis),
            finished_at=dt.datetime(2026, 1, 1, 12, 0) + dt.timedelta(minutes=minutes),
            **fields,
        )
        s.add(run)
        s.flush()
        return run.id


def bearer(env, name: str, admin: bool = False) -> dict[str, str]:
    return {**env.agent(name, admin=admin), **HTML}


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]{64})"', html).group(1)


def write_transcript(root, name: str, secret_text: str, status: str | None = None) -> None:
    state = root / name / "state"
    state.mkdir(parents=True)
    records = [
        {"type": "session_start", "t": 1.0e9, "session": 1, "backend": "scripted", "model": "scripted"},
        {"type": "message", "t": 1.0e9 + 1, "session": 1, "message": {"role": "user", "content": "go"}},
        {
            "type": "message",
            "t": 1.0e9 + 2,
            "session": 1,
            "message": {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": secret_text},
                    {"type": "tool_use", "id": "t1", "name": "shell", "input": {"cmd": "ls " + "x" * 3000}},
                ],
            },
        },
        {
            "type": "usage",
            "t": 1.0e9 + 3,
            "session": 1,
            "model": "claude-haiku-4-5",
            "usage": {"input": 1_000_000, "output": 0},
            "cost_usd": 1.0,  # priced by the researcher when spent: the referee has no price table
            "total_usd": 1.0,
        },
        {"type": "tool_result", "t": 1.0e9 + 4, "session": 1, "id": "t1", "name": "shell", "content": "ok"},
        {"type": "session_end", "t": 1.0e9 + 5, "session": 1, "reason": "dollar budget spent"},
    ]
    (state / "transcript.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if status is not None:
        info = {"name": name, "direction": "try soft labels", "backend": "anthropic", "status": status}
        (root / name / "researcher.json").write_text(json.dumps(info))


@pytest.fixture
def dash(make_env, tmp_path):
    """A referee with an admin, two researchers (one with researcher.json), runs and transcripts."""
    root = tmp_path / "researchers"
    env = make_env(researchers_dir=root, campaign="camp <b>one</b>")
    env.agent("root", admin=True)
    env.agent("alice")
    env.agent("bob")
    write_transcript(root, "alice", "alice's private plan", status="running")
    write_transcript(root, "bob", "bob's private plan")
    env.runs = {
        "a1": add_run(env, "alice", "a1", 1),
        "a2": add_run(env, "alice", "a2", 2),
        "a3": add_run(env, "alice", "a3", 3),
        "b1": add_run(env, "bob", "b1", 4),
        "bq": add_run(env, "bob", "bq", 5, status="queued"),
    }
    return env


def test_unauthenticated_browser_gets_login_redirect_and_scripts_get_401(dash):
    r = dash.client.get("/leaderboard?x=1", headers=HTML, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fleaderboard%3Fx%3D1"
    plain = dash.client.get("/", follow_redirects=False)
    assert plain.status_code == 401 and plain.headers["content-type"].startswith("text/html")
    bad = dash.client.get("/", headers={"Authorization": "Bearer aar_nope", **HTML})
    assert bad.status_code == 401 and "unknown token" in bad.text
    assert dash.client.get("/login").status_code == 200
    assert dash.client.get("/static/vendor/chart.umd.min.js").status_code == 200


def test_login_sets_a_strict_httponly_cookie_and_logout_clears_it(dash):
    token = dash.tokens["alice"]
    wrong = dash.client.post("/login", data={"token": "aar_wrong", "next": "/forum"})
    assert wrong.status_code == 401 and "Unknown token" in wrong.text
    r = dash.client.post("/login", data={"token": token, "next": "//evil.example/x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert f"{COOKIE}={token}" in cookie and "HttpOnly" in cookie and "Path=/" in cookie
    assert "samesite=strict" in cookie.lower()
    page = dash.client.get("/", headers={"Cookie": f"{COOKIE}={token}"})
    assert page.status_code == 200 and "alice" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    cross = dash.client.post("/login", data={"token": token}, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403
    out = dash.client.post(
        "/logout",
        data={"csrf": csrf_of(page.text)},
        headers={"Cookie": f"{COOKIE}={token}"},
        follow_redirects=False,
    )
    assert out.status_code == 303 and f'{COOKIE}=""' in out.headers["set-cookie"]
    forged = dash.client.post("/logout", data={"csrf": "0" * 64}, headers={"Cookie": f"{COOKIE}={token}"})
    assert forged.status_code == 403


def test_safe_next_only_allows_local_paths():
    assert safe_next("/forum?q=a") == "/forum?q=a"
    for bad in ("//evil.example", "https://evil.example", "/\\evil.example", "evil", None, "/x\ny"):
        assert safe_next(bad) == "/"


def test_agents_are_refused_the_review_queue_and_its_forms(dash):
    page = dash.client.get("/review", headers=bearer(dash, "alice"))
    assert page.status_code == 403 and "admins only" in page.text and "alice" in page.text
    csrf = csrf_of(dash.client.get("/", headers=bearer(dash, "alice")).text)
    post = dash.client.post(
        f"/review/runs/{dash.runs['a3']}",
        data={"csrf": csrf, "verdict": "verified"},
        headers=bearer(dash, "alice"),
    )
    assert post.status_code == 403
    with dash.ref.db.read() as s:
        assert s.get(Run, dash.runs["a3"]).review_state == "unreviewed"
    assert "/review" not in dash.client.get("/", headers=bearer(dash, "alice")).text.split("<main>")[0]


def test_review_posts_need_a_valid_csrf_token_and_the_same_origin(dash):
    h = bearer(dash, "root", admin=True)
    run = dash.runs["a3"]
    page = dash.client.get("/review", headers=h)
    assert page.status_code == 200 and f'data-run-id="{run}"' in page.text
    assert f'data-run-id="{dash.runs["bq"]}"' not in page.text  # queued: nothing to review yet
    csrf = csrf_of(page.text)
    url = f"/review/runs/{run}"
    assert dash.client.post(url, data={"verdict": "verified"}, headers=h).status_code == 403
    assert dash.client.post(url, data={"verdict": "verified", "csrf": "f" * 64}, headers=h).status_code == 403
    other = csrf_of(dash.client.get("/", headers=bearer(dash, "alice")).text)
    assert dash.client.post(url, data={"verdict": "verified", "csrf": other}, headers=h).status_code == 403
    cross = {**h, "Origin": "http://evil.example"}
    assert dash.client.post(url, data={"verdict": "verified", "csrf": csrf}, headers=cross).status_code == 403
    site = {**h, "Sec-Fetch-Site": "cross-site"}
    assert dash.client.post(url, data={"verdict": "verified", "csrf": csrf}, headers=site).status_code == 403
    no_reason = dash.client.post(url, data={"verdict": "rejected", "csrf": csrf, "reason": " "}, headers=h)
    assert no_reason.status_code == 422 and "reason is required" in no_reason.text
    with dash.ref.db.read() as s:
        assert s.get(Run, run).review_state == "unreviewed"
    same = {**h, "Origin": "http://testserver"}
    ok = dash.client.post(
        url, data={"verdict": "verified", "csrf": csrf}, headers=same, follow_redirects=False
    )
    assert ok.status_code == 303 and ok.headers["location"] == f"/review?reviewed={run}&verdict=verified"
    assert f"Run {run} marked verified" in dash.client.get(ok.headers["location"], headers=h).text
    with dash.ref.db.read() as s:
        assert s.get(Run, run).review_state == "verified"
    board = dash.client.get("/leaderboard", headers=h).text
    row = board.split(f'data-run-id="{run}"')[1].split("</tr>")[0]
    assert "verified" in row
    queued = dash.client.post(
        f"/review/runs/{dash.runs['bq']}", data={"verdict": "verified", "csrf": csrf}, headers=h
    )
    assert queued.status_code == 409


def test_flags_show_in_the_queue_and_close_with_a_resolution(dash):
    h = bearer(dash, "root", admin=True)
    with dash.ref.db.write() as s:
        flag = Flag(
            kind="pgr_above_one",
            subject_type="run",
            subject_id=dash.runs["a1"],
            agent_id=None,
            task=HOME,
            evidence={"note": XSS},
        )
        s.add(flag)
        s.flush()
        flag_id = flag.id
    page = dash.client.get("/review", headers=h).text
    assert f'data-flag-id="{flag_id}"' in page and XSS not in page and "pgr_above_one" in page
    assert page.index(f'data-run-id="{dash.runs["a1"]}"') < page.index(f'data-run-id="{dash.runs["a3"]}"')
    csrf = csrf_of(page)
    url = f"/review/flags/{flag_id}/close"
    assert dash.client.post(url, data={"csrf": csrf, "resolution": ""}, headers=h).status_code == 422
    done = dash.client.post(
        url, data={"csrf": csrf, "resolution": "checked"}, headers=h, follow_redirects=False
    )
    assert done.status_code == 303
    with dash.ref.db.read() as s:
        assert s.get(Flag, flag_id).state == "closed" and s.get(Flag, flag_id).resolution == "checked"
    assert dash.client.post(url, data={"csrf": csrf, "resolution": "again"}, headers=h).status_code == 409


def test_post_titles_and_bodies_are_escaped_everywhere(dash):
    h = dash.agent("alice")
    post = dash.client.post(
        f"{API}/posts",
        headers=h,
        json={"title": XSS, "body": "<img src=x onerror=alert(2)>", "kind": "insight", "tags": ["<i>t</i>"]},
    ).json()
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for url in ("/forum", f"/forum/posts/{post['id']}", "/researchers/alice", "/forum?q=alert"):
        page = dash.client.get(url, headers=bearer(dash, "bob"))
        assert page.status_code == 200, url
        assert XSS not in page.text and escaped in page.text, url
        assert "<img" not in page.text and "<i>t</i>" not in page.text, url
    overview = dash.client.get("/", headers=bearer(dash, "bob")).text
    assert "camp &lt;b&gt;one&lt;/b&gt;" in overview and "<b>one</b>" not in overview


def test_script_json_cannot_close_its_script_tag():
    text = script_json({"label": "</script><script>alert(1)</script>", "amp": "&"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text)["label"] == "</script><script>alert(1)</script>"


def test_transcripts_are_visible_to_admins_and_their_researcher_only(dash):
    own = dash.client.get("/researchers/alice", headers=bearer(dash, "alice"))
    assert own.status_code == 200 and "alice&#39;s private plan" in own.text
    assert "shell" in own.text and "more characters" in own.text  # tool call shown, input truncated
    assert "try soft labels" in own.text and "running" in own.text  # researcher.json wins
    other = dash.client.get("/researchers/alice", headers=bearer(dash, "bob"))
    assert other.status_code == 200 and "private plan" not in other.text
    assert 'id="transcript-hidden"' in other.text
    assert dash.client.get("/researchers/alice/transcript", headers=bearer(dash, "bob")).status_code == 403
    full = dash.client.get("/researchers/bob/transcript", headers=bearer(dash, "root", admin=True))
    assert full.status_code == 200 and "bob&#39;s private plan" in full.text
    admin_view = dash.client.get("/researchers/bob", headers=bearer(dash, "root", admin=True)).text
    assert "stopped: dollar budget spent" in admin_view  # no researcher.json: status from the transcript
    assert "$1.0000" in admin_view  # the recorded cost of 1M input tokens of claude-haiku-4-5 at $1/M


def test_unknown_researchers_are_404_and_names_never_become_paths(dash):
    h = bearer(dash, "root", admin=True)
    for url in (
        "/researchers/nobody",
        "/researchers/%2e%2e",
        "/researchers/%2e%2e%2fetc",
        "/researchers/Alice",
    ):
        assert dash.client.get(url, headers=h).status_code == 404, url
    missing = dash.client.get("/researchers/nobody", headers=h)
    assert missing.headers["content-type"].startswith("text/html") and "no researcher" in missing.text
    assert dash.client.get("/researchers/nobody/transcript", headers=h).status_code == 404
    assert dash.client.get("/forum/posts/999", headers=h).status_code == 404
    assert dash.client.get("/forum/posts/abc", headers=h).status_code == 422


def test_overview_lists_researchers_and_charts_the_running_best(dash):
    page = dash.client.get("/", headers=bearer(dash, "bob")).text
    assert 'data-researcher="alice"' in page and 'data-researcher="bob"' in page
    assert 'data-researcher="root"' not in page  # admins are not researchers
    data = json.loads(re.search(r'id="progress-data">(.*?)</script>', page, re.S).group(1))
    series = {d["label"]: d["points"] for d in data["datasets"]}
    assert [p["y"] for p in series["alice"]] == [0.21, 0.5]  # running max of what was released
    assert series["bob"] == []  # nothing released, queued run not done
    assert "released" in data["y_label"]
    assert "0.500" in page.split('data-researcher="alice"')[1].split("</tr>")[0]
    admin = dash.client.get("/", headers=bearer(dash, "root", admin=True)).text
    data = json.loads(re.search(r'id="progress-data">(.*?)</script>', admin, re.S).group(1))
    series = {d["label"]: d["points"] for d in data["datasets"]}
    assert [p["y"] for p in series["alice"]] == [0.2137, 0.2137, 0.5049]  # the exact public part
    assert series["bob"] == []  # PGR undefined
    best = admin.split('data-researcher="alice"')[1].split("</tr>")[0]
    assert "0.505" in best and "0.444" in best and "0.333" in best  # public / private / held out


def test_leaderboard_has_one_row_per_done_run_best_first(dash):
    page = dash.client.get("/leaderboard", headers=bearer(dash, "bob")).text
    ids = [int(x) for x in re.findall(r'<tr data-run-id="(\d+)"', page)]
    # by the released numbers: a2 and b1 released nothing and rank last, by id
    assert ids == [dash.runs["a3"], dash.runs["a1"], dash.runs["a2"], dash.runs["b1"]]
    assert "not released" in page and HELD not in page
    admin = dash.client.get("/leaderboard", headers=bearer(dash, "root", admin=True)).text
    ids = [int(x) for x in re.findall(r'<tr data-run-id="(\d+)"', admin)]
    assert ids == [dash.runs["a3"], dash.runs["a1"], dash.runs["a2"], dash.runs["b1"]]
    assert f"{HELD} PGR" in admin and "private" in admin
    row = admin.split(f'data-run-id="{dash.runs["a1"]}"')[1].split("</tr>")[0]
    assert "0.214" in row and "0.137" in row and "0.077" in row and "0.099" in row  # drop 0.2137 - 0.137


def test_forum_search_and_thread_page(dash):
    h = dash.agent("alice")
    cited = dash.runs["a3"]
    p1 = dash.client.post(
        f"{API}/posts",
        headers=h,
        json={"title": "soft labels help", "body": "b", "kind": "result", "cites": [cited]},
    ).json()
    dash.client.post(f"{API}/posts", headers=h, json={"title": "other", "body": "nothing", "kind": "insight"})
    dash.client.post(
        f"{API}/posts/{p1['id']}/comments", headers=dash.agent("bob"), json={"body": "nice & good"}
    )
    listing = dash.client.get("/forum", headers=bearer(dash, "bob")).text
    assert listing.index(">other<") < listing.index(">soft labels help<")  # newest first
    found = dash.client.get("/forum", params={"q": "soft"}, headers=bearer(dash, "bob")).text
    assert "soft labels help" in found and ">other<" not in found
    thread = dash.client.get(f"/forum/posts/{p1['id']}", headers=bearer(dash, "bob")).text
    assert "nice &amp; good" in thread and f'data-run-id="{cited}"' in thread and "0.500" in thread
    admin = dash.client.get(f"/forum/posts/{p1['id']}", headers=bearer(dash, "root", admin=True)).text
    assert "0.500" in admin and "0.505" not in admin  # a post shows released numbers to everyone


def test_pages_work_without_a_researchers_dir(make_env):
    env = make_env()
    env.agent("carol")
    h = bearer(env, "carol")
    assert env.client.get("/", headers=h).status_code == 200
    page = env.client.get("/researchers/carol", headers=h)
    assert page.status_code == 200 and "no researchers dir" in page.text


def test_overview_reloads_itself_only_while_someone_is_running(dash, tmp_path):
    refresh = '<meta http-equiv="refresh"'
    assert refresh in dash.client.get("/", headers=bearer(dash, "bob")).text  # alice is running
    info = tmp_path / "researchers" / "alice" / "researcher.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "status": "finished"}))
    assert refresh not in dash.client.get("/", headers=bearer(dash, "bob")).text


def test_researchers_see_only_released_numbers_on_every_page_and_admins_see_all(dash):
    """A researcher's login, on every page it may open, shows no exact, private or held-out number and
    never a held-out task's name; an admin's shows them all (the visible task's too)."""
    dash.runs["av"] = add_run(dash, "alice", "a3", 6, vis=True)
    h = dash.agent("alice")
    post = dash.client.post(
        f"{API}/posts",
        headers=h,
        json={"title": "t", "body": "b", "kind": "result", "cites": list(dash.runs.values())},
    ).json()
    pages = ["/", "/leaderboard", "/forum", f"/forum/posts/{post['id']}", "/researchers/alice"]
    pages += ["/researchers/bob", "/researchers/alice/transcript"]
    for url in pages:
        page = dash.client.get(url, headers=bearer(dash, "alice"))
        assert page.status_code == 200, url
        for hidden in HIDDEN + ["0.606", "0.515"]:
            assert hidden not in page.text, (url, hidden)
    assert dash.client.get("/review", headers=bearer(dash, "alice")).status_code == 403
    board = dash.client.get("/leaderboard", headers=bearer(dash, "alice")).text
    assert f"{VIS} PGR, released" in board and "0.600" in board  # the visible task's released score
    overview = dash.client.get("/", headers=bearer(dash, "alice")).text
    assert f"<code>{VIS}</code>" in overview and "held out:" not in overview
    admin = bearer(dash, "root", admin=True)
    seen = "".join(dash.client.get(url, headers=admin).text for url in [*pages, "/review"])
    for shown in HIDDEN + ["0.606", "0.515"]:
        assert shown in seen, shown
    assert f"held out: <code>{HELD}</code>" in dash.client.get("/", headers=admin).text
