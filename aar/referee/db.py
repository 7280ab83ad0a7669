"""Tables and the database handle: SQLite in WAL mode with synchronous=FULL by default, any URL accepted.

Why the care with transactions: an acknowledged write must survive SIGKILL, and concurrent writers
must never see "database is locked". Every write runs in ``Database.write()``: one writer at a time
in this process (a lock, so threads queue in Python rather than in SQLite's coarse busy-sleep) and,
on SQLite, ``BEGIN IMMEDIATE`` so that a transaction never has to upgrade from read to write (the
upgrade is where SQLite returns SQLITE_BUSY without waiting). ``write()`` returns only after the
COMMIT that holds its changes has returned, i.e. after fsync.

Group commit (queued writers sharing one COMMIT) was tried and measured: with COMMIT at ~1 ms here it
did not improve the load bench's p99 (README, "The referee under load"), so each write commits alone.

PostgreSQL (``postgresql://`` URLs, driver psycopg 3: the ``postgres`` extra) is for referees on
several hosts sharing one store. The Python lock serialises this process only, so a write transaction
there first takes one transaction-scoped advisory lock: writers of every process and host queue for
it as SQLite's writers queue for BEGIN IMMEDIATE, and the read-modify-write code above this module
(the audit chain's last hash, the Ladders, the run queue, the forum's rate limits) keeps the one
guarantee it was written for, one writer at a time, at READ COMMITTED (each statement after the lock
sees every write committed before it). The forum's search index and the audit log's append-only
triggers have a PostgreSQL twin of the SQLite DDL.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# Ids (and uids) are 64-bit on every store. SQLite's INTEGER is already (and must stay INTEGER for a
# rowid primary key); PostgreSQL's INTEGER is not, and the API accepts ids up to 2**62 (routes.Id):
# a larger one on a 32-bit column would be a 500 ("integer out of range") instead of a 404, and uids
# go past 2**31. Foreign keys take their referenced column's type.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class Agent(Base):
    __tablename__ = "agents"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # the researcher's sandbox uid: on the Unix socket its token is accepted only from this uid, and
    # a peer with this uid needs no token at all (so none has to sit in the sandbox's environment)
    uid: Mapped[int | None] = mapped_column(BigId, nullable=True, unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class DevQuery(Base):
    """Every dev query, with the private numbers behind the public answer (for integrity review)."""

    __tablename__ = "dev_queries"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    task: Mapped[str] = mapped_column(String(64))
    day: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    predictions: Mapped[bytes] = mapped_column(LargeBinary)  # float64, in dev id order
    hard_bits: Mapped[bytes] = mapped_column(LargeBinary)  # np.packbits(p >= 0.5)
    accuracy: Mapped[float] = mapped_column(Float)  # private
    z: Mapped[float] = mapped_column(Float)  # private
    released_pgr: Mapped[float | None] = mapped_column(Float, nullable=True)
    improved: Mapped[bool] = mapped_column(Boolean)
    min_diff_rows: Mapped[int | None] = mapped_column(Integer, nullable=True)  # vs recent queries
    weak_agreement: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)  # private: what z had to beat
    changed_rows: Mapped[int | None] = mapped_column(Integer, nullable=True)  # vs the task's best
    # a release: np.packbits of the rows it changed against the previous best (the probing detector)
    released_rows: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    probes_released: Mapped[bool] = mapped_column(Boolean, default=False)  # differs from the best
    # almost only in rows another researcher's release changed
    __table_args__ = (
        Index("ix_dev_agent_task_day", "agent_id", "task", "day"),
        Index("ix_dev_task_day", "task", "day"),
        # newest first by task, by task among releases, by agent and task: the detectors' look-backs
        # (the last 20 of a task, the last 5 releases, an agent's last 50) read a few rows, not the task
        Index("ix_dev_task", "task"),
        Index("ix_dev_task_improved", "task", "improved"),
        Index("ix_dev_agent_task", "agent_id", "task"),
    )


class TaskLadder(Base):
    """The one Ladder state of a task, shared by every researcher of the campaign (collusion: a
    ladder per token would give k tokens k fresh starts at the weak teacher). None = the weak teacher."""

    __tablename__ = "task_ladder"
    task: Mapped[str] = mapped_column(String(64), primary_key=True)
    best_query_id: Mapped[int | None] = mapped_column(ForeignKey("dev_queries.id"), nullable=True)
    released_accuracy: Mapped[float] = mapped_column(Float)
    released_pgr: Mapped[float | None] = mapped_column(Float, nullable=True)
    queries_since_release: Mapped[int] = mapped_column(Integer, default=0)
    releases: Mapped[int] = mapped_column(Integer, default=0)


class PublicLadder(Base):
    """The official Ladder of a task's public part, shared by everyone: official public scores are
    released to researchers only when a run significantly beats the best released run (the weak
    teacher at first), so successive official runs cannot read the public labels either."""

    __tablename__ = "public_ladder"
    task: Mapped[str] = mapped_column(String(64), primary_key=True)
    best_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)
    released_accuracy: Mapped[float] = mapped_column(Float)
    released_pgr: Mapped[float | None] = mapped_column(Float, nullable=True)
    queries_since_release: Mapped[int] = mapped_column(Integer, default=0)
    releases: Mapped[int] = mapped_column(Integer, default=0)


class CodePush(Base):
    __tablename__ = "code_pushes"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    ref: Mapped[str] = mapped_column(String(255))
    commit: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Run(Base):
    """An official run. ``agent_id`` submitted it; ``author_id`` pushed its commit first and gets the
    credit (a run of someone else's commit is a reproduction)."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # starts; a run timed out by load is retried
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)  # sandbox time, charged to the author
    commit: Mapped[str] = mapped_column(String(64))
    idea_path: Mapped[str] = mapped_column(String(255))
    task: Mapped[str] = mapped_column(String(64))
    seeds: Mapped[int] = mapped_column(Integer)
    day: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued running done failed cancelled
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    results: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # exact, per task and part: admin only
    # what researchers were told of the public part, per home/visible task (aar.contract.Released)
    released: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    sandbox: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    is_baseline: Mapped[bool] = mapped_column(Boolean, default=False)
    review_state: Mapped[str] = mapped_column(String(16), default="unreviewed")
    review_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class CommitAuthor(Base):
    """Who pushed a commit first: the one a run of that commit is credited to."""

    __tablename__ = "commit_authors"
    commit: Mapped[str] = mapped_column(String(40), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))


class RunPrediction(Base):
    """Per-seed predictions of an official run: kept for audit, never returned to agents."""

    __tablename__ = "run_predictions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    task: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(Integer)
    predictions: Mapped[bytes] = mapped_column(LargeBinary)
    __table_args__ = (Index("ix_run_predictions_run", "run_id", "task"),)


class Post(Base):
    __tablename__ = "posts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    tags: Mapped[list] = mapped_column(JSON, default=list)
    tags_text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class PostCite(Base):
    __tablename__ = "post_cites"
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True)


class Comment(Base):
    __tablename__ = "comments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Vote(Base):
    __tablename__ = "votes"
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


class Flag(Base):
    """An integrity finding with its evidence; open flags are the human review queue."""

    __tablename__ = "flags"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(48))
    subject_type: Mapped[str] = mapped_column(String(16))  # "run" or "agent"
    subject_id: Mapped[int] = mapped_column(BigId)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), nullable=True)
    task: Mapped[str | None] = mapped_column(String(64), nullable=True)
    evidence: Mapped[dict] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="open")
    resolution: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    __table_args__ = (Index("ix_flags_state", "state"),)


class AuditEntry(Base):
    """Append-only (enforced by triggers) and hash-chained, so an edit or a gap is detectable."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    ts: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    agent_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(512))
    detail: Mapped[dict] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    __table_args__ = (UniqueConstraint("prev_hash", name="uq_audit_chain"),)


_SQLITE_DDL = [
    """CREATE VIRTUAL TABLE IF NOT EXISTS posts_fts USING fts5(
           title, body, tags_text, content='posts', content_rowid='id')""",
    """CREATE TRIGGER IF NOT EXISTS posts_ai AFTER INSERT ON posts BEGIN
           INSERT INTO posts_fts(rowid, title, body, tags_text)
           VALUES (new.id, new.title, new.body, new.tags_text);
       END""",
    """CREATE TRIGGER IF NOT EXISTS posts_ad AFTER DELETE ON posts BEGIN
           INSERT INTO posts_fts(posts_fts, rowid, title, body, tags_text)
           VALUES ('delete', old.id, old.title, old.body, old.tags_text);
       END""",
    """CREATE TRIGGER IF NOT EXISTS posts_au AFTER UPDATE ON posts BEGIN
           INSERT INTO posts_fts(posts_fts, rowid, title, body, tags_text)
           VALUES ('delete', old.id, old.title, old.body, old.tags_text);
           INSERT INTO posts_fts(rowid, title, body, tags_text)
           VALUES (new.id, new.title, new.body, new.tags_text);
       END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit_log BEGIN
           SELECT RAISE(ABORT, 'audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit_log BEGIN
           SELECT RAISE(ABORT, 'audit log is append-only'); END""",
]

# The forum's search document on PostgreSQL, built to find what SQLite's FTS5 (unicode61 tokenizer)
# finds: punctuation separates words (so "aar/w2s/ideas.py" holds "ideas", "navigate_turns" holds
# "turns"; PostgreSQL's parser alone would keep paths, numbers and hyphenated words whole), and the
# 'simple' configuration lower-cases without stemming or stop words. The search query repeats this
# expression verbatim: that is what lets it use the GIN index.
PG_SEARCH_DOCUMENT = (
    "to_tsvector('simple', regexp_replace("
    "posts.title || ' ' || posts.body || ' ' || posts.tags_text, '[[:punct:]]+', ' ', 'g'))"
)

_POSTGRES_DDL = [
    "DROP INDEX IF EXISTS posts_fts_idx",  # an earlier 'english' index that no query used
    f"CREATE INDEX IF NOT EXISTS posts_search_idx ON posts USING GIN (({PG_SEARCH_DOCUMENT}))",
    """CREATE OR REPLACE FUNCTION aar_audit_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'audit log is append-only'; END; $$ LANGUAGE plpgsql""",
    # row triggers do not fire on TRUNCATE: a statement trigger refuses that too
    """DO $$ BEGIN
         IF NOT EXISTS (SELECT 1 FROM pg_trigger
                        WHERE tgname = 'audit_append_only' AND tgrelid = 'audit_log'::regclass) THEN
           CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit_log
           FOR EACH ROW EXECUTE FUNCTION aar_audit_append_only();
         END IF;
         IF NOT EXISTS (SELECT 1 FROM pg_trigger
                        WHERE tgname = 'audit_no_truncate' AND tgrelid = 'audit_log'::regclass) THEN
           CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_log
           FOR EACH STATEMENT EXECUTE FUNCTION aar_audit_append_only();
         END IF; END $$""",
]

# Every write transaction on PostgreSQL takes this lock first (see the module docstring); the key is
# arbitrary but fixed, and advisory locks are per database, so referees of other databases never wait.
_PG_WRITE_LOCK_KEY = 0x616172_7772  # "aar" "wr"
_PG_WRITE_LOCK = text("SELECT pg_advisory_xact_lock(:key)").bindparams(key=_PG_WRITE_LOCK_KEY)


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg 3 (SQLAlchemy would pick psycopg2, which aar
    does not install); every other URL, an explicit driver included, is kept as it is."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Database:
    """Engine, sessions, and the one-writer-at-a-time write transaction."""

    def __init__(self, url: str):
        url = normalize_url(url)
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            kwargs["pool_size"] = 16
            kwargs["max_overflow"] = 32
        elif url.startswith("postgresql"):
            kwargs["pool_size"] = 16
            kwargs["max_overflow"] = 32
            kwargs["pool_pre_ping"] = True  # a restarted server: reconnect instead of failing a request
            if "options" not in make_url(url).query:  # SQLite's busy timeout: a writer waits 30 s at most
                kwargs["connect_args"] = {"options": "-c lock_timeout=30s"}
        self.engine: Engine = create_engine(url, **kwargs)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        if self.is_sqlite:
            _sqlite_setup(self.engine)
        # a read sees one snapshot, as a read transaction does in SQLite's WAL mode (PostgreSQL's default,
        # READ COMMITTED, would let a page and its total count disagree); a transaction that only reads
        # never fails to serialise at this level, so nothing needs a retry
        reads = self.engine.execution_options(isolation_level="REPEATABLE READ") if self.is_postgres else None
        self._sessions = sessionmaker(reads or self.engine, expire_on_commit=False)
        self._write_engine = self.engine.execution_options(aar_immediate=True)
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)
        self._write_lock = threading.Lock()

    def create_all(self) -> None:
        if not self.is_postgres:
            Base.metadata.create_all(self.engine)
        ddl = _SQLITE_DDL if self.is_sqlite else _POSTGRES_DDL if self.is_postgres else []
        with self.engine.begin() as conn:
            if self.is_postgres:  # referees starting together: one creates, the others then find it all
                conn.execute(_PG_WRITE_LOCK)
                Base.metadata.create_all(conn)
            for stmt in ddl:
                conn.execute(text(stmt))
            # indexes added after a database was first created (create_all skips existing tables)
            for table in Base.metadata.sorted_tables:
                for index in table.indexes:
                    index.create(conn, checkfirst=True)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction; durable (committed, fsync'd) when the block exits without an exception.
        A block that raises leaves no change behind. On PostgreSQL the transaction first takes the
        database-wide write lock, so writers in other processes and on other hosts queue too."""
        with self._write_lock, self._write_sessions() as session, session.begin():
            if self.is_postgres:
                session.execute(_PG_WRITE_LOCK)
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record) -> None:  # noqa: ANN001
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:  # noqa: ANN001
        immediate = conn.get_execution_options().get("aar_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
