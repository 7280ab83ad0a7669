"""Where a campaign keeps everything: one folder per campaign, so that resuming is "run it again"."""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from aar.atomic import atomic_write


@dataclass(frozen=True)
class CampaignDir:
    """``runs/<campaign>/``::

    lab.json            the lab's own state (fingerprint, sessions, child pids); written atomically
    campaign.yaml       the campaign as first started (what a resume must match)
    data/               the referee's private data dir (0700): labels, database, tokens
    public/             what researchers may see (exported once from data/)
    sock/referee.sock   the referee's Unix socket, bound into the sandboxes
    researchers/<name>/ each researcher's home (workspace, scratch, state/transcript.jsonl)
    logs/               referee.log, <researcher>.log
    report.md, plots/, snapshot.json, summary.json   written at the end
    """

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "lab.json"

    @property
    def campaign_file(self) -> Path:
        return self.root / "campaign.yaml"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def public(self) -> Path:
        return self.root / "public"

    @property
    def socket(self) -> Path:
        return self.root / "sock" / "referee.sock"

    @property
    def port_file(self) -> Path:
        return self.root / "sock" / "port"

    @property
    def researchers(self) -> Path:
        return self.root / "researchers"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def home(self, name: str) -> Path:
        return self.researchers / name

    def researcher_file(self, name: str) -> Path:
        return self.home(name) / "researcher.json"

    def transcript(self, name: str) -> Path:
        return self.home(name) / "state" / "transcript.jsonl"

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # researchers' homes below must be reachable by their uids
        for d in (self.researchers, self.socket.parent):
            d.mkdir(mode=0o755, exist_ok=True)
        self.logs.mkdir(mode=0o700, exist_ok=True)

    def lock(self) -> int:
        """An exclusive lock on the folder for one lab at a time (the kernel drops it if we die)."""
        from aar.lab.campaign import CampaignError

        fd = os.open(self.root / "lab.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.read_state().get("sessions", [{}])[-1].get("pid", "?")
            raise CampaignError(f"{self.root} is in use by a running lab (pid {holder})") from None
        return fd

    def read_state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def write_state(self, state: dict) -> None:
        write_json(self.state_file, state)


def write_json(path: Path, data: object, mode: int = 0o644) -> None:
    """Atomic and durable: a reader sees the old or the new file, never half of one."""
    atomic_write(path, json.dumps(data, indent=2, default=str), mode=mode)
