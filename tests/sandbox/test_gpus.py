"""GPU runs in the sandbox (`SandboxPolicy.gpus`): the NVIDIA device nodes are bound in, the address
space limit is lifted, and the rest of the policy (no network, no data) is unchanged. The policy is
checked on any machine; a real run checks prlimit accepts the lifted limit."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from aar.sandbox import SandboxPolicy, bwrap, run_sandboxed
from aar.sandbox.bwrap import bwrap_argv, gpu_device_nodes
from aar.sandbox.run import _rlimit_args
from tests.sandbox.helpers import sh


@pytest.fixture
def fake_dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A /dev look-alike with the nodes a CUDA host has (plain files stand in for the devices)."""
    dev = tmp_path / "dev"
    (dev / "nvidia-caps").mkdir(parents=True)
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "null", "sda"):
        (dev / name).touch()
    (dev / "nvidia-caps" / "nvidia-cap1").touch()
    monkeypatch.setattr(bwrap, "DEV_ROOT", str(dev))
    return dev


def test_gpu_nodes_are_the_nvidia_ones(fake_dev: Path) -> None:
    names = [Path(p).relative_to(fake_dev).as_posix() for p in gpu_device_nodes()]
    assert names == [
        "nvidia-uvm",
        "nvidia-uvm-tools",
        "nvidia0",
        "nvidia1",
        "nvidiactl",
        "nvidia-caps/nvidia-cap1",
    ]


def test_a_gpu_policy_binds_the_devices_and_nothing_else_changes(fake_dev: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    plain = bwrap_argv(["cmd"], SandboxPolicy(workspace=ws), bwrap="bwrap", privileged=False, drop_to=None)
    gpu = bwrap_argv(
        ["cmd"], SandboxPolicy(workspace=ws, gpus=True), bwrap="bwrap", privileged=False, drop_to=None
    )
    bound = [gpu[i + 1] for i, a in enumerate(gpu) if a == "--dev-bind"]
    assert bound == gpu_device_nodes() and "--dev-bind" not in plain
    assert str(fake_dev / "null") not in bound and str(fake_dev / "sda") not in bound
    assert gpu.index("--dev-bind") < gpu.index("--remount-ro")  # bound before /dev turns read-only
    assert "--unshare-net" in gpu  # still no network
    assert [a for a in gpu if a != "--dev-bind" and not a.startswith(str(fake_dev))] == plain


def test_a_gpu_policy_lifts_the_address_space_limit_only() -> None:
    ws = Path("/nonexistent")
    plain = _rlimit_args(SandboxPolicy(workspace=ws, memory_bytes=2 << 30))
    gpu = _rlimit_args(SandboxPolicy(workspace=ws, memory_bytes=2 << 30, gpus=True))
    assert f"--as={2 << 30}:{2 << 30}" in plain
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    top = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    assert f"--as={top}:{top}" in gpu
    assert [a for a in gpu if not a.startswith("--as=")] == [a for a in plain if not a.startswith("--as=")]
    explicit = _rlimit_args(SandboxPolicy(workspace=ws, gpus=True, address_space_bytes=64 << 30))
    assert f"--as={64 << 30}:{64 << 30}" in explicit  # an explicit limit is kept


def test_a_gpu_run_starts_with_an_unlimited_address_space(policy: SandboxPolicy) -> None:
    policy.gpus = True
    r = run_sandboxed(sh("ulimit -v"), policy)
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ("unlimited" if hard == resource.RLIM_INFINITY else str(hard // 1024))
