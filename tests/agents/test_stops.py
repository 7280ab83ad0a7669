"""A researcher process always stops: when its referee has gone away (after a grace period), and at its
wall-clock budget even while a tool call or a model request hangs; each time its transcript is closed
with a session_end that says why. Real `aar agent run` processes, a real referee, the fake model server.

On the old code the loop checked its budgets only between turns: a `sleep 1000` tool call ran for the
shell's 300 s timeout, a hung model request for as long as it hung, and a researcher whose referee was
gone went on retrying it for minutes per call."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from aar.agents.transcript import Transcript
from tests.agents.fake_llm import FakeModel
from tests.lab.minilab import processes, wait_for

AAR = [sys.executable, "-m", "aar.cli"]
MODEL = "claude-opus-4-6"  # priced by the default table


def call(name: str, args: dict) -> list[dict]:
    return [{"type": "text", "text": name}, {"type": "tool_use", "name": name, "input": args}]


def turns(body: dict) -> int:
    return sum(1 for m in body["messages"] if m["role"] == "assistant")


def researcher(referee_target, home: Path, token: str, fake: FakeModel, *extra: str) -> subprocess.Popen:
    cmd = [*AAR, "agent", "run", "--referee", str(referee_target), "--token", token]
    cmd += ["--backend", "anthropic", "--model", MODEL, "--base-url", fake.url, "--workspace", str(home)]
    cmd += ["--log-level", "info", *extra]
    log = open(f"{home}.log", "ab")  # noqa: SIM115
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-test-0123456789"}
    return subprocess.Popen(cmd, stdout=log, stderr=log, env=env, start_new_session=True)


def session_end(home: Path) -> dict:
    records = Transcript(home / "state" / "transcript.jsonl").records()
    assert records and records[-1]["type"] == "session_end", records[-3:]
    return records[-1]


def test_researcher_exits_when_its_referee_is_gone(referee, base, agent_name) -> None:
    """A second referee server on the session's data (queue only) that this test may kill."""
    sock = base / f"sock-{agent_name}" / "referee.sock"
    sock.parent.mkdir(mode=0o755)
    server = subprocess.Popen(
        [*AAR, "referee", "serve", "--data", str(referee.data), "--uds", str(sock), "--executor", "none"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    token = referee.add_agent(agent_name)
    home = base / agent_name

    def script(body: dict, _turn: int) -> list[dict]:  # referee calls, with pauses between them
        return call("leaderboard", {}) if turns(body) % 2 == 0 else call("shell", {"command": "sleep 0.5"})

    grace = 6.0
    try:
        wait_for(sock.exists, 60, "the second referee to listen", every=0.2)
        with FakeModel(script) as fake:
            proc = researcher(sock, home, token, fake, "--hours", "0.2", "--referee-grace", str(grace))
            try:
                transcript = Transcript(home / "state" / "transcript.jsonl")

                def going() -> bool:
                    assert proc.poll() is None, Path(f"{home}.log").read_text()[-3000:]
                    return sum(r["type"] == "tool_result" for r in transcript.records()) >= 3

                wait_for(going, 120, "three answered tool calls", every=0.2)
                server.send_signal(signal.SIGKILL)
                server.wait()
                t0 = time.monotonic()
                code = proc.wait(timeout=grace + 40)
                gone_after = time.monotonic() - t0
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if server.poll() is None:
            server.kill()
    log = Path(f"{home}.log").read_text()[-3000:]
    assert code == 0, log
    assert grace - 2 <= gone_after < grace + 20, (gone_after, log)  # probes every 1.5 s
    end = session_end(home)
    assert end["reason"].startswith("referee unreachable for") and end["final"] is False, end


def test_hung_tool_call_and_hung_model_request_stop_at_the_budget(referee, base, agent_name) -> None:
    """Two researchers at once, 9 s of budget and 2 s of grace: one in `sleep <long>`, one waiting on a
    model request that is never answered."""
    marker = f"{800 + os.getpid() % 97}.{time.time_ns() % 10**6:06d}"
    release = threading.Event()

    def sleeper(body: dict, _turn: int) -> list[dict]:
        if turns(body) == 0:
            return call("shell", {"command": f"sleep {marker}"})
        return [{"type": "text", "text": "done"}]

    def staller(body: dict, _turn: int) -> list[dict]:
        if turns(body) == 0:
            return call("shell", {"command": "true"})
        release.wait(300)  # the model request hangs
        return [{"type": "text", "text": "done"}]

    budget_s, grace = 9.0, 2.0
    homes = {kind: base / f"{agent_name}-{kind}" for kind in ("tool", "model")}
    with FakeModel(sleeper) as fake_tool, FakeModel(staller) as fake_model:
        fakes = {"tool": fake_tool, "model": fake_model}
        started, procs = time.monotonic(), {}
        try:
            for kind, home in homes.items():
                token = referee.add_agent(f"{agent_name}{kind}")
                extra = ("--hours", str(budget_s / 3600), "--deadline-grace", str(grace), "--exit-grace", "5")
                procs[kind] = researcher(referee.socket, home, token, fakes[kind], *extra)

            def sleeping() -> bool:
                for kind, p in procs.items():
                    assert p.poll() is None, Path(f"{homes[kind]}.log").read_text()[-3000:]
                return bool(processes(None, f"sleep {marker}"))

            wait_for(sleeping, 60, "the sandboxed sleep", every=0.2)
            codes = {kind: p.wait(timeout=budget_s + grace + 60) for kind, p in procs.items()}
            took = time.monotonic() - started
        finally:
            release.set()
            for p in procs.values():
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
    logs = {kind: Path(f"{home}.log").read_text()[-2000:] for kind, home in homes.items()}
    assert codes == {"tool": 0, "model": 0}, logs
    assert budget_s + grace <= took < budget_s + grace + 30, (took, logs)  # start-up takes a few seconds
    for kind, home in homes.items():
        end = session_end(home)
        assert end["reason"].startswith("wall-clock budget spent") and end["final"] is True, (kind, end)
    assert not processes(None, f"sleep {marker}")  # the sandboxed command went with its researcher


SWALLOWER = """
import os, sys, time
from aar.agents.budget import Budget, Limits, Watchdog
from aar.agents.prices import PriceTable

def hard_exit(reason, final):
    print("hard exit:", reason, final, flush=True)
    os._exit(3)

watchdog = Watchdog(deadline_grace=0.5, exit_grace=1.0, hard_exit=hard_exit, interval=0.1)
watchdog.watch(Budget(Limits(hours=1 / 3600), PriceTable()))
watchdog.start()
while True:  # a main thread that swallows every interruption
    try:
        time.sleep(100)
    except BaseException as exc:
        print("swallowed", type(exc).__name__, flush=True)
"""


def test_watchdog_exits_a_process_whose_main_thread_will_not_stop() -> None:
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", SWALLOWER], capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    assert r.returncode == 3, r.stderr[-2000:]
    assert r.stdout.splitlines()[0] == "swallowed Stopped"
    assert r.stdout.splitlines()[1].startswith("hard exit: wall-clock budget spent") and "True" in r.stdout
    assert took < 1 + 0.5 + 1 + 15  # budget + grace + exit grace + the interpreter's start
