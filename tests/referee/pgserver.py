"""A throwaway PostgreSQL server for the referee's tests: a real one, started by the suite itself.

``initdb`` into a fresh directory, ``pg_ctl start`` listening only on a Unix socket inside that
directory (no TCP, so nothing else on the machine can reach it and no port can collide), one fresh
database per test (``CREATE DATABASE`` from ``template0`` takes ~35 ms), everything removed at the
end. The server keeps its durability defaults (fsync, synchronous_commit): the durability tests
SIGKILL the referee and count on PostgreSQL's acknowledged COMMITs.

initdb refuses to run as root, so as root the cluster belongs to an unprivileged user (``postgres``
where Debian's package created it, else ``nobody``), and the directory is mode 0700: only that user
and root (the tests) can reach the socket, whose authentication is ``trust``.

Missing binaries or driver fail loudly with what to install: a skipped PostgreSQL pass would read as
a passed one.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "aar"
INSTALL_HINT = (
    "run `sh scripts/install-system-deps.sh` as root (it installs Debian's `postgresql` package), "
    "or put PostgreSQL's server binaries (initdb, pg_ctl) on PATH"
)


class PgUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says what to install."""


def find_bindir() -> Path:
    """The directory holding initdb and pg_ctl: PATH first, then Debian's /usr/lib/postgresql/<ver>/bin
    (the package does not put the server binaries on PATH), newest version first."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parts[-3].split(".")],
        reverse=True,
    )
    for pg_ctl in candidates:
        if Path(pg_ctl).with_name("initdb").exists():
            return Path(pg_ctl).parent
    raise PgUnavailable(f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}")


def _owner() -> pwd.struct_passwd | None:
    """The unprivileged user that owns the cluster when we are root (initdb refuses root); None otherwise."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PgUnavailable("running as root and neither a `postgres` nor a `nobody` user exists for initdb")


class PgServer:
    """One running cluster; ``new_database()`` hands out URLs of fresh, empty databases."""

    def __init__(self, bindir: Path | None = None):
        try:
            import psycopg  # noqa: F401  (the driver the referee's postgresql URLs use)
        except ImportError as e:
            raise PgUnavailable(
                "the psycopg driver is missing: pip install -e '.[postgres]' (make setup installs it)"
            ) from e
        self.bindir = bindir or find_bindir()
        self.owner = _owner()
        self.root = Path(tempfile.mkdtemp(prefix="aar-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._names = itertools.count()
        self._started = False
        if self.owner is not None:
            os.chown(self.root, self.owner.pw_uid, self.owner.pw_gid)
        os.chmod(self.root, 0o700)
        try:
            self._run(
                "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                "--locale=C.UTF-8",
            )  # fmt: skip
            self.start()
        except BaseException:
            self.stop()
            raise

    def start(self) -> None:
        """Start the server (again, after ``crash``: it recovers from its WAL first)."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", f"-c listen_addresses='' -c unix_socket_directories='{self.root}' "
            "-c max_connections=300 -c shared_buffers=32MB",
            "start",
        )  # fmt: skip
        self._started = True

    def crash(self) -> None:
        """Stop the server as a crash would: every process quits at once, no checkpoint, no flush
        beyond what COMMIT already made durable (``pg_ctl stop -m immediate``)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self._started = False

    def _run(self, tool: str, *args: str) -> None:
        kwargs: dict = {}
        if self.owner is not None:
            kwargs = {"user": self.owner.pw_uid, "group": self.owner.pw_gid, "extra_groups": []}
        try:
            proc = subprocess.run(
                [str(self.bindir / tool), *args],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=self.root,
                env={**os.environ, "LC_ALL": "C.UTF-8"},
                **kwargs,
            )
        except OSError as e:  # a binary missing or not executable (by the cluster's owner)
            raise PgUnavailable(f"cannot run {self.bindir / tool}: {e}; {INSTALL_HINT}") from e
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PgUnavailable(
                f"{tool} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}\n{log}"
            )

    def url(self, dbname: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@/{dbname}?host={self.root}"

    def _admin(self):  # noqa: ANN202 (a psycopg connection)
        import psycopg

        return psycopg.connect(host=str(self.root), user=SUPERUSER, dbname="postgres", autocommit=True)

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"aar_test_{os.getpid()}_{next(self._names)}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database handed out by ``new_database`` (its open connections are closed first)."""
        name = url.rsplit("/", 1)[1].split("?", 1)[0]
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        try:
            if self._started:
                self.crash()  # nothing to keep: no need for a clean shutdown
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
