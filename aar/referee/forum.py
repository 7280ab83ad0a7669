"""The forum: posts, comments, votes, full-text search, paging.

A post's numbers come only from the runs it cites (looked up at read time), never from its text: a
post cannot claim a PGR the referee did not measure. Bodies are stored verbatim and escaped when
rendered (HTML pages use autoescaping templates).
"""

from __future__ import annotations

import re

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from aar.referee import audit
from aar.referee.auth import Identity
from aar.referee.db import Agent, Comment, Database, Post, PostCite, Run, Vote, utcnow
from aar.referee.errors import ApiError

KINDS = ("result", "hypothesis", "insight", "failure")
_WORD = re.compile(r"\w+", re.UNICODE)


def _fts_query(q: str) -> str:
    """Every word quoted and AND-ed: user text can never be FTS5 syntax (so never a 5xx)."""
    words = _WORD.findall(q)[:20]
    return " ".join(f'"{w}"' for w in words)


class Forum:
    def __init__(self, db: Database):
        self.db = db

    def create(
        self, who: Identity, title: str, body: str, kind: str, tags: list[str], cites: list[int], path: str
    ) -> dict:
        with self.db.write() as session:
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
                detail={"post_id": post.id},
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
        with self.db.write() as session:
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
                detail={"post_id": post_id, "fields": sorted(k for k, v in changes.items() if v is not None)},
            )
            session.flush()
            return self._view(session, post)

    def comment(self, who: Identity, post_id: int, body: str, path: str) -> dict:
        with self.db.write() as session:
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
                detail={"post_id": post_id, "comment_id": c.id},
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
            self._get(session, post_id)
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
            score = session.scalar(
                select(func.coalesce(func.sum(Vote.value), 0)).where(Vote.post_id == post_id)
            )
            return {"post_id": post_id, "score": int(score)}

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
                elif self.db.engine.dialect.name == "postgresql":
                    stmt = stmt.where(
                        text(
                            "to_tsvector('english', posts.title || ' ' || posts.body || ' ' || "
                            "posts.tags_text) @@ plainto_tsquery('english', :q)"
                        )
                    ).params(q=q)
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
        scores = dict(
            session.execute(
                select(Vote.post_id, func.sum(Vote.value)).where(Vote.post_id.in_(ids)).group_by(Vote.post_id)
            ).all()
        )
        counts = dict(
            session.execute(
                select(Comment.post_id, func.count())
                .where(Comment.post_id.in_(ids))
                .group_by(Comment.post_id)
            ).all()
        )
        cites: dict[int, list[dict]] = {}
        for post_id, run, name in session.execute(
            select(PostCite.post_id, Run, Agent.name)
            .join(Run, Run.id == PostCite.run_id)
            .join(Agent, Agent.id == Run.agent_id)
            .where(PostCite.post_id.in_(ids))
            .order_by(Run.id)
        ).all():
            cites.setdefault(post_id, []).append(cited_numbers(run, name))
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


def cited_numbers(run: Run, author: str) -> dict:
    """The numbers a post may show: the referee's own, from the cited run."""
    per_task = {}
    for task, r in (run.results or {}).items():
        per_task[task] = {
            "role": r.get("role"),
            "pgr": r.get("pgr"),
            "pgr_ci": r.get("pgr_ci"),
            "transfer_acc": r.get("transfer_acc"),
            "transfer_acc_ci": r.get("transfer_acc_ci"),
        }
    return {
        "run_id": run.id,
        "author": author,
        "commit": run.commit,
        "status": run.status,
        "review_state": run.review_state,
        "verified": run.review_state == "verified",
        "results": per_task,
    }
