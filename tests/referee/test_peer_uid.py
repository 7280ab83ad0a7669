"""The referee's Unix socket checks the peer's uid: a researcher's token works only from that
researcher's uid, and its own uid needs no token (so none sits in the sandbox's environment)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from aar.referee.auth import add_agent, bind_uid
from aar.referee.config import RefereeConfig
from aar.referee.db import Database
from aar.sandbox import ensure_user

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("curl") is None, reason="needs root (uids) and curl"
)


def _curl(sock: Path, path: str, uid: int | None, token: str | None) -> tuple[int, dict]:
    cmd = ["curl", "-s", "-w", "\n%{http_code}", "--unix-socket", str(sock), f"http://referee{path}"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    who = {"user": uid, "group": uid, "extra_groups": []} if uid is not None else {}
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"}, **who
    )
    body, _, code = out.stdout.rpartition("\n")
    return int(code), json.loads(body) if body else {}


@pytest.fixture
def served(data_dir, fresh_db_url):
    db_url = fresh_db_url("peer")
    db = Database(db_url)
    db.create_all()
    uids = {name: ensure_user(f"aar-test-{name}") for name in ("alice", "bob")}
    tokens = {name: add_agent(db, name) for name in uids}
    for name, uid in uids.items():
        bind_uid(db, name, uid)
    tokens["carol"] = add_agent(db, "carol")  # bound to no uid
    db.dispose()
    sockdir = Path(tempfile.mkdtemp(prefix="aar-peer-"))
    sockdir.chmod(0o755)
    sock = sockdir / "referee.sock"
    RefereeConfig.load(data_dir)  # the session's data dir already holds the referee config
    proc = subprocess.Popen(
        [sys.executable, "-m", "aar.cli", "referee", "serve", "--data", str(data_dir), "--db", db_url]
        + ["--uds", str(sock), "--executor", "none"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not sock.exists() or _curl(sock, "/api/v1/health", None, None)[0] != 200:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        yield sock, uids, tokens
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(sockdir, ignore_errors=True)


def test_a_token_is_accepted_only_from_its_researchers_uid(served):
    sock, uids, tokens = served
    assert _curl(sock, "/api/v1/me", uids["alice"], tokens["alice"]) == (
        200,
        {"name": "alice", "is_admin": False},
    )
    # bob's sandbox with alice's stolen token: refused, whatever it asks
    code, body = _curl(sock, "/api/v1/me", uids["bob"], tokens["alice"])
    assert code == 403 and "another researcher" in body["detail"]
    assert _curl(sock, "/api/v1/posts", uids["bob"], tokens["alice"])[0] == 403
    # an unbound researcher's token from a bound uid is refused too
    assert _curl(sock, "/api/v1/me", uids["bob"], tokens["carol"])[0] == 403
    # root (the lab, which holds every token) may use any
    assert _curl(sock, "/api/v1/me", None, tokens["alice"])[1]["name"] == "alice"


def test_a_researchers_own_uid_needs_no_token(served):
    sock, uids, _tokens = served
    assert _curl(sock, "/api/v1/me", uids["bob"], None) == (200, {"name": "bob", "is_admin": False})
    assert _curl(sock, "/api/v1/me", None, None)[0] == 401  # root without a token is nobody
    nobody = ensure_user("aar-test-nobody")
    assert _curl(sock, "/api/v1/me", nobody, None)[0] == 401
