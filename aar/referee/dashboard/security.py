"""Who is looking, and may they post: the dashboard's session cookie, CSRF tokens and origin checks.

The dashboard reuses the referee's bearer tokens (an admin's or an agent's); there are no passwords and
no server-side sessions. The login form puts the token in an HttpOnly, SameSite=Strict cookie, so page
scripts cannot read it and other sites cannot make the browser send it. Every POST additionally needs
(a) an Origin (or Referer) that matches the Host, when the browser sends one, and (b) a CSRF field
equal to HMAC-SHA256(server secret, sha256(token)): a page of this dashboard can embed it, a forged
form on another site cannot compute it. The secret is random per process, so a restart invalidates
open forms (the user reloads the page), never sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request

from aar.referee.auth import Authenticator, Identity, hash_token
from aar.referee.errors import ApiError

COOKIE = "aar_session"
MAX_TOKEN_CHARS = 200  # real tokens are ~47 characters; anything longer is not worth hashing


class LoginRequired(Exception):
    """Raised for a browser GET without credentials: the page answers with a redirect to /login."""


@dataclass(frozen=True)
class Viewer:
    """An authenticated visitor: the referee identity plus the CSRF value its forms must carry."""

    me: Identity
    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.me.is_admin

    @property
    def name(self) -> str:
        return self.me.name


class Guard:
    """Authentication and CSRF checks for one dashboard (one process-wide secret)."""

    def __init__(self, auth: Authenticator, secret: bytes | None = None):
        self.auth = auth
        self.secret = secret or secrets.token_bytes(32)

    def csrf_for(self, token: str) -> str:
        return hmac.new(self.secret, hash_token(token).encode(), hashlib.sha256).hexdigest()

    def identify_token(self, token: str) -> Identity:
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise ApiError(401, "unknown token")
        return self.auth.identify(f"Bearer {token}")

    def viewer(self, request: Request) -> Viewer:
        """The visitor, from ``Authorization: Bearer`` (scripts) or the session cookie (browsers).

        No credentials: a browser GET is sent to /login, anything else gets a 401 page. A token the
        referee does not know is a 401 either way (with the stale cookie cleared by the error page).
        """
        header = request.headers.get("authorization")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, "Authorization header must be 'Bearer <token>'")
            token = token.strip()
        else:
            token = request.cookies.get(COOKIE, "")
            if not token:
                if request.method == "GET" and wants_html(request):
                    raise LoginRequired()
                raise ApiError(401, "not logged in: log in at /login with your referee token")
        return Viewer(self.identify_token(token), self.csrf_for(token))

    def check_post(self, request: Request, viewer: Viewer, csrf: str) -> None:
        """A state-changing form post must come from one of our pages (same origin, valid CSRF field)."""
        check_same_origin(request)
        if not csrf or not hmac.compare_digest(csrf.encode(), viewer.csrf.encode()):
            raise ApiError(403, "invalid or missing CSRF token: reload the page and submit the form again")


def wants_html(request: Request) -> bool:
    """Browsers ask for text/html; API clients and scripts (``*/*``) get a plain 401 instead of a redirect."""
    return "text/html" in request.headers.get("accept", "")


def check_same_origin(request: Request) -> None:
    """Reject cross-site POSTs by what the browser says about where the form came from.

    Browsers send Origin on every POST (and Sec-Fetch-Site in current versions); a request without
    either is not from a browser page and needs the CSRF field anyway.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise ApiError(403, f"cross-site request refused (Sec-Fetch-Site: {site[:32]})")
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return
    host = request.headers.get("host", "")
    if source == "null" or urlsplit(source).netloc.lower() != host.lower():
        raise ApiError(403, "cross-origin request refused: the form must be posted from this dashboard")


def safe_next(target: str | None) -> str:
    """Where to go after login: only a path on this site (no scheme, no //host, no backslash tricks)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(c) < 0x20 for c in target):
        return "/"
    return target
