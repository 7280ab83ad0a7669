"""Hostile bundles against the code store: a few kilobytes that expand to a million files or a
terabyte, symlinks of every kind, and unbudgeted fetches. Each is refused before any ref moves."""

from __future__ import annotations

import hashlib
import io
import resource
import struct
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

import pytest
from sqlalchemy import select

from aar.referee.db import AuditEntry

from .test_codestore import bundle, git, make_repo, push

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


def _mallory_refs(env) -> list:
    return env.client.get(
        f"{API}/code/refs", params={"agent": "mallory"}, headers=env.agent("mallory")
    ).json()


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
    assert _mallory_refs(env) == []


def test_one_blob_behind_many_entries_passes_the_total_size_cap(env, tmp_path):
    repo = _repo(tmp_path, "wide")
    blob = git(repo, "hash-object", "-w", "--stdin", input=b"\0" * (1 << 20))
    tree = _tree(repo, [("100644", blob, f"f{i:03d}") for i in range(100)])  # 100 files, 100 MiB
    data = _bundle_of_tree(repo, tree)
    assert len(data) <= 64 * 1024
    r = push(env, "mallory", data)
    assert r.status_code == 422 and "add up to over" in r.json()["detail"], r.text
    assert _mallory_refs(env) == []


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


# -- trees that expand without a single file, trees git cannot walk, and what a refusal leaves -------


def _raw_bundle(objects: list[tuple[str, bytes]], tip: str, ref: str = "refs/heads/main") -> bytes:
    """A v2 bundle written by hand (header, then a pack of ``(kind, body)`` objects): for trees too
    deep for git's own recursion to pack."""
    types = {"commit": 1, "tree": 2, "blob": 3}
    out = [b"PACK", struct.pack(">II", 2, len(objects))]
    for kind, body in objects:
        n = len(body)
        byte, n = (types[kind] << 4) | (n & 15), n >> 4
        head = bytearray()
        while n:
            head.append(byte | 0x80)
            byte, n = n & 0x7F, n >> 7
        head.append(byte)
        out += [bytes(head), zlib.compress(body)]
    pack = b"".join(out)
    return f"# v2 git bundle\n{tip} {ref}\n\n".encode() + pack + hashlib.sha1(pack).digest()


def _oid(kind: str, body: bytes) -> str:
    return hashlib.sha1(f"{kind} {len(body)}\0".encode() + body).hexdigest()


def _store_has(env, sha: str) -> bool:
    return env.ref.code._git("cat-file", "-e", sha, check=False).returncode == 0


@pytest.mark.timeout(90)
def test_a_trillion_empty_directories_are_refused_quickly(env, tmp_path):
    """No file at all, so a listing of files alone never ends (git walks 10^12 trees, printing
    nothing, holding the push lock): directories are listed and counted too."""
    repo = _repo(tmp_path, "dirs")
    tree = git(repo, "mktree", input=b"")  # the empty tree
    for _ in range(4):
        tree = _tree(repo, [("040000", tree, f"d{i:03d}") for i in range(1000)])
    data = _bundle_of_tree(repo, tree)
    assert len(data) <= 64 * 1024
    before, start = _peak_rss_mb(), time.monotonic()
    r = push(env, "mallory", data)
    assert r.status_code == 422 and "more than 2000 directories" in r.json()["detail"], r.text
    assert time.monotonic() - start < 20 and _peak_rss_mb() - before < 200
    assert _mallory_refs(env) == []


def test_a_tree_nested_thirty_thousand_deep_is_refused(env, tmp_path):
    """git's tree walk recurses: at this depth `ls-tree -r` dies of a stack overflow having printed
    nothing, which a check that reads only the listing takes for an empty tree. Depth and path length
    are capped, and a listing git did not finish is a refusal."""
    blob = b"x = 1\n"
    body = b"100644 idea.py\0" + bytes.fromhex(_oid("blob", blob))
    objects = [("blob", blob), ("tree", body)]
    for _ in range(30_000):
        body = b"40000 a\0" + bytes.fromhex(_oid("tree", objects[-1][1]))
        objects.append(("tree", body))
    commit = (
        f"tree {_oid('tree', body)}\nauthor m <m@m> 0 +0000\ncommitter m <m@m> 0 +0000\n\ndeep\n".encode()
    )
    objects.append(("commit", commit))
    r = push(env, "mallory", _raw_bundle(objects, _oid("commit", commit)))
    assert r.status_code == 422 and "levels deep; at most 32" in r.json()["detail"], r.text
    assert _mallory_refs(env) == []


def test_a_refused_push_leaves_no_object_in_the_store(env, tmp_path):
    repo = _repo(tmp_path, "leave")
    blob = git(repo, "hash-object", "-w", "--stdin", input=b"\1" * (1 << 20) + tmp_path.name.encode())
    tree = _tree(repo, [("100644", blob, f"f{i:03d}") for i in range(100)])
    r = push(env, "mallory", _bundle_of_tree(repo, tree))
    assert r.status_code == 422, r.text
    assert not _store_has(env, blob) and not _store_has(env, tree)
    assert not list(env.ref.code.path.glob("incoming-*"))  # the quarantine is gone too


def test_a_bundle_with_too_many_refs_is_refused(env, tmp_path):
    """Each ref costs a check and a ref in the store: at most 100 a push."""
    repo = make_repo(tmp_path / "refs", {"idea.py": "x = 1\n"})
    head = git(repo, "rev-parse", "HEAD")
    git(
        repo,
        "update-ref",
        "--stdin",
        input="".join(f"create refs/heads/b{i} {head}\n" for i in range(100)).encode(),
    )
    r = push(env, "mallory", bundle(repo))  # main and b0..b99
    assert r.status_code == 422 and "at most 100 a push" in r.json()["detail"], r.text
    assert _mallory_refs(env) == []


def test_an_incremental_bundle_pushes_and_a_checked_commit_checks_out(env, tmp_path):
    """The quarantine sees the store's objects and refs: a bundle that needs earlier commits works;
    and a normal commit still checks out (streamed through a temporary file) and fetches."""
    repo = make_repo(tmp_path / "inc", {"idea.py": "def run(ctx):\n    return ctx.weak\n"})
    base = push(env, "carol", bundle(repo)).json()[0]["commit"]
    (repo / "pkg").mkdir()
    (repo / "pkg" / "util.py").write_text("K = 2\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "more")
    r = push(env, "carol", bundle(repo, "main", f"^{base}"))
    assert r.status_code == 200, r.text
    head = r.json()[0]["commit"]
    assert head == git(repo, "rev-parse", "HEAD") != base
    dest = tmp_path / "co"
    env.ref.code.checkout(head, dest)
    assert (dest / "pkg" / "util.py").read_text() == "K = 2\n" and (dest / "idea.py").exists()
    tar = env.client.get(f"{API}/code/{head[:10]}", headers=env.agent("dave"))
    assert tar.status_code == 200 and int(tar.headers["content-length"]) == len(tar.content)
    with tarfile.open(fileobj=io.BytesIO(tar.content)) as t:
        assert f"{head[:12]}/pkg/util.py" in t.getnames()


def test_the_fetch_budget_spares_admins_and_mistyped_commits(make_env, tmp_path):
    env = make_env(code_fetches_per_day=1)
    repo = make_repo(tmp_path / "ok", {"idea.py": "x = 1\n"})
    commit = push(env, "alice", bundle(repo)).json()[0]["commit"]
    bob, root = env.agent("bob"), env.agent("root", admin=True)
    assert env.client.get(f"{API}/code/{'0' * 40}", headers=bob).status_code == 404  # costs nothing
    assert env.client.get(f"{API}/code/{commit}", headers=bob).status_code == 200
    r = env.client.get(f"{API}/code/{commit}", headers=bob)
    assert r.status_code == 429 and "1 of 1 a day" in r.json()["detail"]
    assert [env.client.get(f"{API}/code/{commit}", headers=root).status_code for _ in range(3)] == [200] * 3


def test_a_push_body_past_the_bundle_cap_is_413_and_leaves_no_file(make_env):
    """The push body is streamed to a file as it arrives; BodyLimit's 413 still comes (chunked too),
    and the file goes with the refusal."""
    env = make_env(max_bundle_bytes=10_000)
    spool = Path(tempfile.gettempdir())
    before = set(spool.glob("aar-push-*"))

    def body():
        for _ in range(20):
            yield b"\0" * 1000

    headers = {**env.agent("mallory"), "content-type": "application/octet-stream"}
    r = env.client.post(f"{API}/code", content=body(), headers=headers)
    assert r.status_code == 413 and "10000 bytes" in r.json()["detail"], r.text
    assert set(spool.glob("aar-push-*")) <= before


def test_archives_are_capped_and_run_a_few_at_a_time(env, tmp_path):
    from aar.referee.codestore import CodeStore
    from aar.referee.errors import ApiError

    repo = make_repo(tmp_path / "cap", {"idea.py": "x = 1\n", "data.txt": "y" * 300_000})
    commit = push(env, "erin", bundle(repo)).json()[0]["commit"]
    small = CodeStore(
        env.ref.code.path, max_blob_bytes=10**6, max_commits=10, max_files=2, max_tree_bytes=1000
    )
    assert small.max_archive_bytes < 300_000
    with pytest.raises(ApiError) as exc:
        small.checkout(commit, tmp_path / "co")
    assert exc.value.status == 413 and f"exceeds {small.max_archive_bytes} bytes" in exc.value.message
    one = CodeStore(env.ref.code.path, max_blob_bytes=10**6, max_commits=10, archive_slots=1)
    with one.archive_slot(), pytest.raises(ApiError) as exc:
        with one.archive_slot(wait=0.1):
            pass
    assert exc.value.status == 429
