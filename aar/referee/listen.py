"""Listening sockets for the referee: a Unix socket (bound into researchers' sandboxes, which have no
network) and/or a loopback TCP port (the dashboard for humans), served by one uvicorn server."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from aar.atomic import atomic_write


def bind_sockets(
    host: str, port: int | None, uds: Path | None, port_file: Path | None
) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    if uds is not None:
        uds = Path(uds)
        if uds.exists():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(uds))
            except OSError:
                uds.unlink()  # stale socket of a killed server
            else:
                probe.close()
                raise OSError(f"{uds} is in use by a running server")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(uds))
        os.chmod(uds, 0o666)  # access is by bearer token; the socket's directory decides who can reach it
        sockets.append(sock)
    if port is not None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, reuse_port=False)
        sockets.append(sock)
        if port_file is not None:
            atomic_write(port_file, str(sock.getsockname()[1]), durable=False)
    for sock in sockets:
        sock.set_inheritable(True)
    return sockets
