"""A lab started the way a shell starts a background job (`nohup aar lab run ... &`, `make test &`: SIGINT
inherited as ignored) still stops every child it started: researchers, referee, sandboxed commands.

On the old code the children kept SIGINT ignored, the lab stopped researchers with SIGINT, so they
outlived it until its SIGKILL a minute later, with no session_end in their transcripts."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from aar.lab import procs
from aar.sandbox import bubblewrap_available
from tests.agents.fake_llm import FakeModel
from tests.lab.minilab import processes, sigint_ignored, start_lab, wait_for

CAMPAIGN = """\
name: mini
testbed: {home: navigate, held_out: [navigate_turns], tier: fast, max_rows: 1500}
referee: {seeds: 2, port: 0, drain_minutes: 1}
defaults: {backend: scripted, budget: {minutes: 5}}
researchers:
  - {name: prior, direction: "Unsupervised elicitation of the strong model's prior."}
  - {name: hang, direction: "Sleep on it.", backend: anthropic, model: claude-opus-4-6, base_url: "%(url)s"}
"""


def hang_in(command: str):
    """A fake model whose researcher's first tool call is ``command`` (one that does not return)."""

    def script(body: dict, _turn: int) -> list[dict]:
        if not any(m["role"] == "assistant" for m in body["messages"]):
            call = {"type": "tool_use", "name": "shell", "input": {"command": command}}
            return [{"type": "text", "text": "sleep"}, call]
        return [{"type": "text", "text": "I am done."}]

    return script


def last_record(folder: Path, name: str) -> dict:
    lines = (folder / "researchers" / name / "state" / "transcript.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


def test_a_lab_started_as_a_background_job_stops_every_child(tmp_path: Path) -> None:
    marker = f"{900 + os.getpid() % 97}.{time.time_ns() % 10**6:06d}"  # `sleep 9xx.nnnnnn`: ours alone
    folder = tmp_path / "run"
    with FakeModel(hang_in(f"sleep {marker}")) as fake:
        (tmp_path / "mini.yaml").write_text(CAMPAIGN % {"url": fake.url})
        lab, http = start_lab(
            tmp_path / "mini.yaml", folder, background_job=True, env={"ANTHROPIC_API_KEY": "sk-ant-test-0"}
        )
        try:
            wait_for(lambda: processes(None, f"sleep {marker}"), 120, "the sandboxed sleep to start")
            wait_for(
                lambda: (
                    any(r["author"] == "prior" for r in http.get("/runs").json() if not r["baseline"])
                    or '"tool_result"' in (folder / "researchers/prior/state/transcript.jsonl").read_text()
                ),
                120,
                "the scripted researcher to get going",
            )
            children = processes(folder, marker)
            kinds = " | ".join(children.values())
            assert "referee serve" in kinds and kinds.count("agent run") == 2, kinds
            assert "bwrap" in kinds or not bubblewrap_available(), kinds
            # every process reset its SIGINT, whatever it inherited (the lab was started with it ignored)
            assert not [c for p, c in children.items() if sigint_ignored(p)], children
            t0 = time.monotonic()
            lab.send_signal(signal.SIGTERM)  # `kill %1`
            _, err = lab.communicate(timeout=120)
            stopped_in = time.monotonic() - t0
        finally:
            if lab.poll() is None:
                lab.kill()
            http.close()
    assert lab.returncode == 130, err[-3000:]
    # researchers stop on SIGTERM (transcripts closed), not at the SIGKILL after the grace period
    assert stopped_in < procs.STOP_GRACE, (stopped_in, err[-3000:])
    wait_for(lambda: not processes(folder, marker), 10, "every child of the lab to exit", every=0.2)
    for name in ("prior", "hang"):
        end = last_record(folder, name)
        assert end["type"] == "session_end" and end["reason"] == "interrupted" and not end["final"], end
    assert json.loads((folder / "lab.json").read_text())["status"] == "interrupted"
