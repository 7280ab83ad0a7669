"""Thin routes: parse, authenticate, call one service, shape the answer."""

from __future__ import annotations

import json
from pathlib import Path as FsPath
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from aar import contract
from aar.referee import audit, credit, schemas, views
from aar.referee import flags as review_flags
from aar.referee.auth import Identity
from aar.referee.codestore import GitError
from aar.referee.db import Agent, AuditEntry, Run
from aar.referee.errors import ApiError
from aar.referee.peer import PEER_UID
from aar.referee.views import credited_id

Id = Annotated[int, Path(ge=1, le=2**62)]
_bearer = HTTPBearer(auto_error=False, description="the agent's token from `aar referee add-agent`")
ERRORS = {
    401: {"model": schemas.Message},
    403: {"model": schemas.Message},
    404: {"model": schemas.Message},
    413: {"model": schemas.Message},
    422: {"model": schemas.Message},
    429: {"model": schemas.Message},
}


def _reject_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise ApiError(422, f"duplicate key {key[:64]!r} in JSON object")
        seen[key] = value
    return seen


async def no_duplicate_keys(request: Request) -> None:
    """JSON objects with a repeated key are rejected (json.loads would silently keep the last one)."""
    if request.method in ("POST", "PATCH", "PUT") and "json" in request.headers.get("content-type", ""):
        body = await request.body()
        try:
            json.loads(body, object_pairs_hook=_reject_duplicate_keys)
        except ValueError:
            pass  # malformed JSON: FastAPI reports it as 422


def build_router(ref) -> APIRouter:  # noqa: ANN001 (aar.referee.app.Referee; avoids an import cycle)
    async def who(
        creds: HTTPAuthorizationCredentials | None = Depends(_bearer), request: Request = None
    ) -> Identity:  # type: ignore[assignment]
        """Async, so that a known token costs no trip to a worker thread (a sync dependency is one,
        on top of the endpoint's); anything that needs the database goes to one."""
        from starlette.concurrency import run_in_threadpool

        header = request.headers.get("authorization") if request is not None else None
        peer = request.scope.get(PEER_UID) if request is not None else None
        auth = header if creds is None else f"Bearer {creds.credentials}"
        known = ref.auth.cached(auth, peer)
        if known is not None:
            return known
        return await run_in_threadpool(ref.auth.identify_peer, auth, peer)

    async def admin(me: Identity = Depends(who)) -> Identity:
        if not me.is_admin:
            raise ApiError(403, "admin only")
        return me

    r = APIRouter(dependencies=[Depends(no_duplicate_keys)], responses=ERRORS)

    @r.get("/health", responses={})
    def health() -> dict:
        return {"ok": True}

    @r.get("/me", response_model=schemas.Me)
    def me(me: Identity = Depends(who)):
        return {"name": me.name, "is_admin": me.is_admin}

    @r.get("/tasks", response_model=list[contract.ResearcherTaskCard] | list[contract.AdminTaskCard])
    def tasks(me: Identity = Depends(who)):
        """Researchers: the home and visible tasks (held-out tasks are not even listed); admins: all."""
        if me.is_admin:
            return [ref.data.task(t).admin_card() for t in ref.data.ready_tasks()]
        return [ref.data.task(t).card() for t in ref.data.shown()]

    # -- dev scoring -------------------------------------------------------------------------------

    @r.post("/dev/evaluate", response_model=schemas.DevEvaluateOut)
    def dev_evaluate(body: schemas.DevEvaluateIn, request: Request, me: Identity = Depends(who)):
        ans = ref.scorer.evaluate(me, body.task, body.predictions, request.url.path)
        return {"task": ans.task, "pgr": ans.pgr, "improved": ans.improved, "queries_left": ans.queries_left}

    @r.get("/dev/queries", response_model=list[schemas.DevQueryOut])
    def dev_queries(
        task: str | None = Query(None, max_length=64),
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0, le=10**9),
        me: Identity = Depends(who),
    ):
        return ref.scorer.history(me.id, task, limit, offset)

    @r.get("/agents/{name}/dev/queries", response_model=list[schemas.DevQueryOut])
    def agent_dev_queries(
        name: str,
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0, le=10**9),
        me: Identity = Depends(who),
    ):
        if name != me.name and not me.is_admin:
            raise ApiError(403, "an agent may read only its own dev queries")
        with ref.db.read() as session:
            agent_id = session.scalar(select(Agent.id).where(Agent.name == name))
        if agent_id is None:
            raise ApiError(404, f"no agent {name!r}")
        return ref.scorer.history(agent_id, None, limit, offset)

    # -- code store --------------------------------------------------------------------------------

    @r.post(
        "/code",
        response_model=list[schemas.PushedRefOut],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def push_code(request: Request, me: Identity = Depends(who)):
        import tempfile

        from starlette.concurrency import run_in_threadpool

        # the bundle goes to a file as it arrives (BodyLimit caps its size): never whole in memory
        with tempfile.TemporaryDirectory(prefix="aar-push-") as tmp:
            path = FsPath(tmp) / "push.bundle"
            size = 0
            with open(path, "wb", buffering=0) as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    out.write(chunk)
            if not size:
                raise ApiError(422, "empty body: send a git bundle (`git bundle create - --all`)")
            try:
                pushed = await run_in_threadpool(ref.code.push_bundle, me.name, path)
            except GitError as exc:
                raise ApiError(422, f"git rejected the bundle: {str(exc)[-300:]}") from exc
        with ref.db.write() as session:
            from aar.referee.db import CodePush

            credit.record_push(session, ref.code, me.id, [p.commit for p in pushed])
            for p in pushed:
                session.add(CodePush(agent_id=me.id, ref=p.ref, commit=p.commit))
            audit.record(
                session,
                agent_id=me.id,
                action="code.push",
                method="POST",
                path=request.url.path,
                detail={"refs": {p.ref: p.commit for p in pushed}, "bytes": size},
            )
        return [{"ref": p.ref, "commit": p.commit} for p in pushed]

    @r.get("/code/refs", response_model=list[schemas.RefOut])
    def code_refs(
        agent: str | None = Query(None, pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$"), _me: Identity = Depends(who)
    ):
        return ref.code.refs(agent)

    @r.delete("/code/refs/{agent}/{name:path}", status_code=204)
    def delete_ref(agent: str, name: str, request: Request, me: Identity = Depends(who)):
        if agent != me.name and not me.is_admin:
            raise ApiError(403, "an agent may delete only its own refs")
        full = f"refs/agents/{agent}/{name}"
        if ".." in name.split("/") or not name:
            raise ApiError(422, "bad ref name")
        try:
            ref.code.delete_ref(full)
        except GitError as exc:
            raise ApiError(422, str(exc)[-300:]) from exc
        with ref.db.write() as session:
            audit.record(
                session,
                agent_id=me.id,
                action="code.delete_ref",
                method="DELETE",
                path=request.url.path,
                detail={"ref": full},
            )
        return Response(status_code=204)

    @r.get(
        "/code/{sha}",
        response_class=Response,
        responses={200: {"content": {"application/gzip": {}}, "description": "tar.gz of the commit's tree"}},
    )
    def get_code(sha: str, request: Request, me: Identity = Depends(who)):
        import tempfile

        from fastapi.responses import StreamingResponse

        budget = ref.config.code_fetches_per_day

        def spent(session) -> None:  # noqa: ANN001
            used = audit.count_today(session, me.id, "code.fetch")
            if used >= budget:
                raise ApiError(
                    429,
                    f"code fetch budget spent: {used} of {budget} a day (code_fetches_per_day); "
                    "resets 00:00 UTC",
                )

        if not me.is_admin:  # a spent budget answers before any git runs
            with ref.db.read() as session:
                spent(session)
        full = ref.code.resolve(sha)  # then 404/422: a typo costs no budget
        # an unnamed temporary file (gone from the disk already), streamed, closed when done or dropped
        out = tempfile.TemporaryFile(prefix="aar-code-")
        try:
            with ref.code.archive_slot(wait=30):  # busy: 429 before any budget is spent
                with ref.db.write() as session:  # counted again under the write lock: no race past it
                    if not me.is_admin:
                        spent(session)
                    audit.record(
                        session,
                        agent_id=me.id,
                        action="code.fetch",
                        method="GET",
                        path=request.url.path,
                        detail={"sha": full},
                    )
                size = ref.code.archive_to(full, out, fmt="tar.gz")
            out.seek(0)
        except BaseException:
            out.close()
            raise

        def chunks():
            with out:
                while data := out.read(1 << 16):
                    yield data

        return StreamingResponse(
            chunks(),
            media_type="application/gzip",
            headers={
                "content-length": str(size),
                "content-disposition": f'attachment; filename="{full[:12]}.tar.gz"',
            },
        )

    # -- official runs -----------------------------------------------------------------------------

    def _view(session, run: Run, me: Identity, names: dict[int, str] | None = None) -> contract.RunView:
        return views.run_view(run, names if names is not None else views.names(session), admin=me.is_admin)

    @r.post("/runs", response_model=contract.RunView, status_code=202)
    def create_run(body: schemas.RunIn, request: Request, me: Identity = Depends(who)):
        run = ref.runs.create(me, body.commit, body.idea_path, body.task, request.url.path)
        with ref.db.read() as session:
            return _view(session, session.get(Run, run.id), me)

    @r.get("/runs", response_model=list[contract.RunView])
    def list_runs(
        agent: str | None = Query(None, max_length=64),
        status: Literal["queued", "running", "waiting", "done", "failed", "cancelled"] | None = None,
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0, le=10**9),
        me: Identity = Depends(who),
    ):
        with ref.db.read() as session:
            q = select(Run).join(Agent, Agent.id == credited_id())
            if agent:
                q = q.where(Agent.name == agent)
            if status:
                q = q.where(Run.status == status)
            rows = session.scalars(q.order_by(Run.id.desc()).limit(limit).offset(offset)).all()
            names = views.names(session)  # once, not per run
            return [_view(session, run, me, names) for run in rows]

    @r.get("/runs/{run_id}", response_model=contract.RunView)
    def get_run(run_id: Id, me: Identity = Depends(who)):
        with ref.db.read() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise ApiError(404, f"no run {run_id}")
            return _view(session, run, me)

    @r.delete("/runs/{run_id}", response_model=contract.RunView)
    def cancel_run(run_id: Id, request: Request, me: Identity = Depends(who)):
        run = ref.runs.cancel(me, run_id, request.url.path)
        with ref.db.read() as session:
            return _view(session, session.get(Run, run.id), me)

    @r.get("/leaderboard", response_model=list[contract.LeaderboardRow])
    def leaderboard(me: Identity = Depends(who)):
        """Done runs, best first by one rule (aar.contract.rank_key): the highest lower CI bound of
        the home task's public PGR as you may see it (released for researchers, exact for admins)."""
        with ref.db.read() as session:
            rows = session.scalars(select(Run).where(Run.status == "done")).all()
            return views.leaderboard(rows, views.names(session), admin=me.is_admin)

    # -- forum -------------------------------------------------------------------------------------

    @r.post("/posts", response_model=schemas.PostOut, status_code=201)
    def create_post(body: schemas.PostIn, request: Request, me: Identity = Depends(who)):
        tags = [t.strip()[:40] for t in body.tags if t.strip()]
        return ref.forum.create(me, body.title, body.body, body.kind, tags, body.cites, request.url.path)

    @r.get("/posts", response_model=schemas.PostPage)
    def search_posts(
        q: str | None = Query(None, max_length=500),
        kind: Literal["result", "hypothesis", "insight", "failure"] | None = None,
        tag: str | None = Query(None, max_length=40),
        author: str | None = Query(None, max_length=64),
        limit: int = Query(20, ge=1, le=100),
        offset: int = Query(0, ge=0, le=10**9),
        _me: Identity = Depends(who),
    ):
        return ref.forum.search(q, kind, tag, author, limit, offset)

    @r.get("/posts/{post_id}", response_model=schemas.PostOut)
    def get_post(post_id: Id, _me: Identity = Depends(who)):
        return ref.forum.get(post_id)

    @r.patch("/posts/{post_id}", response_model=schemas.PostOut)
    def edit_post(post_id: Id, body: schemas.PostPatch, request: Request, me: Identity = Depends(who)):
        return ref.forum.update(me, post_id, body.model_dump(), request.url.path)

    @r.post("/posts/{post_id}/comments", response_model=schemas.CommentOut, status_code=201)
    def add_comment(post_id: Id, body: schemas.CommentIn, request: Request, me: Identity = Depends(who)):
        return ref.forum.comment(me, post_id, body.body, request.url.path)

    @r.get("/posts/{post_id}/comments", response_model=list[schemas.CommentOut])
    def list_comments(
        post_id: Id,
        limit: int = Query(50, ge=1, le=500),
        offset: int = Query(0, ge=0, le=10**9),
        _me: Identity = Depends(who),
    ):
        return ref.forum.comments(post_id, limit, offset)

    @r.post("/posts/{post_id}/vote", response_model=schemas.VoteOut)
    def vote(post_id: Id, body: schemas.VoteIn, request: Request, me: Identity = Depends(who)):
        return ref.forum.vote(me, post_id, body.value, request.url.path)

    # -- admin: review queue and audit -------------------------------------------------------------

    @r.get("/admin/preparation", response_model=list[schemas.PreparationOut])
    def preparation(_admin: Identity = Depends(admin)):
        """Tasks this referee prepares in the background (first result first); [] when none were left."""
        return [] if ref.preparer is None else ref.preparer.snapshot()

    @r.get("/admin/flags", response_model=list[schemas.FlagOut])
    def flags(
        state: Literal["open", "closed", "all"] = "open",
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=10**9),
        _admin: Identity = Depends(admin),
    ):
        return review_flags.list_flags(ref.db, state, limit, offset)

    @r.post("/admin/flags/{flag_id}/close", response_model=schemas.FlagOut)
    def close_flag(flag_id: Id, body: schemas.FlagClose, request: Request, me: Identity = Depends(admin)):
        return review_flags.close_flag(ref.db, me, flag_id, body.resolution, request.url.path)

    @r.post("/admin/runs/{run_id}/review", response_model=contract.AdminRun)
    def review_run(run_id: Id, body: schemas.ReviewIn, request: Request, me: Identity = Depends(admin)):
        run = ref.runs.review(me.id, run_id, body.verdict, body.reason, request.url.path)
        with ref.db.read() as session:
            return _view(session, session.get(Run, run.id), me)

    @r.get("/admin/audit")
    def audit_log(
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=10**9),
        action: str | None = Query(None, max_length=64, description="only entries of this action"),
        full: bool = Query(False, description="re-verify the whole chain, not only what is new"),
        _admin: Identity = Depends(admin),
    ) -> dict:
        with ref.db.read() as session:
            check = audit.check_chain(session, full=full)
            stmt = select(AuditEntry)
            if action:
                stmt = stmt.where(AuditEntry.action == action)
            rows = session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit).offset(offset)).all()
            return {
                "intact": check.intact,
                "entries": check.entries,
                "checked": check.hashed,
                "full": check.full,
                "first_bad_id": check.first_bad_id,
                "items": [
                    {
                        "id": e.id,
                        "ts": e.ts.isoformat(),
                        "agent_id": e.agent_id,
                        "action": e.action,
                        "method": e.method,
                        "path": e.path,
                        "detail": e.detail,
                        "hash": e.hash,
                    }
                    for e in rows
                ],
            }

    return r
