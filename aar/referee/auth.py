"""Identity: one bearer token per agent, stored only as a SHA-256 hash; admins are agents with a flag.

Tokens are 256-bit random strings, so a plain hash (no salt, no KDF) is enough: there is nothing to
brute-force, and a constant-time lookup by hash keeps every request cheap.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from dataclasses import dataclass

from sqlalchemy import select

from aar.referee.db import Agent, Database
from aar.referee.errors import ApiError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


@dataclass(frozen=True)
class Identity:
    id: int
    name: str
    is_admin: bool
    uid: int | None = None  # the sandbox uid the identity is bound to (None: any peer)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return "aar_" + secrets.token_urlsafe(32)


def add_agent(db: Database, name: str, *, admin: bool = False, token: str | None = None) -> str:
    """Create an agent and return its token (shown once, never stored in clear). A caller that must
    survive a crash between creating and saving the token (the lab) generates and saves it first."""
    if not NAME_RE.match(name):
        raise ValueError(f"agent name {name!r} must match {NAME_RE.pattern}")
    if token is not None and len(token) < 32:
        raise ValueError("a supplied token must have at least 32 characters")
    token = token or new_token()
    with db.write() as session:
        if session.scalar(select(Agent).where(Agent.name == name)) is not None:
            raise ValueError(f"agent {name!r} already exists")
        session.add(Agent(name=name, token_hash=hash_token(token), is_admin=admin))
    return token


def ensure_agent(db: Database, name: str, token: str, *, admin: bool = False) -> bool:
    """Idempotent registration with a known token: True if created, False if it already existed with
    this token; ValueError if the name is taken by a different token."""
    with db.read() as session:
        agent = session.scalar(select(Agent).where(Agent.name == name))
    if agent is None:
        add_agent(db, name, admin=admin, token=token)
        return True
    if agent.token_hash != hash_token(token) or agent.is_admin != admin:
        raise ValueError(f"agent {name!r} exists with another token or role")
    return False


def bind_uid(db: Database, name: str, uid: int | None) -> None:
    """Bind an agent to its sandbox uid (idempotent; None leaves it unbound)."""
    if uid is None:
        return
    with db.write() as session:
        agent = session.scalar(select(Agent).where(Agent.name == name))
        if agent is None:
            raise ValueError(f"no agent {name!r}")
        other = session.scalar(select(Agent).where(Agent.uid == uid, Agent.name != name))
        if other is not None:
            raise ValueError(f"uid {uid} is bound to agent {other.name!r} already")
        agent.uid = uid


class Authenticator:
    """Bearer token -> Identity, with a small cache (agents are created rarely, requests are many)."""

    def __init__(self, db: Database):
        self.db = db
        self._cache: dict[str, Identity] = {}
        self._lock = threading.Lock()

    def identify(self, authorization: str | None) -> Identity:
        if not authorization:
            raise ApiError(401, "missing Authorization: Bearer <token> header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "Authorization header must be 'Bearer <token>'")
        digest = hash_token(token.strip())
        ident = self._cache.get(digest)
        if ident is not None:
            return ident
        with self.db.read() as session:
            agent = session.scalar(select(Agent).where(Agent.token_hash == digest))
        if agent is None:
            raise ApiError(401, "unknown token")
        ident = Identity(agent.id, agent.name, agent.is_admin, agent.uid)
        with self._lock:
            self._cache[digest] = ident
        return ident

    def cached(self, authorization: str | None, peer_uid: int | None) -> Identity | None:
        """The caller's identity when it needs no database (a known token over TCP), else None: the
        request path calls this on the event loop and goes to a worker thread only on None."""
        if peer_uid is not None or not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self._cache.get(hash_token(token.strip()))

    def identify_peer(self, authorization: str | None, peer_uid: int | None) -> Identity:
        """The caller's identity, given the peer uid of a Unix-socket connection (None over TCP).

        On the socket a token is accepted only from the uid its agent is bound to (root, the lab
        and the referee's operator, holds every token anyway), and a peer whose uid is bound to an
        agent is that agent without a token. A token presented by another bound uid is refused:
        a researcher cannot act with a colleague's stolen token."""
        if peer_uid is None:
            return self.identify(authorization)
        by_uid = self._by_uid(peer_uid)
        if not authorization:
            if by_uid is not None:
                return by_uid
            return self.identify(authorization)
        ident = self.identify(authorization)
        if peer_uid != 0 and (
            (ident.uid is not None and ident.uid != peer_uid)
            or (by_uid is not None and by_uid.id != ident.id)
        ):
            raise ApiError(403, f"this token is not accepted from uid {peer_uid}: it is another researcher's")
        return ident

    def _by_uid(self, uid: int) -> Identity | None:
        if uid == 0:
            return None
        with self.db.read() as session:
            agent = session.scalar(select(Agent).where(Agent.uid == uid))
        return None if agent is None else Identity(agent.id, agent.name, agent.is_admin, agent.uid)
