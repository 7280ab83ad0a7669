"""The code store: one bare git repository; agents push bundles into their own ref namespace.

A push is checked before any ref moves: the bundle is verified by git, fetched (with fsck) into a
quarantine namespace, and every new commit's tree is inspected: no path may escape (``..``, absolute,
``.git``), no symlink at all (a lexical check of where a chain of links resolves is not enough), no
submodule, no blob above the size limit, at most ``max_files`` files and ``max_tree_bytes`` in all. Only
then are the refs written, as ``refs/agents/<agent>/<the bundle's ref minus 'refs/'>``, so an agent
can never write another agent's refs whatever its bundle names. Any agent may fetch any commit that
some agent ref reaches (provenance: every score names a commit).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

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
    ):
        self.path = Path(path).resolve()  # git runs with cwd and --git-dir both set to it
        self.max_blob_bytes = max_blob_bytes
        self.max_commits = max_commits
        self.max_files = max_files
        self.max_tree_bytes = max_tree_bytes
        self._lock = threading.Lock()
        if not (self.path / "HEAD").exists():
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._git("init", "--bare", "-q", str(self.path), cwd=self.path.parent, bare=False)
            for key, value in (
                ("transfer.fsckObjects", "true"),
                ("fetch.fsckObjects", "true"),
                ("receive.fsckObjects", "true"),
                ("core.symlinks", "false"),
                ("gc.auto", "0"),
            ):
                self._git("config", key, value)

    def _git(
        self,
        *args: str,
        cwd: Path | None = None,
        bare: bool = True,
        input: bytes | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
            **_GIT_ENV,
            "HOME": str(self.path),
        }
        cmd = ["git", *(["--git-dir", str(self.path)] if bare else []), *args]
        proc = subprocess.run(
            cmd, cwd=cwd or self.path, env=env, input=input, capture_output=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise GitError(proc.stderr.decode(errors="replace").strip()[-2000:])
        return proc

    # -- push --------------------------------------------------------------------------------------

    def push_bundle(self, agent: str, bundle: bytes) -> list[PushedRef]:
        """Verify and store a bundle under ``refs/agents/<agent>/``; ApiError(422) says why not."""
        with self._lock, tempfile.TemporaryDirectory(prefix="aar-bundle-") as tmp:
            path = Path(tmp) / "push.bundle"
            path.write_bytes(bundle)
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
            quarantine = f"refs/quarantine/{uuid.uuid4().hex}"
            mapping: dict[str, str] = {}
            for src in heads:
                if not src.startswith("refs/") or self._git("check-ref-format", src, check=False).returncode:
                    raise ApiError(422, f"bad ref name in bundle: {src[:200]!r}")
                mapping[src] = f"refs/agents/{agent}/{src[len('refs/') :]}"
            specs = [f"+{src}:{quarantine}/{i}" for i, src in enumerate(mapping)]
            fetched = self._git(
                "fetch", "-q", "--no-tags", "--no-write-fetch-head", str(path), *specs, check=False
            )
            if fetched.returncode != 0:
                self._drop_refs(quarantine)
                raise ApiError(
                    422, "git rejected the bundle: " + fetched.stderr.decode(errors="replace").strip()[-300:]
                )
            try:
                tips = [self._rev(f"{quarantine}/{i}") for i in range(len(mapping))]
                self._check_new_commits(tips)
                out = []
                for tip, (_src, dst) in zip(tips, mapping.items(), strict=True):
                    kind = self._git("cat-file", "-t", tip).stdout.decode().strip()
                    if kind != "commit":
                        raise ApiError(422, f"ref {_src!r} points to a {kind}, not a commit")
                    self._git("update-ref", dst, tip)
                    out.append(PushedRef(dst, tip))
                return out
            finally:
                self._drop_refs(quarantine)

    def _list_heads(self, path: Path) -> list[str]:
        proc = self._git("bundle", "list-heads", str(path), check=False)
        heads = []
        for line in proc.stdout.decode(errors="replace").splitlines():
            parts = line.split(" ", 1)
            if len(parts) == 2 and parts[1] != "HEAD":
                heads.append(parts[1])
        return list(dict.fromkeys(heads))

    def _rev(self, name: str) -> str:
        return self._git("rev-parse", "--verify", "-q", name).stdout.decode().strip()

    def _drop_refs(self, prefix: str) -> None:
        refs = self._git("for-each-ref", "--format=%(refname)", prefix, check=False).stdout.decode().split()
        if refs:
            self._git(
                "update-ref", "--stdin", input="".join(f"delete {r}\n" for r in refs).encode(), check=False
            )

    def _check_new_commits(self, tips: list[str]) -> None:
        proc = self._git("rev-list", *tips, "--not", "--exclude=refs/quarantine/*", "--all")
        commits = proc.stdout.decode().split()
        if len(commits) > self.max_commits:
            raise ApiError(422, f"push has {len(commits)} new commits; at most {self.max_commits}")
        for commit in commits:
            self._check_tree(commit)

    def _check_tree(self, commit: str) -> None:
        """Refuse a tree with too many files, too many bytes in all (a blob counts each time an entry
        names it: one blob behind many entries is the bomb), a blob over the cap, a symlink of any
        kind, a submodule or an escaping path. The listing is streamed and git is stopped at the
        first cap passed, so a tree that expands to millions of entries costs bounded memory and time."""
        files = total = 0
        with self._popen("ls-tree", "-r", "-l", "-z", "--full-tree", commit) as proc:
            try:
                for entry in _split_nul(proc.stdout):
                    meta, _, raw_path = entry.partition(b"\t")
                    mode, kind, _sha, size = meta.decode().split()
                    path = raw_path.decode(errors="replace")
                    parts = path.split("/")
                    if path.startswith("/") or any(
                        p in ("", ".", "..") or p.lower() == ".git" for p in parts
                    ):
                        raise ApiError(422, f"commit {commit[:12]}: path escapes the tree: {path[:200]!r}")
                    if kind == "commit" or mode == "160000":
                        raise ApiError(
                            422, f"commit {commit[:12]}: submodules are not accepted ({path[:200]!r})"
                        )
                    if mode == "120000":
                        raise ApiError(
                            422, f"commit {commit[:12]}: symlinks are not accepted ({path[:200]!r})"
                        )
                    files += 1
                    if files > self.max_files:
                        raise ApiError(422, f"commit {commit[:12]}: more than {self.max_files} files")
                    blob = int(size) if size != "-" else 0
                    if blob > self.max_blob_bytes:
                        raise ApiError(
                            422,
                            f"commit {commit[:12]}: {path[:200]!r} is {blob} bytes; "
                            f"blobs may be at most {self.max_blob_bytes}",
                        )
                    total += blob
                    if total > self.max_tree_bytes:
                        raise ApiError(
                            422,
                            f"commit {commit[:12]}: its files add up to over {self.max_tree_bytes} bytes",
                        )
            finally:
                proc.kill()

    def _popen(self, *args: str) -> subprocess.Popen:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
            **_GIT_ENV,
            "HOME": str(self.path),
        }
        return subprocess.Popen(
            ["git", "--git-dir", str(self.path), *args],
            cwd=self.path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )

    def archive_to(self, commit: str, dest: Path, fmt: str = "tar") -> int:
        """Stream ``git archive`` of a (checked) commit into the file ``dest``, never past the tree
        cap plus tar overhead; returns the bytes written."""
        cap = self.max_tree_bytes + 1024 * (self.max_files + 16)
        written = 0
        with self._popen("archive", f"--format={fmt}", f"--prefix={commit[:12]}/", commit) as proc:
            try:
                with open(dest, "wb") as out:
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

    # -- read --------------------------------------------------------------------------------------

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

    def tarball(self, sha: str, dest: Path) -> str:
        """Write the tar.gz of a commit's tree to ``dest`` (streamed, capped); returns the full sha."""
        full = self.resolve(sha)
        self.archive_to(full, dest, fmt="tar.gz")
        return full

    def has_file(self, commit: str, path: str) -> bool:
        return self._git("cat-file", "-e", f"{commit}:{path}", check=False).returncode == 0

    def checkout(self, commit: str, dest: Path) -> None:
        """Extract a (checked) commit's tree into ``dest`` with tarfile's safe 'data' filter."""
        import tarfile

        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="aar-checkout-") as tmp:
            archive = Path(tmp) / "tree.tar"
            self.archive_to(commit, archive)
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():  # drop the archive's <sha12>/ prefix
                    member.name = member.name.partition("/")[2]
                tar.extractall(dest, members=[m for m in tar.getmembers() if m.name], filter="data")

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
            raise ApiError(422, "a tree entry is too long")
    if buf:
        yield buf
