"""Start and stop Ray nodes as separate process groups (``ray start --block``): a small cluster for the
tests, the bench and a local two-node try on one machine. Never imports ray (it drives the ``ray`` CLI
next to this interpreter), so the lab and the referee stay Ray-free unless the ray executor is chosen.

Each node gets its own temp dir and its own ports, so a head and a worker can share one host; stopping
a node kills only its own process group (``ray stop`` would stop every Ray process on the machine).
Token auth is always on (``RAY_AUTH_MODE=token``); the dashboard is off unless asked for.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env(token: str) -> dict[str, str]:
    """The environment every node and every driver of one cluster shares: token auth on, one token."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0"}


def new_token() -> str:
    return secrets.token_hex(32)


@dataclass
class RayNode:
    """One ``ray start --block`` process group: a head or a worker node."""

    name: str
    temp_dir: Path
    proc: subprocess.Popen
    log: Path

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the node's whole process group (raylet, its workers, the GCS on a head): a dead node."""
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@dataclass
class LocalCluster:
    """A head and any number of worker nodes on this host, bound to ``host`` (loopback by default)."""

    root: Path
    host: str = "127.0.0.1"
    token: str = field(default_factory=new_token)
    port: int = field(default_factory=free_port)
    object_store_bytes: int = 100 * 1024 * 1024
    nodes: list[RayNode] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _start(self, name: str, args: list[str], num_cpus: int, resources: dict | None, memory: int | None):
        self.root.mkdir(parents=True, exist_ok=True)
        # short: Ray's Unix sockets live under it (AF_UNIX paths are at most 107 bytes)
        temp = Path(tempfile.mkdtemp(prefix=f"aar-ray-{name}-"))
        log = self.root / f"{name}.log"
        ports = [free_port() for _ in range(7)]
        cmd = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--block",
            *args,
            f"--node-ip-address={self.host}",
            f"--temp-dir={temp}",
            f"--num-cpus={num_cpus}",
            "--num-gpus=0",
            f"--object-store-memory={self.object_store_bytes}",
            f"--resources={json.dumps(resources or {})}",
            f"--node-manager-port={ports[0]}",
            f"--object-manager-port={ports[1]}",
            f"--dashboard-agent-listen-port={ports[2]}",
            f"--dashboard-agent-grpc-port={ports[3]}",
            f"--runtime-env-agent-port={ports[4]}",
            f"--metrics-export-port={ports[5]}",
            "--disable-usage-stats",
        ]
        if memory is not None:
            cmd.append(f"--memory={memory}")
        env = {**os.environ, **ray_env(self.token)}
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        node = RayNode(name, temp, proc, log)
        self.nodes.append(node)
        return node

    def start_head(
        self, num_cpus: int = 1, resources: dict | None = None, memory: int | None = None
    ) -> RayNode:
        args = [
            "--head",
            f"--port={self.port}",
            "--include-dashboard=false",
        ]
        return self._start("head", args, num_cpus, resources, memory)

    def start_worker(
        self, name: str, num_cpus: int = 1, resources: dict | None = None, memory: int | None = None
    ) -> RayNode:
        return self._start(name, [f"--address={self.address}"], num_cpus, resources, memory)

    def wait_nodes(self, count: int, timeout: float = 120.0) -> None:
        """Block until ``count`` nodes are alive (asks the GCS through ``ray status``)."""
        env = {**os.environ, **ray_env(self.token)}
        ray_cli = str(Path(sys.executable).with_name("ray"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node.proc.poll() is not None and node.name == "head":
                    raise RuntimeError(f"ray head exited: {node.log.read_text()[-2000:]}")
            out = subprocess.run(
                [ray_cli, "status", f"--address={self.address}"], capture_output=True, text=True, env=env
            )
            if out.returncode == 0 and _alive(out.stdout) >= count:
                return
            time.sleep(1.0)
        raise TimeoutError(f"{count} ray nodes not alive after {timeout:.0f} s")

    def kill_node(self, node: RayNode) -> None:
        """SIGKILL one node's process group (a dead node, as when its host fails) and forget it."""
        node.kill()
        self.nodes.remove(node)
        shutil.rmtree(node.temp_dir, ignore_errors=True)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.kill()
            shutil.rmtree(node.temp_dir, ignore_errors=True)
        self.nodes.clear()


def _alive(status: str) -> int:
    """Alive nodes in ``ray status`` output: the lines under 'Active:' that name a node."""
    active, n = False, 0
    for line in status.splitlines():
        s = line.strip()
        if s.startswith("Active:"):
            active = True
            continue
        if active:
            if s.startswith(("Pending:", "Recent failures:")) or not s:
                break
            if "node_" in s:
                n += 1
    return n
