"""The code store: bundles in, own ref namespace only, unsafe trees refused, tarballs out."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

API = "/api/v1"
ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str, input: bytes | None = None) -> str:
    return (
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=ENV, input=input)
        .stdout.decode()
        .strip()
    )


def make_repo(path: Path, files: dict[str, str], branch: str = "main") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", branch)
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "idea")
    return path


def bundle(repo: Path, *refs: str) -> bytes:
    out = repo / ".." / f"{repo.name}.bundle"
    git(repo, "bundle", "create", "-q", str(out), *(refs or ("--all",)))
    return out.read_bytes()


def push(env, name: str, data: bytes):
    return env.client.post(
        f"{API}/code", content=data, headers={**env.agent(name), "content-type": "application/octet-stream"}
    )


def test_push_fetch_roundtrip_and_namespacing(env, tmp_path):
    repo = make_repo(tmp_path / "a", {"ideas/idea.py": "def run(ctx):\n    return ctx.weak * 0 + 0.5\n"})
    r = push(env, "alice", bundle(repo))
    assert r.status_code == 200, r.text
    (pushed,) = r.json()
    assert pushed == {"ref": "refs/agents/alice/heads/main", "commit": git(repo, "rev-parse", "HEAD")}
    tar = env.client.get(f"{API}/code/{pushed['commit']}", headers=env.agent("bob"))  # any agent may fetch
    assert tar.status_code == 200 and tar.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(tar.content)) as t:
        assert any(n.endswith("ideas/idea.py") for n in t.getnames())
    # a bundle naming another agent's ref lands in the pusher's own namespace
    git(repo, "update-ref", "refs/agents/bob/heads/main", "HEAD")
    r = push(env, "alice", bundle(repo, "refs/agents/bob/heads/main"))
    assert [p["ref"] for p in r.json()] == ["refs/agents/alice/agents/bob/heads/main"]
    refs = env.client.get(f"{API}/code/refs", headers=env.agent("bob")).json()
    assert all(x["agent"] == "alice" for x in refs)
    # and only the owner may delete its refs
    assert env.client.delete(f"{API}/code/refs/alice/heads/main", headers=env.agent("bob")).status_code == 403
    assert (
        env.client.delete(f"{API}/code/refs/alice/heads/main", headers=env.agent("alice")).status_code == 204
    )


def _tree_commit(repo: Path, entries: list[tuple[str, str, str]]) -> str:
    """A commit whose root tree has exactly these (mode, name, object sha) entries, even illegal ones."""
    raw = b"".join(f"{mode} {name}".encode() + b"\0" + bytes.fromhex(sha) for mode, name, sha in entries)
    tree = git(repo, "hash-object", "-t", "tree", "-w", "--literally", "--stdin", input=raw)
    return git(repo, "commit-tree", tree, "-m", "crafted")


def _blob(repo: Path, content: bytes) -> str:
    return git(repo, "hash-object", "-w", "--stdin", input=content)


@pytest.mark.parametrize("case", ["symlink_abs", "symlink_up", "dotdot", "dotgit", "submodule", "big_blob"])
def test_unsafe_trees_are_rejected(make_env, tmp_path, case):
    env = make_env(max_blob_bytes=10_000)
    repo = make_repo(tmp_path / "r", {"ok.py": "x = 1\n"})
    ok = _blob(repo, b"x = 1\n")
    entries = {
        "symlink_abs": [("120000", "labels", _blob(repo, b"/etc/passwd"))],
        "symlink_up": [("120000", "labels", _blob(repo, b"../../data/labels.npz"))],
        "dotdot": [("100644", "..", ok)],
        "dotgit": [("100644", ".git", ok)],
        "submodule": [("160000", "sub", git(repo, "rev-parse", "HEAD"))],
        "big_blob": [("100644", "weights.bin", _blob(repo, os.urandom(20_000)))],
    }[case]
    commit = _tree_commit(repo, [("100644", "ok.py", ok), *entries])
    git(repo, "update-ref", "refs/heads/evil", commit)
    r = push(env, "mallory", bundle(repo, "refs/heads/evil"))
    assert r.status_code == 422, (case, r.status_code, r.text)
    assert r.json()["detail"]
    assert (
        env.client.get(f"{API}/code/refs", params={"agent": "mallory"}, headers=env.agent("mallory")).json()
        == []
    )
    assert env.client.get(f"{API}/code/{commit}", headers=env.agent("bob")).status_code == 404


def test_bad_bundles_and_shas_are_4xx(env):
    for data in (b"not a bundle", b"# v2 git bundle\n", b"\x00" * 1000):
        r = push(env, "alice", data)
        assert r.status_code == 422 and r.json()["detail"]
    assert env.client.post(f"{API}/code", headers=env.agent("alice")).status_code == 422
    assert env.client.get(f"{API}/code/{'a' * 40}", headers=env.agent("alice")).status_code == 404
    assert env.client.get(f"{API}/code/not-a-sha", headers=env.agent("alice")).status_code == 422
