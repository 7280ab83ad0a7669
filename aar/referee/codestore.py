"""The code store: one bare git repository; agents push bundles into their own ref namespace.

A push is checked before any ref moves: the bundle is verified by git, fetched (with fsck) into a
quarantine namespace, and every new commit's tree is inspected: no path may escape (``..``, absolute,
``.git``), no symlink may point outside the tree, no submodule, no blob above the size limit. Only
then are the refs written, as ``refs/agents/<agent>/<the bundle's ref minus 'refs/'>``, so an agent
can never write another agent's refs whatever its bundle names. Any agent may fetch any commit that
some agent ref reaches (provenance: every score names a commit).
"""

from __future__ import annotations

import os
import posixpath
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
    def __init__(self, path: Path, *, max_blob_bytes: int, max_commits: int):
        self.path = Path(path).resolve()  # git runs with cwd and --git-dir both set to it
        self.max_blob_bytes = max_blob_bytes
        self.max_commits = max_commits
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
        listing = self._git("ls-tree", "-r", "-l", "-z", "--full-tree", commit).stdout.decode(
            errors="replace"
        )
        links: list[tuple[str, str]] = []
        for entry in filter(None, listing.split("\0")):
            meta, _, path = entry.partition("\t")
            mode, kind, sha, size = meta.split()
            parts = path.split("/")
            if path.startswith("/") or any(p in ("", ".", "..") or p.lower() == ".git" for p in parts):
                raise ApiError(422, f"commit {commit[:12]}: path escapes the tree: {path[:200]!r}")
            if kind == "commit" or mode == "160000":
                raise ApiError(422, f"commit {commit[:12]}: submodules are not accepted ({path[:200]!r})")
            if size != "-" and int(size) > self.max_blob_bytes:
                raise ApiError(
                    422,
                    f"commit {commit[:12]}: {path[:200]!r} is {int(size)} bytes; "
                    f"blobs may be at most {self.max_blob_bytes}",
                )
            if mode == "120000":
                links.append((path, sha))
        for path, sha in links:
            target = self._git("cat-file", "blob", sha).stdout.decode(errors="replace")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
            if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
                raise ApiError(422, f"commit {commit[:12]}: symlink {path[:200]!r} points out of the tree")

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

    def tarball(self, sha: str) -> bytes:
        full = self.resolve(sha)
        return self._git("archive", "--format=tar.gz", f"--prefix={full[:12]}/", full).stdout

    def has_file(self, commit: str, path: str) -> bool:
        return self._git("cat-file", "-e", f"{commit}:{path}", check=False).returncode == 0

    def checkout(self, commit: str, dest: Path) -> None:
        """Extract a (checked) commit's tree into ``dest`` with tarfile's safe 'data' filter."""
        import io
        import tarfile

        data = self._git("archive", "--format=tar", commit).stdout
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(dest, filter="data")

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
