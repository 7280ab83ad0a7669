"""Researchers as Ray actors (``ray: {researchers: true}`` in the campaign, with ``--ray HOST:PORT``).

Each researcher becomes one Ray actor with its own resources (``researcher_cpus``, one GPU when the
researcher says ``gpus: true``, ``researcher_resources`` e.g. ``{"aar_researcher": 1}``). The actor
launches the very process the local lab launches (``aar agent run``, same arguments), except that its
``--referee`` is a per-researcher Unix socket on the actor's node which forwards to the referee's TCP
endpoint (``aar.agents.forward``): the sandbox still has no network, and the in-sandbox CLI and MCP
tools talk to that socket exactly as locally.

The actor has ``max_restarts``: when it or its node dies, Ray restarts it (on any node with the
resources) and its constructor launches the researcher again, which resumes from its transcript (the
same path the local lab's restart takes). The researcher dies with its actor (``AAR_PARENT_PID``).

Storage: homes, transcripts and the public export live in the lab directory, which every node must
see at the same path (trivially true on one machine; a shared filesystem such as NFS on a real
cluster). The token reaches only this researcher's actor, as a constructor argument (Ray keeps actor
arguments in its GCS, which token auth guards); no label is sent. Over TCP the referee knows no peer
uid, so the sandbox is not uid-bound as a local root lab's is: the researcher's token is in its sandbox's
environment (as in a lab run without root), and the forwarder checks no uid (whoever can reach the
socket could reach the TCP endpoint anyway, and still needs a token). Ray is imported here only.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from aar.agents.home import UID_BOUND_ENV

RESTARTS = 3  # Ray restarts of one researcher's actor (its node died, it was killed)
POLL_TIMEOUT = 30.0


class _Researcher:
    """The actor's body: forwarder + ``aar agent run`` on this node."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        referee: tuple[str, int],
        log: str,
        tag: str,
    ) -> None:
        from aar.agents.forward import UnixToTcpForwarder
        from aar.lab import procs

        # one folder per researcher and campaign: a restarted actor on the same node replaces a killed one's
        key = hashlib.sha256(f"{tag}/{name}".encode()).hexdigest()[:12]
        self.sockdir = Path(tempfile.gettempdir()) / f"aar-fwd-{key}"
        shutil.rmtree(self.sockdir, ignore_errors=True)
        self.sockdir.mkdir(mode=0o755)
        sock = self.sockdir / f"{name}.sock"
        self.forwarder = UnixToTcpForwarder(sock, referee[0], referee[1], allow_uid=None).start()
        full = list(args)
        full[full.index("--referee") + 1] = str(sock)
        self.proc = procs.spawn(full, log=Path(log), env=env, tag=tag)
        self.started = time.time()

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def poll(self) -> int | None:
        return self.proc.poll()

    def stop(self, grace: float) -> int:
        from aar.lab import procs

        code = procs.stop(self.proc, grace)
        self.forwarder.stop()
        shutil.rmtree(self.sockdir, ignore_errors=True)
        return code


class RayResearcher:
    """What the lab holds for a researcher on Ray: ``poll()`` and ``returncode`` like a Popen."""

    pid = None  # nothing local to record or signal

    def __init__(self, actor) -> None:  # noqa: ANN001
        self.actor = actor
        self.returncode: int | None = None

    def poll(self) -> int | None:
        import ray

        if self.returncode is not None:
            return self.returncode
        try:
            code = ray.get(self.actor.poll.remote(), timeout=POLL_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            return None  # being restarted (or busy): still running
        except ray.exceptions.RayActorError:  # dead for good: restarts spent
            code = -9
        if code is not None:  # the researcher ended: its actor closes its forwarder and goes
            self.stop(0.0)
            self.returncode = code
        return self.returncode

    def stop(self, grace: float) -> int:
        import ray

        try:
            self.returncode = ray.get(self.actor.stop.remote(grace), timeout=grace + 30)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            self.returncode = -9
        ray.kill(self.actor, no_restart=True)
        return self.returncode


def demand(settings: dict, gpus: bool) -> dict[str, float]:
    """What one researcher's actor asks of the cluster for as long as it lives."""
    ask = {"CPU": float(settings.get("researcher_cpus", 1.0)), "GPU": 1.0 if gpus else 0.0}
    for key, value in (settings.get("researcher_resources") or {}).items():
        ask[key] = ask.get(key, 0.0) + float(value)
    return {k: v for k, v in ask.items() if v > 0}


def how_many_fit(nodes: list[dict[str, float]], asks: list[dict[str, float]]) -> int:
    """How many of ``asks`` (in order) the nodes' total resources can host at once: each actor lives on
    one node, so a need is met by one node's resources, not by the cluster's sum (first fit)."""
    free = [dict(n) for n in nodes]
    placed = 0
    for ask in asks:
        for node in free:
            if all(node.get(k, 0.0) >= v for k, v in ask.items()):
                for k, v in ask.items():
                    node[k] -= v
                placed += 1
                break
    return placed


def capacity_warning(settings: dict, researchers: list[tuple[str, bool]]) -> str | None:
    """Why not every researcher can run at once on the cluster as it is now, or None. An actor that
    does not fit waits, silently in Ray, for another to end: the campaign then runs its researchers one
    after another (each budget starts when its actor does), which a user must hear about up front."""
    from aar.referee.executors.ray import connect

    connect(settings)
    import ray

    nodes = [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
    asks = [demand(settings, gpus) for _name, gpus in researchers]
    fit = how_many_fit(nodes, asks)
    if fit >= len(asks):
        return None
    wanted = ", ".join(f"{k}={v:g}" for k, v in asks[0].items())
    return (
        f"the Ray cluster can host {fit} of {len(asks)} researchers at once (each asks {wanted} on one "
        f"node; alive nodes: {len(nodes)}): the others wait for one to end, so the campaign runs them "
        f"in turn. Add nodes or lower ray.researcher_cpus / ray.researcher_resources."
    )


def launch(
    settings: dict,
    *,
    name: str,
    args: list[str],
    env: dict[str, str],
    referee: tuple[str, int],
    log: Path,
    tag: str,
    gpus: bool,
) -> RayResearcher:
    """Create researcher ``name``'s actor (connects to the cluster first: the lab's process only)."""
    from aar.referee.executors.ray import connect

    connect(settings)
    import ray

    env = {k: v for k, v in env.items() if k != UID_BOUND_ENV}  # TCP has no peer uid: token in env

    actor_cls = ray.remote(_Researcher).options(
        name=f"aar-researcher-{tag}-{name}-{uuid.uuid4().hex[:6]}",  # a relaunch never meets the old name
        namespace=settings.get("namespace", "aar"),
        num_cpus=settings.get("researcher_cpus", 1.0),
        num_gpus=1 if gpus else 0,
        resources=settings.get("researcher_resources") or None,
        max_restarts=RESTARTS,
        max_task_retries=0,
        lifetime=None,
    )
    actor = actor_cls.remote(name, args, env, referee, str(log.resolve()), tag)
    return RayResearcher(actor)
