"""The per-researcher forwarder: HTTP over its Unix socket reaches a real referee on TCP with the
researcher's token (the sandbox's path when the researcher runs on another host); a peer with
another uid is refused before a byte is forwarded."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from aar.agents.forward import UnixToTcpForwarder
from aar.referee.app import create_app
from aar.referee.auth import add_agent
from aar.referee.config import RefereeConfig
from aar.referee.datadir import init_data_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def referee_tcp(tmp_path):
    data = tmp_path / "data"
    init_data_dir(data, tasks=["navigate"], tier="fast", max_rows=500, log=lambda *_a: None)
    app = create_app(RefereeConfig.load(data, executor="none"))
    token = add_agent(app.state.referee.db, "alice")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    yield port, token
    server.should_exit = True
    thread.join(30)


def test_unix_socket_forwards_to_the_referee_over_tcp(referee_tcp, tmp_path: Path) -> None:
    port, token = referee_tcp
    fwd = UnixToTcpForwarder(tmp_path / "referee.sock", "127.0.0.1", port, allow_uid=os.getuid()).start()
    try:
        transport = httpx.HTTPTransport(uds=str(tmp_path / "referee.sock"))
        with httpx.Client(transport=transport, base_url="http://referee/api/v1", timeout=30) as http:
            assert http.get("/me").status_code == 401  # no token: the referee says no, as over TCP
            me = http.get("/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200 and me.json()["name"] == "alice"
        other = UnixToTcpForwarder(tmp_path / "other.sock", "127.0.0.1", port, allow_uid=os.getuid() + 1)
        other.start()
        try:
            with httpx.Client(
                transport=httpx.HTTPTransport(uds=str(tmp_path / "other.sock")), timeout=10
            ) as h:
                with pytest.raises(httpx.HTTPError):
                    h.get("http://referee/api/v1/me", headers={"Authorization": f"Bearer {token}"})
            assert other.refused == 1
        finally:
            other.stop()
    finally:
        fwd.stop()
