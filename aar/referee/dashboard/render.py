"""HTML plumbing for the dashboard: the autoescaping template environment, error pages, and the route
class that turns every error of a dashboard route into an HTML page with the security headers.

Why a route class: the app's exception handlers answer JSON (they serve /api/v1); the dashboard's
humans should see a page, so its routes catch their own errors before those handlers do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from starlette.exceptions import HTTPException as StarletteHTTPException

from aar.referee.errors import ApiError

from .researchers import clip
from .security import COOKIE, LoginRequired

log = logging.getLogger("aar.referee")
TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
HEADINGS = {
    401: "Not logged in",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    422: "Invalid request",
    500: "Server error",
}
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # no-referrer would make browsers send "Origin: null" on POST
    "cache-control": "no-store",
}


def script_json(data: object) -> Markup:
    """JSON for a <script type="application/json"> tag: '<' escaped, so text can never close the tag."""
    text = json.dumps(data, ensure_ascii=False, default=str)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def json_text(data: object, limit: int = 2000) -> str:
    """Evidence dicts as plain (autoescaped) text."""
    return clip(json.dumps(data, ensure_ascii=False, default=str), limit)


def make_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined, trim_blocks=True
    )
    env.filters["json_text"] = json_text
    return env


class Pages:
    """Rendering with the headers every dashboard response carries."""

    def __init__(self) -> None:
        self.env = make_env()

    def render(self, request: Request, template: str, /, http_status: int = 200, **context) -> HTMLResponse:
        context.setdefault("viewer", getattr(request.state, "viewer", None))
        context.setdefault("active", "")
        context.setdefault("title", "")
        html = self.env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=http_status)

    def error(self, request: Request, status: int, message: str) -> HTMLResponse:
        heading = HEADINGS.get(status, "Error")
        response = self.render(
            request,
            "error.html",
            http_status=status,
            title=heading,
            status=status,
            heading=heading,
            message=message,
        )
        if status == 401 and COOKIE in request.cookies and "authorization" not in request.headers:
            response.delete_cookie(COOKIE, path="/")  # a stale or revoked token: let the user log in again
        return response


def html_route_class(pages: Pages) -> type[APIRoute]:
    """A route class whose errors are HTML pages and whose responses carry the security headers."""

    class HtmlRoute(APIRoute):
        def get_route_handler(self) -> Callable:
            original = super().get_route_handler()

            async def handler(request: Request) -> Response:
                try:
                    response = await original(request)
                except LoginRequired:
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    response = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
                except ApiError as exc:
                    response = pages.error(request, exc.status, exc.message)
                except RequestValidationError as exc:
                    response = pages.error(request, 422, _validation_message(exc))
                except StarletteHTTPException as exc:
                    response = pages.error(request, exc.status_code, str(exc.detail))
                except Exception:
                    log.exception("dashboard error on %s %s", request.method, request.url.path)
                    response = pages.error(request, 500, "internal error (logged)")
                for key, value in SECURITY_HEADERS.items():
                    response.headers.setdefault(key, value)
                return response

            return handler

    return HtmlRoute


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"
