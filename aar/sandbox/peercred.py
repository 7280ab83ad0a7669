"""Who is at the other end of a Unix socket: the peer's uid, from the kernel (``SO_PEERCRED``).

Sandboxes reach the referee only through a Unix socket bound into them, and each researcher's sandbox
runs as its own uid, which the process cannot forge. Both sides of that socket need the answer: the
referee (``aar.referee.peer``: a token is accepted only from its researcher's uid) and a researcher's
forwarder (``aar.agents.forward``: only its sandbox's uid may use it), so it lives here, below both.
"""

from __future__ import annotations

import socket
import struct

_UCRED = struct.Struct("3i")  # pid, uid, gid


def peer_uid(sock: socket.socket | None) -> int | None:
    """The uid of the process at the other end of a Unix socket, None for anything else."""
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    _pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
    return uid
