"""``ray``: the referee's coordinator threads claim runs as with ``local``, but each unit becomes a Ray
task on whichever node has the resources its tier asks for (CPUs, GPUs, memory, and the custom
resources named in the config, e.g. ``{"aar_unit": 1}`` so official runs land on dedicated nodes).

Labels never leave the referee's host: a task gets the commit (a tar of its checkout) and the unit's
label-free context, runs the idea in its own sandbox on its node and returns predictions; the referee
validates and scores them. A task whose worker or node dies is retried by Ray (``max_retries``); the
referee records each unit once, so a retry never scores twice.

Options (the config's ``ray`` dict, the campaign's ``ray:``): ``address`` (``host:port`` of the head),
``token`` or ``token_file`` (Ray's token auth; ``RAY_AUTH_TOKEN`` in the environment works too),
``resources`` (custom resources per unit), ``num_cpus`` (per unit, default 1), ``memory_bytes`` (per
unit; default the sandbox's memory limit), ``max_retries`` (default 3), ``concurrent_runs`` (runs
driven at once, default 4). Ray is imported here only, so only when this executor is chosen; it
reads its token once per process, when first imported (one referee process talks to one cluster).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from aar.referee.executors.base import CoordinatedExecutor
from aar.referee.units import Unit, UnitOutput, run_unit

log = logging.getLogger("aar.referee")


def connect(options: dict) -> None:
    """``ray.init`` against the named cluster with token auth on (set before Ray is imported)."""
    address = options.get("address")
    if not address:
        raise ValueError("the ray executor needs ray.address (host:port of the Ray head)")
    token = options.get("token")
    if token is None and options.get("token_file"):
        token = Path(options["token_file"]).read_text().strip()
    os.environ["RAY_AUTH_MODE"] = "token"
    if token:
        os.environ["RAY_AUTH_TOKEN"] = token
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if not ray.is_initialized():
        ray.init(address=address, namespace=options.get("namespace", "aar"), log_to_driver=False)


def _unit_on_node(unit: Unit, code: bytes, scratch_root: str | None) -> UnitOutput:
    """The Ray task: ``run_unit`` on the node Ray chose, which the output names (for the run's log)."""
    import ray

    out = run_unit(unit, code, scratch_root)
    out.info["ray_node"] = ray.get_runtime_context().get_node_id()
    return out


class RayExecutor(CoordinatedExecutor):
    name = "ray"

    def __init__(self, job: Callable[[int], None], claim: Callable[[], int | None], options: dict):
        connect(options)  # first: Ray reads its auth token when it is first imported
        import ray

        self.options = options
        self._remote = ray.remote(_unit_on_node)
        super().__init__(job, int(options.get("concurrent_runs", 4)), claim)

    def _task_options(self, unit: Unit) -> dict:
        opts: dict = {
            "num_cpus": float(self.options.get("num_cpus", unit.cpus)),
            "num_gpus": unit.gpus,
            "max_retries": int(self.options.get("max_retries", 3)),
            "retry_exceptions": False,  # run_unit turns the idea's faults into outputs; only deaths retry
            "resources": dict(self.options.get("resources") or {}),
        }
        memory = int(self.options.get("memory_bytes", unit.memory_bytes) or 0)
        if memory:
            opts["memory"] = memory
        return opts

    def run_units(self, code: bytes, units: list[Unit]) -> Iterator[tuple[Unit, UnitOutput]]:
        import ray

        code_ref = ray.put(code)
        refs = {self._remote.options(**self._task_options(u)).remote(u, code_ref, None): u for u in units}
        pending = list(refs)
        try:
            while pending and not self.stopped:
                ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
                for ref in ready:
                    unit = refs[ref]
                    try:
                        out = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # retries spent (or cancelled): the host's fault
                        out = UnitOutput(
                            None,
                            {
                                "task": unit.task,
                                "seed": unit.seed,
                                "backend": "ray",
                                "lost": True,
                                "error": f"unit lost on the Ray cluster: {type(exc).__name__}",
                            },
                        )
                    yield unit, out
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def shutdown(self, wait: bool = False) -> None:
        super().shutdown(wait)
        import ray

        if ray.is_initialized():
            ray.shutdown()


def build(runs, config) -> RayExecutor:  # noqa: ANN001 (RunService, RefereeConfig)
    return RayExecutor(runs.execute, runs.claim_next, dict(config.ray or {}))
