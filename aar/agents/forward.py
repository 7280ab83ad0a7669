"""A per-researcher Unix socket that forwards to the referee's TCP endpoint.

A researcher on another host (a Ray actor on any node) reaches the referee over TCP with its token;
its sandbox still has no network. Inside the sandbox the in-sandbox CLI and MCP tools talk to a Unix
socket bind-mounted from the researcher's host, as on one machine; this forwarder, outside the
sandbox, copies bytes between each connection on that socket and a new TCP connection to the
referee. Only the researcher's sandbox uid may connect (``SO_PEERCRED``, which the peer cannot
forge); the requests carry the researcher's token, so the referee authenticates them as over TCP.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from pathlib import Path

from aar.sandbox.peercred import peer_uid

CHUNK = 64 * 1024


class UnixToTcpForwarder:
    """Listen on ``path`` (mode 0660/0666 as asked) and forward every connection to ``host:port``."""

    def __init__(self, path: Path, host: str, port: int, *, allow_uid: int | None = None, mode: int = 0o666):
        self.path = Path(path)
        self.host, self.port = host, port
        self.allow_uid = allow_uid
        self.mode = mode
        self.refused = 0  # connections from another uid
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"aar-forward-{self.path.name}", daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> UnixToTcpForwarder:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"forwarder on {self.path} did not start")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self.path.unlink(missing_ok=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self.path.unlink(missing_ok=True)
        self._server = self._loop.run_until_complete(
            asyncio.start_unix_server(self._handle, path=str(self.path))
        )
        os.chmod(self.path, self.mode)
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if self.allow_uid is not None and peer_uid(sock) != self.allow_uid:
            self.refused += 1
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.close()
            return
        upstream = up_writer.get_extra_info("socket")
        if upstream is not None:
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass
    finally:
        if reader.at_eof():
            writer.close()
