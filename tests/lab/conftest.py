"""Lab fixtures. ``finished_campaign``: a real campaign run to its end once per test session by
`aar lab run` (fast tier, two scripted researchers, half a minute each): the referee's data dir with
official runs, forum posts, flags and the researchers' transcripts, plus the lab's folder and output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lab.minilab import run_lab, write_campaign


@dataclass(frozen=True)
class FinishedCampaign:
    folder: Path
    data_dir: Path
    admin_token: str
    agent_token: str
    agent_name: str
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def finished_campaign(tmp_path_factory) -> FinishedCampaign:
    base = tmp_path_factory.mktemp("lab")
    campaign = write_campaign(base / "mini.yaml", minutes=0.5)
    folder = base / "mini"
    r = run_lab([str(campaign), "--out", str(folder)])
    assert r.returncode == 0, r.stderr[-3000:]
    data = folder / "data"
    return FinishedCampaign(
        folder=folder,
        data_dir=data,
        admin_token=(data / "admin.token").read_text().strip(),
        agent_token=(data / "tokens" / "prior.token").read_text().strip(),
        agent_name="prior",
        stdout=r.stdout,
        stderr=r.stderr,
    )
