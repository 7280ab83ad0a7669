"""Hostile bundles against the code store: a few kilobytes that expand to a million files or a
terabyte, symlinks of every kind, and unbudgeted fetches. Each is refused before any ref moves."""

from __future__ import annotations

import resource
import time
from pathlib import Path

from sqlalchemy import select

from aar.referee.db import AuditEntry

from .test_codestore import git, push

API = "/api/v1"


def _tree(repo: Path, entries: list[tuple[str, str, str]]) -> str:
    """mktree from (mode, sha, name); the kind follows the mode."""
    lines = "".join(
        f"{mode} {'tree' if mode == '040000' else 'blob'} {sha}\t{name}\n" for mode, sha, name in entries
    )
    return git(repo, "mktree", input=lines.encode())


def _bundle_of_tree(repo: Path, tree: str) -> bytes:
    commit = git(repo, "commit-tree", tree, "-m", "bomb")
    git(repo, "update-ref", "refs/heads/main", commit)
    out = repo.parent / f"{repo.name}.bundle"
    git(repo, "bundle", "create", "-q", str(out), "refs/heads/main")
    return out.read_bytes()


def _repo(tmp_path: Path, name: str) -> Path:
    repo = tmp_path / name
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    return repo


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_small_bundle_that_expands_to_a_million_files_is_refused_quickly(env, tmp_path):
    repo = _repo(tmp_path, "bomb")
    blob = git(repo, "hash-object", "-w", "--stdin", input=b"x = 1\n")
    inner = _tree(repo, [("100644", blob, f"f{i:04d}") for i in range(1000)])
    outer = _tree(repo, [("040000", inner, f"d{i:04d}") for i in range(1000)])  # 10^6 files
    data = _bundle_of_tree(repo, outer)
    assert len(data) <= 64 * 1024
    before, start = _peak_rss_mb(), time.monotonic()
    r = push(env, "mallory", data)
    assert r.status_code == 422 and "more than 2000 files" in r.json()["detail"], r.text
    assert time.monotonic() - start < 20 and _peak_rss_mb() - before < 200
    assert (
        env.client.get(f"{API}/code/refs", params={"agent": "mallory"}, headers=env.agent("mallory")).json()
        == []
    )


def test_one_blob_behind_many_entries_passes_the_total_size_cap(env, tmp_path):
    repo = _repo(tmp_path, "wide")
    blob = git(repo, "hash-object", "-w", "--stdin", input=b"\0" * (1 << 20))
    tree = _tree(repo, [("100644", blob, f"f{i:03d}") for i in range(100)])  # 100 files, 100 MiB
    data = _bundle_of_tree(repo, tree)
    assert len(data) <= 64 * 1024
    r = push(env, "mallory", data)
    assert r.status_code == 422 and "add up to over" in r.json()["detail"], r.text
    assert (
        env.client.get(f"{API}/code/refs", params={"agent": "mallory"}, headers=env.agent("mallory")).json()
        == []
    )


def test_symlinks_are_refused_even_when_they_stay_inside_the_tree(env, tmp_path):
    repo = _repo(tmp_path, "links")
    target = git(repo, "hash-object", "-w", "--stdin", input=b"x = 1\n")
    inside = git(repo, "hash-object", "-w", "--stdin", input=b"idea.py")
    hop = git(repo, "hash-object", "-w", "--stdin", input=b"../b")  # a/l -> ../b, b -> ../..: escapes
    up = git(repo, "hash-object", "-w", "--stdin", input=b"..")
    a = _tree(repo, [("120000", hop, "l")])
    cases = {
        "in-tree link": _tree(repo, [("100644", target, "idea.py"), ("120000", inside, "alias.py")]),
        "chain of relative links": _tree(repo, [("040000", a, "a"), ("120000", up, "b")]),
    }
    for why, tree in cases.items():
        r = push(env, "mallory", _bundle_of_tree(repo, tree))
        assert r.status_code == 422 and "symlinks are not accepted" in r.json()["detail"], (why, r.text)


def test_fetching_code_is_budgeted_and_audited(make_env, tmp_path):
    from .test_codestore import bundle, make_repo

    env = make_env(code_fetches_per_day=3)
    repo = make_repo(tmp_path / "ok", {"idea.py": "def run(ctx):\n    return ctx.weak\n"})
    commit = push(env, "alice", bundle(repo)).json()[0]["commit"]
    codes = [env.client.get(f"{API}/code/{commit}", headers=env.agent("bob")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert env.client.get(f"{API}/code/{commit}", headers=env.agent("alice")).status_code == 200  # her own
    bob = env.ref.auth.identify(env.agent("bob")["Authorization"]).id
    with env.ref.db.read() as s:
        fetches = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "code.fetch", AuditEntry.agent_id == bob)
        ).all()
    assert len(fetches) == 3 and all(e.detail["sha"] == commit for e in fetches)
