"""A researcher configured with GPUs (campaign `gpus: true`, `aar agent run --gpus`) gets them in its
sandbox: the policy its commands run under binds the GPU device nodes and lifts the address-space
limit; one without keeps today's policy. (What a GPU policy binds: tests/sandbox/test_gpus.py.)"""

from __future__ import annotations

from pathlib import Path

import yaml

from aar.agents.home import AgentHome, Limits
from aar.lab.campaign import load


def test_a_researcher_with_gpus_gets_a_gpu_sandbox(tmp_path: Path) -> None:
    plain = AgentHome(tmp_path / "plain", None, None, None, Limits(), "subprocess").policy()
    gpu = AgentHome(tmp_path / "gpu", None, None, None, Limits(gpus=True), "subprocess").policy()
    assert gpu.gpus and not plain.gpus
    assert not gpu.network and gpu.memory_bytes == plain.memory_bytes  # nothing else changes


def test_a_campaign_gives_gpus_to_researchers_by_default_or_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "c",
                "defaults": {"backend": "scripted", "gpus": True},
                "researchers": [
                    {"name": "a", "direction": "x"},
                    {"name": "b", "direction": "y", "gpus": False},
                ],
            }
        )
    )
    assert [(r.name, r.gpus) for r in load(path).resolved()] == [("a", True), ("b", False)]
