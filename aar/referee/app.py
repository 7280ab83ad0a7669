"""The FastAPI application: wiring of services, error handling, size limits; routes live in routes.py."""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from aar.referee import audit, executors
from aar.referee.auth import Authenticator
from aar.referee.codestore import CodeStore
from aar.referee.config import RefereeConfig
from aar.referee.datadir import DataStore
from aar.referee.db import Database
from aar.referee.errors import ApiError
from aar.referee.executors import Executor
from aar.referee.forum import Forum
from aar.referee.ladder import LadderRule
from aar.referee.preparer import TaskPreparer
from aar.referee.release import PublicRelease
from aar.referee.runs import RunService
from aar.referee.scoring import DevScorer, ladder_key

log = logging.getLogger("aar.referee")
API = "/api/v1"


@dataclass
class Referee:
    """Every service of one referee, built from a config."""

    config: RefereeConfig
    db: Database
    data: DataStore
    auth: Authenticator
    scorer: DevScorer
    code: CodeStore
    runs: RunService
    forum: Forum
    executor: Executor | None = None
    preparer: TaskPreparer | None = None

    @classmethod
    def build(cls, config: RefereeConfig) -> Referee:
        data = DataStore(config.data_dir)
        db = Database(config.database_url)
        db.create_all()
        code = CodeStore(
            config.data_dir / "code.git",
            max_blob_bytes=config.max_blob_bytes,
            max_commits=config.max_commits_per_push,
            max_files=config.max_tree_files,
            max_tree_bytes=config.max_tree_bytes,
        )
        rule = LadderRule(
            alpha=config.ladder_alpha, min_rows=config.ladder_min_rows, jitter=config.ladder_jitter
        )
        key = ladder_key(config.data_dir)
        return cls(
            config=config,
            db=db,
            data=data,
            auth=Authenticator(db),
            scorer=DevScorer(
                db,
                data,
                budget_per_day=config.dev_budget_per_day,
                task_budget_per_day=config.dev_task_budget_per_day,
                rule=rule,
                key=key,
            ),
            code=code,
            runs=RunService(config, db, data, code, PublicRelease(rule, key)),
            forum=Forum(db, config),
        )

    def start(self, executor: Executor | None = None) -> None:
        if executor is None:
            executor = executors.build(self.config.executor, self.runs, self.config)
        self.executor = executor
        self.runs.executor = executor
        self.runs.stopping.clear()
        if self.data.pending() or self.runs.baselines_behind():
            # first result first: held-out tasks left to this referee to prepare, and baselines to extend
            self.preparer = TaskPreparer(self.data, then=lambda _task: self.runs.ensure_baselines(add=False))
            self.preparer.start()
        for run_id in self.runs.pending():
            executor.submit(run_id)

    def stop(self) -> None:
        self.runs.stopping.set()  # runs waiting for a task being prepared give up (re-queued next start)
        if self.preparer is not None:
            self.preparer.stopped.set()
        if self.executor is not None:
            self.executor.shutdown(wait=False)
        self.db.dispose()


class BodyLimit:
    """Pure ASGI middleware: 413 for bodies over the limit, counted as they stream (chunked too).
    ``on_refused(method, path, authorization, status, message)`` (sync, never raising) is called after
    a 413 is sent: the audit log's record of it."""

    def __init__(self, app, default: int, bundle: int, on_refused=None):  # noqa: ANN001
        self.app = app
        self.default = default
        self.bundle = bundle
        self.on_refused = on_refused

    async def _refused(self, scope, message: str) -> None:  # noqa: ANN001
        if self.on_refused is None:
            return
        from starlette.concurrency import run_in_threadpool

        auth = None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                auth = value.decode("latin-1")
        try:
            await run_in_threadpool(
                self.on_refused, scope.get("method", "?"), scope.get("path", ""), auth, 413, message
            )
        except Exception:
            log.exception("could not record a 413 in the audit log")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.bundle if scope["path"] == f"{API}/code" else self.default
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    await _send_json(send, 413, f"request body exceeds {limit} bytes")
                    return await self._refused(scope, f"request body exceeds {limit} bytes")
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(limit)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_json(send, 413, f"request body exceeds {limit} bytes")
            await self._refused(scope, f"request body exceeds {limit} bytes")


class _TooLarge(StarletteHTTPException):
    """An HTTPException so that FastAPI's body parsing re-raises it (any other exception there becomes
    a 400) and the app's handler answers (and audits) the 413; the middleware answers it otherwise."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body exceeds {limit} bytes")


async def _send_json(send, status: int, message: str) -> None:
    body = json.dumps({"detail": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def create_app(
    config: RefereeConfig, *, referee: Referee | None = None, executor: Executor | None = None
) -> FastAPI:
    from starlette.staticfiles import StaticFiles

    from aar.referee.dashboard import STATIC, build_dashboard
    from aar.referee.routes import build_router

    ref = referee or Referee.build(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        ref.start(executor)
        yield
        ref.stop()

    app = FastAPI(
        title="aar referee",
        version="1",
        openapi_url=f"{API}/openapi.json",
        docs_url=f"{API}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.referee = ref

    # every refused request (4xx) goes to the audit log, after the answer is sent (see audit.RefusalLog)
    refusals = audit.RefusalLog(ref.db, ref.auth.identify)
    app.state.refusals = refusals

    def _refuse(request: Request, status: int, message: str, headers=None, token_invalid=False):  # noqa: ANN001
        background = None
        if 400 <= status < 500:
            background = BackgroundTask(
                refusals.note,
                request.method,
                request.url.path,
                request.headers.get("authorization"),
                status,
                message,
                token_invalid=token_invalid,
            )
        return JSONResponse({"detail": message}, status_code=status, headers=headers, background=background)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        # a 401 is the authenticator's: no second look-up of a token just found invalid
        return _refuse(
            request, exc.status, exc.message, getattr(exc, "headers", None), token_invalid=exc.status == 401
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return _refuse(request, 422, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return _refuse(request, exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error (logged)"}, status_code=500)

    app.include_router(build_router(ref), prefix=API)
    app.include_router(build_dashboard(ref))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(
        BodyLimit, default=config.max_body_bytes, bundle=config.max_bundle_bytes, on_refused=refusals.note
    )
    return app
