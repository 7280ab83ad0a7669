"""The FastAPI application: wiring of services, error handling, size limits; routes live in routes.py."""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aar.referee.auth import Authenticator
from aar.referee.codestore import CodeStore
from aar.referee.config import RefereeConfig
from aar.referee.datadir import DataStore
from aar.referee.db import Database
from aar.referee.errors import ApiError
from aar.referee.executor import Executor, LocalPoolExecutor, NullExecutor
from aar.referee.forum import Forum
from aar.referee.runs import RunService
from aar.referee.ladder import LadderRule
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

    @classmethod
    def build(cls, config: RefereeConfig) -> Referee:
        data = DataStore(config.data_dir)
        db = Database(config.database_url)
        db.create_all()
        code = CodeStore(
            config.data_dir / "code.git",
            max_blob_bytes=config.max_blob_bytes,
            max_commits=config.max_commits_per_push,
        )
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
                rule=LadderRule(
                    alpha=config.ladder_alpha, min_rows=config.ladder_min_rows, jitter=config.ladder_jitter
                ),
                key=ladder_key(config.data_dir),
            ),
            code=code,
            runs=RunService(config, db, data, code),
            forum=Forum(db),
        )

    def start(self, executor: Executor | None = None) -> None:
        if executor is None:
            executor = (
                LocalPoolExecutor(self.runs.execute, self.config.run_workers)
                if self.config.executor == "local"
                else NullExecutor()
            )
        self.executor = executor
        self.runs.executor = executor
        for run_id in self.runs.pending():
            executor.submit(run_id)

    def stop(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False)
        self.db.dispose()


class BodyLimit:
    """Pure ASGI middleware: 413 for bodies over the limit, counted as they stream (chunked too)."""

    def __init__(self, app, default: int, bundle: int):
        self.app = app
        self.default = default
        self.bundle = bundle

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
                    return await _send_json(send, 413, f"request body exceeds {limit} bytes")
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
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


class _TooLarge(Exception):
    pass


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

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError):
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException):
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error (logged)"}, status_code=500)

    app.include_router(build_router(ref), prefix=API)
    app.include_router(build_dashboard(ref))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit, default=config.max_body_bytes, bundle=config.max_bundle_bytes)
    return app
