"""Referee settings: one dataclass, persisted next to the private data so `serve` needs only ``--data``."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from aar.atomic import atomic_write

CONFIG_FILE = "referee.json"


@dataclass
class RefereeConfig:
    data_dir: Path
    db_url: str | None = None  # default: SQLite (WAL) inside the data dir
    dev_budget_per_day: int = 200  # dev queries per agent, per task, per UTC day
    dev_task_budget_per_day: int = 2000  # dev queries per task per UTC day, all researchers together
    run_budget_per_day: int = 20  # official runs per agent per UTC day (runs score `final`: a channel too)
    max_queued_runs: int = 4  # queued official runs per researcher at once
    run_seconds_per_day: float = 4 * 3600.0  # sandbox seconds per UTC day charged to an idea's author
    reproduction_share: float = 0.5  # at most this part of an author's run time goes to others' reruns
    load_retries: int = 2  # a run that times out while the host is overloaded is retried this often
    ladder_alpha: float = 0.05  # per released best: the chance a no-improvement submission is released
    ladder_min_rows: int = 10  # a released step changes at least max(this, 5% of dev) rows
    ladder_jitter: float = 0.5  # keyed threshold jitter (z units) against pivot attacks
    seeds: int = 3
    max_body_bytes: int = 8 * 1024 * 1024
    max_bundle_bytes: int = 50 * 1024 * 1024
    max_blob_bytes: int = 5 * 1024 * 1024
    max_commits_per_push: int = 500
    max_tree_files: int = 2000  # files per commit tree, checked at push
    max_tree_bytes: int = 64 * 1024 * 1024  # uncompressed bytes per commit tree (a blob counts per entry)
    code_fetches_per_day: int = 200  # GET /code/{sha} per researcher per UTC day
    run_workers: int = 1
    executor: str = "local"  # a name in aar.referee.executors: "local", "none" (queue only) or "ray"
    ray: dict | None = None  # the ray executor's options (address, token, resources): executors/ray.py
    determinism_check: bool = True  # re-run one seed to catch nondeterministic ideas
    baseline_methods: list[str] | None = None  # built-in methods scored as baselines; None: all the tier runs
    sandbox_cpu_seconds: int = 600
    sandbox_memory_bytes: int = 3 * 1024**3
    sandbox_wall_seconds: float = 900.0
    sandbox_max_processes: int = 64
    sandbox_max_file_bytes: int = 256 * 1024 * 1024
    sandbox_gpus: bool = False  # bind the GPU device nodes into official runs (the LoRA tier on CUDA)
    sandbox_user: str = "aar-referee-run"
    runs_dir: Path | None = None  # scratch for runs; must be outside the private data dir
    gap_flag: float = 0.5  # home PGR minus mean held-out PGR above this opens a review item
    # forum writes per researcher (admins exempt; 0 = no limit), counted from the audit log (restart-safe)
    forum_posts_per_minute: int = 30
    forum_posts_per_day: int = 300  # per UTC day
    forum_writes_per_minute: int = 60  # posts, comments, edits and votes together
    forum_writes_per_day: int = 2000
    forum_bytes_per_day: int = 2 * 1024 * 1024  # UTF-8 bytes of titles, bodies, tags written per UTC day
    # Set by `aar lab run`, read by the dashboard: where the researchers' homes live
    # (<researchers_dir>/<agent>/state/transcript.jsonl and <researchers_dir>/<agent>/researcher.json),
    # and the campaign's name.
    researchers_dir: Path | None = None
    campaign: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if self.runs_dir is not None:
            self.runs_dir = Path(self.runs_dir)
        if self.researchers_dir is not None:
            self.researchers_dir = Path(self.researchers_dir)

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'referee.db'}"

    @property
    def scratch_root(self) -> Path:
        """Where sandboxed runs get their scratch dirs: never inside the 0700 data dir."""
        if self.runs_dir is not None:
            return self.runs_dir
        tag = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:10]
        return Path(tempfile.gettempdir()) / f"aar-referee-runs-{os.getuid()}-{tag}"

    def save(self) -> None:
        data = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
        data.pop("data_dir")
        atomic_write(self.data_dir / CONFIG_FILE, json.dumps(data, indent=2), mode=0o600)

    @classmethod
    def load(cls, data_dir: Path, **overrides) -> RefereeConfig:
        path = Path(data_dir) / CONFIG_FILE
        data = json.loads(path.read_text()) if path.exists() else {}
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(data_dir=Path(data_dir), **data)
