"""``local``: coordinator threads in the referee, each running its run's units one after another in
sandboxed subprocesses on this host (the heavy work is in the subprocess; threads share the db handle)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from aar.referee.executors.base import CoordinatedExecutor
from aar.referee.units import Unit, UnitOutput, run_unit


class LocalPoolExecutor(CoordinatedExecutor):
    name = "local"

    def __init__(
        self,
        job: Callable[[int], None],
        workers: int,
        claim: Callable[[], int | None],
        scratch_root: Path | None = None,
    ):
        self.scratch_root = scratch_root
        super().__init__(job, workers, claim)

    def run_units(self, code: bytes, units: list[Unit]) -> Iterator[tuple[Unit, UnitOutput]]:
        root = None if self.scratch_root is None else str(self.scratch_root)
        for unit in units:  # one at a time: a failed unit stops the rest (the caller closes us)
            yield unit, run_unit(unit, code, root)


def build(runs, config) -> LocalPoolExecutor:  # noqa: ANN001 (RunService, RefereeConfig)
    return LocalPoolExecutor(
        runs.execute, config.run_workers, runs.claim_next, scratch_root=config.scratch_root
    )
