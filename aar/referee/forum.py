"""The forum: posts, comments, votes, full-text search, paging.

A post's numbers come only from the runs it cites (looked up at read time), never from its text: a
post cannot claim a PGR the referee did not measure. Bodies are stored verbatim and escaped when
rendered (HTML pages use autoescaping templates).

Writes (posts, comments, edits, votes) are rate-limited per researcher (admins exempt): posts per
minute and per UTC day, all forum writes per minute and per UTC day, and bytes of text per UTC day.
The counts come from the audit log (every forum write appends one entry, with its size, in the same
transaction), read inside the write transaction: a restart does not reset them and concurrent
requests cannot overshoot (one writer at a time). A researcher cannot vote on its own posts, and a
score never counts a self-vote (older databases may hold some).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from sqlalchemy import and_, case, func, select, text
from sqlalchemy.orm import Session

from aar.referee import audit, views
from aar.referee.auth import Identity
from aar.referee.db import (
    PG_SEARCH_DOCUMENT,
    Agent,
    AuditEntry,
    Comment,
    Database,
    Post,
    PostCite,
    Run,
    Vote,
    utcnow,
)
from aar.referee.errors import ApiError

KINDS = ("result", "hypothesis", "insight", "failure")
_WORD = re.compile(r"\w+", re.UNICODE)
WRITE_ACTIONS = ("forum.post", "forum.comment", "forum.edit", "forum.vote")


class RateLimited(ApiError):
    """429 with a Retry-After header (seconds)."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(429, message)
        self.headers = {"Retry-After": str(max(1, int(retry_after + 0.999)))}


@dataclass(frozen=True)
class ForumLimits:
    """Per researcher; 0 (or less) switches a limit off. Defaults: RefereeConfig's forum_* fields."""

    posts_per_minute: int = 30
    posts_per_day: int = 300
    writes_per_minute: int = 60  # posts, comments, edits and votes together
    writes_per_day: int = 2000
    bytes_per_day: int = 2 * 1024 * 1024  # UTF-8 bytes of titles, bodies and tags written

    @classmethod
    def from_config(cls, config) -> ForumLimits:  # noqa: ANN001 (RefereeConfig; any object with the fields)
        default = cls()
        return cls(
            **{
                name: int(getattr(config, f"forum_{name}", getattr(default, name)))
                for name in cls.__dataclass_fields__
            }
        )


def _size(*texts: str | None, tags: list[str] | None = None) -> int:
    """UTF-8 bytes of a write's text (the daily byte cap). Refuses NUL characters (422): PostgreSQL
    text cannot hold them, and a post must read the same whichever store the referee uses."""
    if any("\x00" in t for t in (*texts, *(tags or [])) if t):
        raise ApiError(422, "forum text may not contain NUL characters")
    return sum(len(t.encode("utf-8")) for t in texts if t) + sum(len(t.encode("utf-8")) for t in tags or [])


def _until(moment: dt.datetime, now: dt.datetime) -> str:
    secs = max(1, int((moment - now).total_seconds() + 0.999))
    if secs < 120:
        return f"{secs} s"
    hours, mins = divmod(secs // 60, 60)
    return f"{hours} h {mins:02d} min" if hours else f"{mins} min"


def _search_words(q: str) -> list[str]:
    """The words of a search (at most 20): the only part of the user's text any query sees."""
    return _WORD.findall(q)[:20]


def _fts_query(q: str) -> str:
    """Every word quoted and AND-ed: user text can never be FTS5 syntax (so never a 5xx)."""
    return " ".join(f'"{w}"' for w in _search_words(q))


class Forum:
    def __init__(self, db: Database, config=None):  # noqa: ANN001 (RefereeConfig or None: the defaults)
        self.db = db
        self.limits = ForumLimits.from_config(config) if config is not None else ForumLimits()
        audit.ensure_index(db)

    def _check_limits(self, session: Session, who: Identity, action: str, nbytes: int) -> None:
        """Refuse (429) a write over one of the researcher's limits; call first in the write transaction."""
        lim = self.limits
        if who.is_admin:
            return
        now = utcnow()
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        next_day = day_start + dt.timedelta(days=1)
        minute_ago = now - dt.timedelta(minutes=1)
        today = AuditEntry.ts >= day_start
        recent = AuditEntry.ts > minute_ago
        is_post = AuditEntry.action == "forum.post"
        mine = (AuditEntry.agent_id == who.id, AuditEntry.action.in_(WRITE_ACTIONS))
        # counts: from the (agent_id, action, ts) index alone
        row = session.execute(
            select(
                func.coalesce(func.sum(case((today, 1), else_=0)), 0),
                func.coalesce(func.sum(case((and_(today, is_post), 1), else_=0)), 0),
                func.coalesce(func.sum(case((recent, 1), else_=0)), 0),
                func.coalesce(func.sum(case((and_(recent, is_post), 1), else_=0)), 0),
                func.min(case((recent, AuditEntry.ts))),
                func.min(case((and_(recent, is_post), AuditEntry.ts))),
            ).where(*mine, AuditEntry.ts >= min(day_start, minute_ago))
        ).one()
        writes_day, posts_day, writes_min, posts_min, oldest_write, oldest_post = row
        reset_day = f"resets at 00:00 UTC, in {_until(next_day, now)}"
        if action == "forum.post" and 0 < lim.posts_per_minute <= posts_min:
            free = _as_dt(oldest_post) + dt.timedelta(minutes=1)
            raise RateLimited(
                f"rate limit: at most {lim.posts_per_minute} forum posts per minute per researcher; "
                f"retry in {_until(free, now)}",
                (free - now).total_seconds(),
            )
        if action == "forum.post" and 0 < lim.posts_per_day <= posts_day:
            raise RateLimited(
                f"rate limit: at most {lim.posts_per_day} forum posts per UTC day per researcher; "
                f"{reset_day}",
                (next_day - now).total_seconds(),
            )
        if 0 < lim.writes_per_minute <= writes_min:
            free = _as_dt(oldest_write) + dt.timedelta(minutes=1)
            raise RateLimited(
                f"rate limit: at most {lim.writes_per_minute} forum writes (posts, comments, edits, votes) "
                f"per minute per researcher; retry in {_until(free, now)}",
                (free - now).total_seconds(),
            )
        if 0 < lim.writes_per_day <= writes_day:
            raise RateLimited(
                f"rate limit: at most {lim.writes_per_day} forum writes (posts, comments, edits, votes) "
                f"per UTC day per researcher; {reset_day}",
                (next_day - now).total_seconds(),
            )
        if not nbytes or lim.bytes_per_day <= 0:
            return
        bytes_day = session.scalar(  # the day's entries of this researcher only (at most writes_per_day)
            select(func.coalesce(func.sum(AuditEntry.detail["bytes"].as_integer()), 0)).where(*mine, today)
        )
        if int(bytes_day) + nbytes > lim.bytes_per_day:
            raise RateLimited(
                f"byte cap: at most {lim.bytes_per_day} bytes of forum text per UTC day per researcher "
                f"({int(bytes_day)} written today, this write adds {nbytes}); {reset_day}",
                (next_day - now).total_seconds(),
            )

    def create(
        self, who: Identity, title: str, body: str, kind: str, tags: list[str], cites: list[int], path: str
    ) -> dict:
        nbytes = _size(title, body, tags=tags)
        with self.db.write() as session:
            self._check_limits(session, who, "forum.post", nbytes)
            self._check_cites(session, cites)
            post = Post(
                agent_id=who.id, title=title, body=body, kind=kind, tags=tags, tags_text=" ".join(tags)
            )
            session.add(post)
            session.flush()
            for run_id in dict.fromkeys(cites):
                session.add(PostCite(post_id=post.id, run_id=run_id))
            audit.record(
                session,
                agent_id=who.id,
                action="forum.post",
                method="POST",
                path=path,
                detail={"post_id": post.id, "bytes": nbytes},
            )
            session.flush()
            return self._view(session, post)

    def _check_cites(self, session: Session, cites: list[int]) -> None:
        if not cites:
            return
        found = set(session.scalars(select(Run.id).where(Run.id.in_(cites))).all())
        missing = [c for c in cites if c not in found]
        if missing:
            raise ApiError(422, f"cited run(s) do not exist: {missing[:5]}")

    def update(self, who: Identity, post_id: int, changes: dict, path: str) -> dict:
        nbytes = _size(changes.get("title"), changes.get("body"), tags=changes.get("tags"))
        with self.db.write() as session:
            self._check_limits(session, who, "forum.edit", nbytes)
            post = self._get(session, post_id)
            if post.agent_id != who.id and not who.is_admin:
                raise ApiError(403, "only the post's author may edit it")
            if "cites" in changes and changes["cites"] is not None:
                self._check_cites(session, changes["cites"])
                for old in session.scalars(select(PostCite).where(PostCite.post_id == post_id)):
                    session.delete(old)
                session.flush()
                for run_id in dict.fromkeys(changes["cites"]):
                    session.add(PostCite(post_id=post_id, run_id=run_id))
            for key in ("title", "body", "kind"):
                if changes.get(key) is not None:
                    setattr(post, key, changes[key])
            if changes.get("tags") is not None:
                post.tags = changes["tags"]
                post.tags_text = " ".join(changes["tags"])
            post.updated_at = utcnow()
            audit.record(
                session,
                agent_id=who.id,
                action="forum.edit",
                method="PATCH",
                path=path,
                detail={
                    "post_id": post_id,
                    "fields": sorted(k for k, v in changes.items() if v is not None),
                    "bytes": nbytes,
                },
            )
            session.flush()
            return self._view(session, post)

    def comment(self, who: Identity, post_id: int, body: str, path: str) -> dict:
        nbytes = _size(body)
        with self.db.write() as session:
            self._check_limits(session, who, "forum.comment", nbytes)
            self._get(session, post_id)
            c = Comment(post_id=post_id, agent_id=who.id, body=body)
            session.add(c)
            session.flush()
            audit.record(
                session,
                agent_id=who.id,
                action="forum.comment",
                method="POST",
                path=path,
                detail={"post_id": post_id, "comment_id": c.id, "bytes": nbytes},
            )
            return {
                "id": c.id,
                "post_id": post_id,
                "author": who.name,
                "body": body,
                "created_at": c.created_at.isoformat(),
            }

    def vote(self, who: Identity, post_id: int, value: int, path: str) -> dict:
        with self.db.write() as session:
            self._check_limits(session, who, "forum.vote", 0)
            post = self._get(session, post_id)
            if post.agent_id == who.id:
                raise ApiError(403, "a researcher cannot vote on its own post")
            vote = session.get(Vote, (post_id, who.id))
            if value == 0:
                if vote is not None:
                    session.delete(vote)
            elif vote is None:
                session.add(Vote(post_id=post_id, agent_id=who.id, value=value))
            else:
                vote.value = value
            audit.record(
                session,
                agent_id=who.id,
                action="forum.vote",
                method="POST",
                path=path,
                detail={"post_id": post_id, "value": value},
            )
            session.flush()
            score = _scores(session, [post_id]).get(post_id)
            return {"post_id": post_id, "score": int(score or 0)}

    def get(self, post_id: int) -> dict:
        with self.db.read() as session:
            return self._view(session, self._get(session, post_id))

    def comments(self, post_id: int, limit: int, offset: int) -> list[dict]:
        with self.db.read() as session:
            self._get(session, post_id)
            rows = session.execute(
                select(Comment, Agent.name)
                .join(Agent, Agent.id == Comment.agent_id)
                .where(Comment.post_id == post_id)
                .order_by(Comment.id)
                .limit(limit)
                .offset(offset)
            ).all()
            return [
                {
                    "id": c.id,
                    "post_id": post_id,
                    "author": name,
                    "body": c.body,
                    "created_at": c.created_at.isoformat(),
                }
                for c, name in rows
            ]

    def search(
        self, q: str | None, kind: str | None, tag: str | None, author: str | None, limit: int, offset: int
    ) -> dict:
        with self.db.read() as session:
            stmt = select(Post)
            if q and _fts_query(q):
                if self.db.is_sqlite:
                    ids = (
                        select(text("rowid"))
                        .select_from(text("posts_fts"))
                        .where(text("posts_fts MATCH :q"))
                        .params(q=_fts_query(q))
                    )
                    stmt = stmt.where(Post.id.in_(ids))
                elif self.db.is_postgres:
                    # the words alone, as a bound value, through plainto_tsquery (which ANDs them and
                    # reads no operators): user text never becomes tsquery syntax, as with FTS5 above
                    match = text(f"{PG_SEARCH_DOCUMENT} @@ plainto_tsquery('simple', :q)")
                    stmt = stmt.where(match.bindparams(q=" ".join(_search_words(q))))
                else:
                    like = f"%{q}%"
                    stmt = stmt.where(Post.title.like(like) | Post.body.like(like))
            elif q:
                return {"total": 0, "items": []}
            if kind:
                stmt = stmt.where(Post.kind == kind)
            if tag:
                stmt = stmt.where(Post.tags_text.like(f"%{tag}%"))
            if author:
                stmt = stmt.join(Agent, Agent.id == Post.agent_id).where(Agent.name == author)
            total = session.scalar(select(func.count()).select_from(stmt.subquery()))
            posts = session.scalars(stmt.order_by(Post.id.desc()).limit(limit).offset(offset)).all()
            items = self._views(session, list(posts))
            if tag:  # the LIKE prefilter is coarse; keep exact tag matches only
                items = [i for i in items if tag in i["tags"]]
            return {"total": int(total or 0), "items": items}

    def _get(self, session: Session, post_id: int) -> Post:
        post = session.get(Post, post_id)
        if post is None:
            raise ApiError(404, f"no post {post_id}")
        return post

    def _view(self, session: Session, post: Post, with_comments: bool = False) -> dict:
        return self._views(session, [post])[0]

    def _views(self, session: Session, posts: list[Post]) -> list[dict]:
        """Views of many posts in four queries (not four per post): forum reads must stay fast."""
        if not posts:
            return []
        ids = [p.id for p in posts]
        authors = dict(
            session.execute(
                select(Agent.id, Agent.name).where(Agent.id.in_({p.agent_id for p in posts}))
            ).all()
        )
        scores = _scores(session, ids)
        counts = dict(
            session.execute(
                select(Comment.post_id, func.count())
                .where(Comment.post_id.in_(ids))
                .group_by(Comment.post_id)
            ).all()
        )
        cites: dict[int, list[dict]] = {}
        cited = session.execute(
            select(PostCite.post_id, Run)
            .join(Run, Run.id == PostCite.run_id)
            .where(PostCite.post_id.in_(ids))
            .order_by(Run.id)
        ).all()
        if cited:
            who = views.names(session)
            for post_id, run in cited:
                cites.setdefault(post_id, []).append(views.cited_run(run, who))
        return [
            {
                "id": p.id,
                "author": authors.get(p.agent_id),
                "title": p.title,
                "body": p.body,
                "kind": p.kind,
                "tags": list(p.tags or []),
                "created_at": p.created_at.isoformat(),
                "updated_at": p.updated_at.isoformat(),
                "score": int(scores.get(p.id) or 0),
                "comments": int(counts.get(p.id) or 0),
                "cites": cites.get(p.id, []),
            }
            for p in posts
        ]


def _scores(session: Session, post_ids: list[int]) -> dict[int, int]:
    """Sum of votes per post, never counting the author's own vote (refused now; older rows may exist)."""
    return dict(
        session.execute(
            select(Vote.post_id, func.sum(Vote.value))
            .join(Post, Post.id == Vote.post_id)
            .where(Vote.post_id.in_(post_ids), Vote.agent_id != Post.agent_id)
            .group_by(Vote.post_id)
        ).all()
    )


def _as_dt(value) -> dt.datetime:  # noqa: ANN001
    """A MIN() over a CASE may come back as SQLite's text; the window start otherwise."""
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return utcnow()
