"""The code store: one bare git repository; agents push bundles into their own ref namespace.

A push is checked before anything is accepted. The bundle is verified by git and fetched (with fsck)
into a quarantine repository inside the store (its own object directory, the store's objects as an
alternate, a copy of the store's refs), so that a refused push leaves not one object behind. Every new
commit's tree is inspected there: no path may escape (``..``, absolute, ``.git``), no symlink at all (a
lexical check of where a chain of links resolves is not enough), no submodule, no blob above the size
limit, at most ``max_files`` files, ``max_dirs`` directories, ``max_tree_bytes`` in all (a blob counts
each time an entry names it), paths of at most ``max_path_bytes`` and ``max_depth`` levels. The
listing is streamed and git stopped at the first cap passed, under a deadline, and a listing git could
not finish is a refusal, never a pass. Only then are the objects moved into the store and the refs
written, in one transaction, as ``refs/agents/<agent>/<the bundle's ref minus 'refs/'>``, so an agent
can never write another agent's refs whatever its bundle names. Any agent may fetch any commit that
some agent ref reaches (provenance: every score names a commit); archives are streamed to a file under
a cap that the tree caps imply, a few at a time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from aar.referee.errors import ApiError

SHA_RE = re.compile(r"^[0-9a-f]{7,40}$")
_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "aar-referee",
    "GIT_AUTHOR_EMAIL": "referee@aar.invalid",
    "GIT_COMMITTER_NAME": "aar-referee",
    "GIT_COMMITTER_EMAIL": "referee@aar.invalid",
}
_STORE_CONFIG = (
    ("transfer.fsckObjects", "true"),
    ("fetch.fsckObjects", "true"),
    ("receive.fsckObjects", "true"),
    ("core.symlinks", "false"),
    ("gc.auto", "0"),
)
_INCOMING = "incoming-"  # quarantine repositories inside the store: <store>/incoming-XXXX
_TAR_ENTRY = 4096  # tar bytes per entry beyond its data: header, pax record of a long path, padding


class GitError(RuntimeError):
    pass


@dataclass(frozen=True)
class PushedRef:
    ref: str
    commit: str


class CodeStore:
    def __init__(
        self,
        path: Path,
        *,
        max_blob_bytes: int,
        max_commits: int,
        max_files: int = 2000,
        max_tree_bytes: int = 64 * 1024 * 1024,
        max_dirs: int | None = None,  # default: max_files
        max_path_bytes: int = 1024,
        max_depth: int = 32,
        max_refs: int = 100,
        check_seconds: float = 60.0,
        archive_slots: int = 4,
    ):
        self.path = Path(path).resolve()  # git runs with cwd and --git-dir both set to it
        self.max_blob_bytes = max_blob_bytes
        self.max_commits = max_commits
        self.max_files = max_files
        self.max_tree_bytes = max_tree_bytes
        self.max_dirs = max_files if max_dirs is None else max_dirs
        self.max_path_bytes = max_path_bytes
        self.max_depth = max_depth
        self.max_refs = max_refs
        self.check_seconds = check_seconds
        self._lock = threading.Lock()
        self._archives = threading.BoundedSemaphore(archive_slots)
        if not (self.path / "HEAD").exists():
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._git("init", "--bare", "-q", str(self.path), cwd=self.path.parent, bare=False)
            for key, value in _STORE_CONFIG:
                self._git("config", key, value)
        for stale in self.path.glob(f"{_INCOMING}*"):  # a push interrupted by a crash (an hour ago)
            try:
                if stale.stat().st_mtime < time.time() - 3600:
                    shutil.rmtree(stale, ignore_errors=True)
            except OSError:
                pass

    @property
    def max_archive_bytes(self) -> int:
        """The largest tar a checked commit can make: its bytes plus a bounded overhead per entry
        (gzip adds less than 1/64 to incompressible data)."""
        entries = self.max_files + self.max_dirs + 16
        return self.max_tree_bytes + self.max_tree_bytes // 64 + entries * (_TAR_ENTRY + self.max_path_bytes)

    def _env(self) -> dict[str, str]:
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
            **_GIT_ENV,
            "HOME": str(self.path),
        }

    def _git(
        self,
        *args: str,
        cwd: Path | None = None,
        bare: bool = True,
        git_dir: Path | None = None,
        input: bytes | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess:
        cmd = ["git", *(["--git-dir", str(git_dir or self.path)] if bare else []), *args]
        try:
            proc = subprocess.run(
                cmd, cwd=cwd or self.path, env=self._env(), input=input, capture_output=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise GitError(f"git {args[0]} took more than {timeout:.0f} s") from exc
        if check and proc.returncode != 0:
            raise GitError(proc.stderr.decode(errors="replace").strip()[-2000:])
        return proc

    def _popen(self, *args: str, git_dir: Path | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            ["git", "--git-dir", str(git_dir or self.path), *args],
            cwd=self.path,
            env=self._env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )

    # -- push --------------------------------------------------------------------------------------

    def push_bundle(self, agent: str, bundle: bytes | Path) -> list[PushedRef]:
        """Verify and store a bundle (its bytes, or the file holding it) under ``refs/agents/<agent>/``;
        ApiError(422) says why not, and then nothing of it is kept."""
        with self._lock, tempfile.TemporaryDirectory(prefix="aar-bundle-") as tmp:
            if isinstance(bundle, bytes | bytearray | memoryview):
                path = Path(tmp) / "push.bundle"
                path.write_bytes(bundle)
            else:
                path = Path(bundle).resolve()
            verify = self._git("bundle", "verify", "-q", str(path), check=False)
            if verify.returncode != 0:
                raise ApiError(
                    422,
                    "not a valid git bundle (or it needs commits the store lacks): "
                    + verify.stderr.decode(errors="replace").strip()[-300:],
                )
            heads = self._list_heads(path)
            if not heads:
                raise ApiError(422, "the bundle contains no refs")
            mapping: dict[str, str] = {}
            for src in heads:
                if not src.startswith("refs/") or self._git("check-ref-format", src, check=False).returncode:
                    raise ApiError(422, f"bad ref name in bundle: {src[:200]!r}")
                mapping[src] = f"refs/agents/{agent}/{src[len('refs/') :]}"
            with tempfile.TemporaryDirectory(prefix=_INCOMING, dir=self.path) as q:
                quarantine = Path(q)
                self._quarantine(quarantine)
                specs = [f"+{src}:refs/incoming/{i}" for i, src in enumerate(mapping)]
                fetched = self._git(
                    *(arg for k, v in _STORE_CONFIG for arg in ("-c", f"{k}={v}")),
                    "fetch",
                    "-q",
                    "--no-tags",
                    "--no-write-fetch-head",
                    str(path),
                    *specs,
                    git_dir=quarantine,
                    check=False,
                )
                if fetched.returncode != 0:
                    raise ApiError(
                        422,
                        "git rejected the bundle: " + fetched.stderr.decode(errors="replace").strip()[-300:],
                    )
                tips = []
                for i, src in enumerate(mapping):
                    tip = self._rev(f"refs/incoming/{i}", quarantine)
                    kind = self._git("cat-file", "-t", tip, git_dir=quarantine).stdout.decode().strip()
                    if kind != "commit":
                        raise ApiError(422, f"ref {src!r} points to a {kind}, not a commit")
                    tips.append(tip)
                self._check_new_commits(tips, quarantine)
                self._migrate(quarantine / "objects", self.path / "objects")
            updates = "".join(
                f"update {dst} {tip}\n" for tip, dst in zip(tips, mapping.values(), strict=True)
            )
            self._git("update-ref", "--stdin", input=updates.encode())  # one transaction: all or none
            return [PushedRef(dst, tip) for tip, dst in zip(tips, mapping.values(), strict=True)]

    def _quarantine(self, q: Path) -> None:
        """An empty bare repository at ``q`` that sees the store's objects and has its refs."""
        self._git("init", "--bare", "-q", "--template=", str(q), cwd=self.path, bare=False)
        (q / "objects" / "info" / "alternates").write_text(f"{self.path / 'objects'}\n")
        refs = self._git("for-each-ref", "--format=create %(refname) %(objectname)").stdout
        if refs:
            self._git("update-ref", "--stdin", input=refs, git_dir=q)

    @staticmethod
    def _migrate(src: Path, dst: Path) -> None:
        """Move a checked push's objects into the store: loose objects, then packs (each pack before
        its index, so git never sees an index without its pack)."""
        for d in sorted(src.glob("[0-9a-f][0-9a-f]")):
            (dst / d.name).mkdir(exist_ok=True)
            for f in d.iterdir():
                if not (dst / d.name / f.name).exists():
                    os.replace(f, dst / d.name / f.name)
        packs = [p for p in (src / "pack").glob("pack-*") if p.suffix in (".pack", ".rev", ".idx")]
        for p in sorted(packs, key=lambda p: (p.suffix == ".idx", p.suffix != ".pack", p.name)):
            if not (dst / "pack" / p.name).exists():
                os.replace(p, dst / "pack" / p.name)

    def _list_heads(self, path: Path) -> list[str]:
        """The bundle's ref names (not HEAD), read as a stream: git is stopped past ``max_refs``."""
        heads: dict[str, None] = {}
        with self._popen("bundle", "list-heads", str(path)) as proc:
            try:
                while line := proc.stdout.readline(1024):
                    if not line.endswith(b"\n"):
                        raise ApiError(422, "a ref name in the bundle is longer than 1000 bytes")
                    _sha, _, name = line.decode(errors="replace").rstrip("\n").partition(" ")
                    if name and name != "HEAD":
                        heads[name] = None
                    if len(heads) > self.max_refs:
                        raise ApiError(
                            422,
                            f"the bundle has more than {self.max_refs} refs; at most {self.max_refs} a push",
                        )
            finally:
                proc.kill()
        return list(heads)

    def _rev(self, name: str, git_dir: Path | None = None) -> str:
        return self._git("rev-parse", "--verify", "-q", name, git_dir=git_dir).stdout.decode().strip()

    def _check_new_commits(self, tips: list[str], git_dir: Path) -> None:
        proc = self._git(
            "rev-list",
            f"--max-count={self.max_commits + 1}",
            *tips,
            "--not",
            "--exclude=refs/incoming/*",
            "--all",
            git_dir=git_dir,
        )
        commits = proc.stdout.decode().split()
        if len(commits) > self.max_commits:
            raise ApiError(422, f"push has more than {self.max_commits} new commits")
        deadline = time.monotonic() + self.check_seconds
        seen: set[str] = set()
        for commit in commits:
            tree = self._rev(f"{commit}^{{tree}}", git_dir)
            if tree not in seen:  # a tree checked once is checked for every commit naming it
                seen.add(tree)
                self._check_tree(commit, tree, git_dir, deadline)

    def _check_tree(self, commit: str, tree: str, git_dir: Path, deadline: float) -> None:
        """Refuse a tree with too many files or directories, too many bytes in all (a blob counts each
        time an entry names it: one blob behind many entries is the bomb), a blob over the cap, a path
        too long or too deep, a symlink of any kind, a submodule or an escaping path.

        ``ls-tree -r -t`` lists directories too, each before its contents, so a tree of a billion empty
        directories, or one nested a hundred thousand deep (which crashes git's recursion), is refused
        at the first entry past a cap. The listing is streamed and git is killed at the first cap
        passed, or at the deadline, so memory and time stay bounded whatever the tree expands to; a
        listing git did not finish cleanly is a refusal."""
        c = commit[:12]
        files = dirs = total = 0
        timed_out = threading.Event()
        with self._popen("ls-tree", "-r", "-t", "-l", "-z", "--full-tree", tree, git_dir=git_dir) as proc:

            def _expire() -> None:
                timed_out.set()
                proc.kill()

            timer = threading.Timer(max(0.0, deadline - time.monotonic()), _expire)
            timer.start()
            try:
                for entry in _split_nul(proc.stdout, limit=self.max_path_bytes + 128):
                    meta, _, raw_path = entry.partition(b"\t")
                    try:
                        mode, kind, _sha, size = meta.decode().split()
                    except ValueError:
                        raise ApiError(422, f"commit {c}: unreadable tree entry") from None
                    if len(raw_path) > self.max_path_bytes:
                        raise ApiError(
                            422,
                            f"commit {c}: a path of {len(raw_path)} bytes; at most {self.max_path_bytes}",
                        )
                    path = raw_path.decode(errors="replace")
                    parts = path.split("/")
                    if path.startswith("/") or any(
                        p in ("", ".", "..") or p.lower() == ".git" for p in parts
                    ):
                        raise ApiError(422, f"commit {c}: path escapes the tree: {path[:200]!r}")
                    if len(parts) > self.max_depth:
                        raise ApiError(
                            422,
                            f"commit {c}: {path[:100]!r}... is {len(parts)} levels deep; "
                            f"at most {self.max_depth}",
                        )
                    if kind == "commit" or mode == "160000":
                        raise ApiError(422, f"commit {c}: submodules are not accepted ({path[:200]!r})")
                    if mode == "120000":
                        raise ApiError(422, f"commit {c}: symlinks are not accepted ({path[:200]!r})")
                    if kind == "tree":
                        dirs += 1
                        if dirs > self.max_dirs:
                            raise ApiError(
                                422, f"commit {c}: more than {self.max_dirs} directories (max_dirs)"
                            )
                        continue
                    if kind != "blob":
                        raise ApiError(422, f"commit {c}: a {kind[:20]!r} in the tree ({path[:200]!r})")
                    files += 1
                    if files > self.max_files:
                        raise ApiError(
                            422, f"commit {c}: more than {self.max_files} files (max_files={self.max_files})"
                        )
                    blob = int(size) if size.isdigit() else 0
                    if blob > self.max_blob_bytes:
                        raise ApiError(
                            422,
                            f"commit {c}: {path[:200]!r} is {blob} bytes; "
                            f"blobs may be at most {self.max_blob_bytes}",
                        )
                    total += blob
                    if total > self.max_tree_bytes:
                        raise ApiError(
                            422,
                            f"commit {c}: its files add up to over {self.max_tree_bytes} bytes "
                            f"({total} after {files} files; a blob counts once per entry naming it)",
                        )
                rc = proc.wait()
            finally:
                timer.cancel()
                proc.kill()
        if timed_out.is_set():
            raise ApiError(422, f"commit {c}: checking the push took more than {self.check_seconds:.0f} s")
        if rc != 0:
            raise ApiError(422, f"commit {c}: git could not list its tree (exit status {rc})")

    # -- read --------------------------------------------------------------------------------------

    def commits_since(self, tips: list[str], known: set[str]) -> list[str]:
        """Commits reachable from ``tips`` and from none of ``known`` (earlier pushes' tips)."""
        lines = [*tips, *(f"^{sha}" for sha in known)]
        out = self._git("rev-list", "--stdin", input="".join(f"{line}\n" for line in lines).encode())
        return out.stdout.decode().split()

    def resolve(self, sha: str) -> str:
        """The full sha of a commit some agent ref reaches; ApiError(404) otherwise."""
        sha = sha.lower()
        if not SHA_RE.match(sha):
            raise ApiError(422, "a commit is 7 to 40 lowercase hex digits")
        proc = self._git("rev-parse", "--verify", "-q", f"{sha}^{{commit}}", check=False)
        full = proc.stdout.decode().strip()
        if proc.returncode != 0 or not full:
            raise ApiError(404, f"no commit {sha} in the code store")
        reach = (
            self._git(
                "for-each-ref",
                "--count=1",
                "--contains",
                full,
                "--format=%(refname)",
                "refs/agents/",
                check=False,
            )
            .stdout.decode()
            .strip()
        )
        if not reach:
            raise ApiError(404, f"no commit {sha} in the code store")
        return full

    @contextmanager
    def archive_slot(self, wait: float | None = None) -> Iterator[None]:
        """One of the ``archive_slots`` archives that may run at once (each costs a core for a few
        seconds at the caps); with ``wait``, ApiError(429) when none frees within that many seconds."""
        if not self._archives.acquire(timeout=-1 if wait is None else wait):
            raise ApiError(429, "too many code fetches in progress; retry in a few seconds")
        try:
            yield
        finally:
            self._archives.release()

    def archive_to(self, commit: str, dest: Path | BinaryIO, fmt: str = "tar") -> int:
        """Stream ``git archive`` of a (checked) commit into ``dest`` (a path or a binary file), never
        past ``max_archive_bytes``; returns the bytes written. Call it holding an ``archive_slot``."""
        if isinstance(dest, str | Path):
            with open(dest, "wb") as out:
                return self._archive(commit, out, fmt)
        return self._archive(commit, dest, fmt)

    def _archive(self, commit: str, out: BinaryIO, fmt: str) -> int:
        cap = self.max_archive_bytes
        written = 0
        with self._popen("archive", f"--format={fmt}", f"--prefix={commit[:12]}/", commit) as proc:
            try:
                while chunk := proc.stdout.read(1 << 16):
                    written += len(chunk)
                    if written > cap:
                        raise ApiError(413, f"the archive of {commit[:12]} exceeds {cap} bytes")
                    out.write(chunk)
                if proc.wait(timeout=120) != 0:
                    raise GitError(f"git archive of {commit[:12]} failed")
            finally:
                proc.kill()
        return written

    def tarball(self, sha: str, dest: Path | BinaryIO) -> str:
        """Write the tar.gz of a commit's tree to ``dest`` (streamed, capped); returns the full sha."""
        full = self.resolve(sha)
        with self.archive_slot():
            self.archive_to(full, dest, fmt="tar.gz")
        return full

    def has_file(self, commit: str, path: str) -> bool:
        return self._git("cat-file", "-e", f"{commit}:{path}", check=False).returncode == 0

    def checkout(self, commit: str, dest: Path) -> None:
        """Extract a (checked) commit's tree into ``dest`` with tarfile's safe 'data' filter; the
        archive goes through a temporary file, never memory, and tarfile reads it as a stream."""
        import tarfile

        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(prefix="aar-checkout-") as archive:
            with self.archive_slot():
                self.archive_to(commit, archive)
            archive.seek(0)
            with tarfile.open(fileobj=archive, mode="r|") as tar:
                for member in tar:  # drop the archive's <sha12>/ prefix
                    member.name = member.name.partition("/")[2]
                    if member.name:
                        tar.extract(member, dest, filter="data")

    def refs(self, agent: str | None = None) -> list[dict]:
        prefix = f"refs/agents/{agent}/" if agent else "refs/agents/"
        out = self._git("for-each-ref", "--format=%(refname) %(objectname)", prefix).stdout.decode()
        rows = []
        for line in out.splitlines():
            ref, sha = line.split(" ")
            rows.append({"ref": ref, "commit": sha, "agent": ref.split("/")[2]})
        return rows

    def delete_ref(self, ref: str) -> None:
        with self._lock:
            if self._git("show-ref", "--verify", "-q", ref, check=False).returncode:
                raise ApiError(404, f"no ref {ref!r}")
            self._git("update-ref", "-d", ref)


def _split_nul(stream, limit: int = 1 << 20):  # noqa: ANN001 (a binary pipe)
    """NUL-terminated records from a pipe, read in chunks; a record longer than ``limit`` is an error."""
    buf = b""
    while chunk := stream.read(1 << 16):
        buf += chunk
        *records, buf = buf.split(b"\0")
        yield from records
        if len(buf) > limit:
            raise ApiError(422, f"a tree entry longer than {limit} bytes")
    if buf:
        yield buf
