"""Who is on the other end of the referee's Unix socket: the peer's uid, from the kernel.

Why: the socket is bind-mounted into every researcher's sandbox, and each researcher runs as its
own uid. ``SO_PEERCRED`` gives the uid of the connecting process, which it cannot forge, so the
referee can refuse a token presented by the wrong researcher and identify a researcher with no token
at all (``Authenticator.identify_peer``). The uid travels in the ASGI scope under ``PEER_UID``; TCP
connections carry none.
"""

from __future__ import annotations

import importlib.util
import os
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol

from aar.sandbox.peercred import peer_uid

PEER_UID = "aar.peer_uid"


def no_delay(sock: socket.socket | None) -> None:
    """Switch Nagle's algorithm off on a TCP connection.

    Why: asyncio does it only for sockets whose ``proto`` is IPPROTO_TCP, and a listener made by
    ``socket.create_server`` (aar.referee.listen) has proto 0, so its connections kept Nagle on. A
    response goes out in two writes (head, body); the second waited for the client's delayed ACK,
    which put a 40-50 ms floor under every request after the first on a kept-alive connection
    (measured: 45 ms for GET /me on a reused httpx connection, 1.5 ms with this)."""
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class _PeerCred:
    """Mixed into uvicorn's HTTP protocols: puts the peer's uid into every request's scope on a Unix
    socket, and sends without Nagle's delay on TCP."""

    app: object

    def connection_made(self, transport) -> None:  # noqa: ANN001 (asyncio.Transport)
        super().connection_made(transport)  # type: ignore[misc]
        sock = transport.get_extra_info("socket")
        no_delay(sock)
        uid = peer_uid(sock)
        if uid is None:
            return
        inner = self.app

        async def with_peer(scope, receive, send) -> None:  # noqa: ANN001 (ASGI)
            await inner({**scope, PEER_UID: uid}, receive, send)  # type: ignore[operator]

        self.app = with_peer


class PeerCredH11(_PeerCred, H11Protocol):
    """h11: pure Python."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class PeerCredHttpTools(_PeerCred, HttpToolsProtocol):
        """httptools: the C parser."""

except ImportError:  # pragma: no cover (httptools is a dependency)
    PeerCredHttpTools = None  # type: ignore[assignment,misc]


# The server stack (`aar referee serve`): "fast" = httptools (C HTTP parser) on uvloop, measured to
# halve the referee's p99 under load (README, "The referee under load"); "pure" = h11 on asyncio, the
# earlier stack, kept as a fallback and for that side-by-side measurement (bench/referee_load.py).
STACKS = ("fast", "pure")


def server_stack() -> tuple[type, str]:
    """(HTTP protocol class, uvicorn loop) for ``$AAR_REFEREE_STACK`` (default "fast"; "pure" where
    httptools or uvloop is missing)."""
    stack = os.environ.get("AAR_REFEREE_STACK", "fast")
    if stack not in STACKS:
        raise ValueError(f"AAR_REFEREE_STACK={stack!r}: expected one of {', '.join(STACKS)}")
    if stack == "fast" and PeerCredHttpTools is not None and importlib.util.find_spec("uvloop") is not None:
        return PeerCredHttpTools, "uvloop"
    return PeerCredH11, "asyncio"
