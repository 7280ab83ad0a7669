"""``none``: queue only (runs stay ``queued``), for a referee that leaves execution to another host."""

from __future__ import annotations

from aar.referee.executors.base import Executor


class NullExecutor(Executor):
    name = "none"

    def submit(self, run_id: int) -> None:
        return None


def build(runs, config) -> NullExecutor:  # noqa: ANN001, ARG001 (RunService, RefereeConfig)
    return NullExecutor()
