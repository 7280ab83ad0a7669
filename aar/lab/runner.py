"""`aar lab run`: one referee, N sandboxed researchers, live progress, a report at the end.

The lab is a supervisor, not a participant: it prepares the referee's data (once), registers each
researcher with a token it saved first, starts the referee (Unix socket for the sandboxes, loopback TCP
for the dashboard) and one ``aar agent run`` process per researcher, and watches. Every durable fact
lives in the referee's database or a researcher's transcript, so a lab killed at any moment is resumed
by running it again on the same folder: finished researchers stay finished, interrupted ones resume
from their transcripts, queued official runs are re-queued by the referee.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml
from rich.console import Console

from aar.agents.home import UID_BOUND_ENV, default_user
from aar.contract import IN_FLIGHT
from aar.eta import EtaLines
from aar.lab import procs
from aar.lab.campaign import Campaign, CampaignError, Researcher, fingerprint
from aar.lab.collect import RefereeView, read_json, researcher_account
from aar.lab.layout import CampaignDir, write_json
from aar.sandbox import ensure_user

log = logging.getLogger("aar.lab")
MAX_RESTARTS = 3  # a researcher that crashes (no clean stop in its transcript) is restarted this often
RESEARCHER_KEYS = {"researchers", "researcher_cpus", "researcher_resources"}  # the lab's, not the referee's


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Member:
    """A researcher as the lab tracks it."""

    spec: Researcher
    proc: subprocess.Popen | None = None
    restarts: int = 0
    status: str = "pending"  # pending | running | finished | stopped | crashed
    stop_reason: str | None = None
    started_at: str | None = None
    launched: float | None = None  # time.monotonic() of the current process's start
    account: dict = field(default_factory=dict)

    def describe(self) -> dict:
        """Who it is and where it stands (researcher.json, the report)."""
        s = self.spec
        return {
            "name": s.name,
            "direction": s.direction,
            "backend": s.backend,
            "model": s.model,
            "status": self.status,
            "stop_reason": self.stop_reason,
        }


@dataclass
class LabResult:
    out: Path
    stop_reason: str
    snapshot: dict
    report: Path | None
    dashboard_url: str | None


class Lab:
    def __init__(
        self,
        campaign: Campaign,
        out: Path,
        *,
        console: Console | None = None,
        live: bool | None = None,
        sandbox_backend: str | None = None,
    ):
        self.campaign = campaign
        self.dir = CampaignDir(Path(out))
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal if live is None else live
        self.sandbox_backend = sandbox_backend
        self.members = [Member(r) for r in campaign.resolved()]
        self.tag = f"{campaign.name}:{self.dir.root.resolve()}"
        self.referee: subprocess.Popen | None = None
        self.view: RefereeView | None = None
        self.url: str | None = None
        self.state: dict = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    def run(self) -> LabResult:
        self._prepare()
        stop_reason = "interrupted"
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self._setup_referee()
            self._start_referee()
            self._launch_all()
            stop_reason = self._watch()
            self._drain()
        except KeyboardInterrupt:
            self.console.print("[yellow]interrupted: stopping researchers and the referee[/yellow]")
            stop_reason = "interrupted"
        except Exception:
            stop_reason = "failed"
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            try:
                self._stop_researchers()
                snapshot = self._snapshot(stop_reason)
                report = self._report(snapshot)
            finally:
                self._stop_referee()
                self.state["status"] = stop_reason
                self.state["pids"] = []
                self.state["sessions"][-1]["ended"] = now_iso()
                self.state["sessions"][-1]["reason"] = stop_reason
                self.dir.write_state(self.state)
        return LabResult(self.dir.root, stop_reason, snapshot, report, self.url)

    def _prepare(self) -> None:
        self.dir.create()
        self._lock = self.dir.lock()  # held until this process exits, however it exits
        self.state = self.dir.read_state()
        fp = fingerprint(self.campaign)
        if self.state and self.state.get("fingerprint") != fp:
            raise CampaignError(
                f"{self.dir.root} holds campaign {self.state.get('campaign')!r} with another testbed or seed "
                "count; resume it with its own campaign.yaml, or choose another --out"
            )
        leftovers = procs.stop_leftovers(self.state.get("pids", []), self.tag)
        if leftovers:
            self.console.print(f"stopped {len(leftovers)} leftover process(es) of the earlier lab")
        resumed = bool(self.state)
        if not resumed:
            self.state = {
                "campaign": self.campaign.name,
                "fingerprint": fp,
                "created_at": now_iso(),
                "sessions": [],
            }
            self.dir.campaign_file.write_text(yaml.safe_dump(self.campaign.model_dump(), sort_keys=False))
        self.state["sessions"].append({"started": now_iso(), "pid": os.getpid()})
        self.state["status"] = "running"
        self.state["pids"] = []
        self.dir.write_state(self.state)
        verb = "resuming" if resumed else "starting"
        self.console.print(f"[bold]{verb} campaign {self.campaign.name}[/bold] in {self.dir.root}")
        if self.campaign.testbed.tier_note:  # tier: auto, resolved when the campaign was loaded
            self.console.print(self.campaign.testbed.tier_note)

    def _setup_referee(self) -> None:
        from aar.referee.datadir import export_public
        from aar.referee.setup import initialise

        c = self.campaign
        t0 = time.monotonic()
        if not (self.dir.data / "manifest.json").exists():
            held_out = [t for t in c.testbed.tasks[1:] if t not in c.testbed.visible]
            self.console.print(
                f"preparing tasks {', '.join(t for t in c.testbed.tasks if t not in held_out)} with "
                f"{' -> '.join(c.testbed.model_pair)} (features are extracted once and cached)"
                + (
                    f"; held-out {', '.join(held_out)} in the background once researchers start "
                    "(official runs wait for it)"
                    if held_out
                    else ""
                )
            )
        self.tokens = initialise(
            self.dir.data,
            tasks=c.testbed.tasks,
            visible=c.testbed.visible,
            tier=c.testbed.tier,
            max_rows=c.testbed.max_rows,
            task_files=[tf.declaration() for tf in c.testbed.task_files],
            models=c.testbed.models.model_dump(exclude_none=True) if c.testbed.models else None,
            defer_held_out=True,  # first result first: the referee prepares them while researchers work
            log=self._say,
            show_progress=self.console.is_terminal,
            # no terminal (a log file, a background job): a line with rate and ETA every 15 s instead
            on_progress=None if self.console.is_terminal else EtaLines(self._say, every=15.0),
            seeds=c.referee.seeds,
            dev_budget_per_day=c.referee.dev_budget_per_day,
            run_budget_per_day=c.referee.run_budget_per_day,
            run_workers=c.referee.run_workers,
            baseline_methods=c.referee.baselines,
            researchers_dir=self.dir.researchers.resolve(),
            campaign=c.name,
            agents={m.spec.name: self._uid(m.spec.name) for m in self.members},
        )
        done_marker = self.dir.public / ".complete"
        if not done_marker.exists():
            export_public(self.dir.data, self.dir.public)
            done_marker.write_text(now_iso())
        self.admin_token = self.tokens["admin"]
        self.console.print(f"referee ready ({time.monotonic() - t0:.0f} s)")

    def _say(self, message: str) -> None:
        """One indented line of set-up output (task sizes, extraction progress)."""
        self.console.print(f"  {message}", highlight=False)

    def _start_referee(self) -> None:
        r = self.campaign.referee
        port = r.port if _port_free(r.host, r.port) else 0
        if port != r.port:
            self.console.print(f"[yellow]port {r.port} is taken; the dashboard gets a free port[/yellow]")
        self.dir.port_file.unlink(missing_ok=True)
        args = ["referee", "serve", "--data", str(self.dir.data), "--uds", str(self.dir.socket)]
        args += ["--host", r.host, "--port", str(port), "--port-file", str(self.dir.port_file)]
        if self.campaign.ray is not None:  # official-run units on the Ray cluster (Ray imported there only)
            ray = self.campaign.ray.model_dump(exclude_none=True, exclude=RESEARCHER_KEYS)
            args += ["--executor", "ray", "--ray", json.dumps(ray)]
        self.referee = procs.spawn(args, log=self.dir.logs / "referee.log", tag=self.tag)
        self._remember_pid(self.referee.pid)
        self.view = RefereeView(self.dir.socket, self.admin_token)
        deadline = time.monotonic() + 120
        while not (self.dir.port_file.exists() and self.view.healthy()):
            if self.referee.poll() is not None:
                tail = (self.dir.logs / "referee.log").read_text()[-2000:]
                raise RuntimeError(f"the referee exited with code {self.referee.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError("the referee did not come up within 120 s (see logs/referee.log)")
            time.sleep(0.2)
        self.url = f"http://{r.host}:{self.dir.port_file.read_text().strip()}/"
        self.console.print(
            f"dashboard: [link={self.url}]{self.url}[/link] "
            f"(log in with the token in {self.dir.data}/admin.token)"
        )

    def _uid(self, name: str) -> int | None:
        """The researcher's sandbox uid (the one ``aar agent run`` will use), as root; else None."""
        if os.geteuid() != 0:
            return None
        return ensure_user(default_user(self.dir.home(name).resolve()))

    def _remember_pid(self, pid: int) -> None:
        self.state["pids"].append(pid)
        self.dir.write_state(self.state)

    # -- researchers -------------------------------------------------------------------------------

    def _launch_all(self) -> None:
        if self.campaign.ray is not None and self.campaign.ray.researchers:  # will they all fit?
            from aar.lab import ray_researchers

            todo = [(m.spec.name, m.spec.gpus) for m in self.members]
            warning = ray_researchers.capacity_warning(self.campaign.ray.model_dump(exclude_none=True), todo)
            if warning:
                self.console.print(f"[yellow]warning: {warning}[/yellow]", highlight=False)
        for m in self.members:
            m.account = researcher_account(self.dir.transcript(m.spec.name))
            if m.account.get("final"):  # finished researchers stay finished
                m.status, m.stop_reason = "finished", m.account["last_stop"]
                self._write_member(m)
                continue
            self._launch(m)

    def _launch(self, m: Member) -> None:
        s, b = m.spec, m.spec.budget
        args = ["agent", "run", "--referee", str(self.dir.socket), "--backend", s.backend]
        args += ["--direction", s.direction, "--seed", str(s.seed)]
        args += ["--workspace", str(self.dir.home(s.name)), "--public", str(self.dir.public)]
        args += ["--log-level", "info"] + (["--gpus"] if s.gpus else [])
        for flag, value in (
            ("--model", s.model),
            ("--base-url", s.base_url),
            ("--hours", b.minutes / 60 if b.minutes is not None else None),
            ("--budget-usd", b.usd),
            ("--max-tokens", b.tokens),
            ("--max-runs", b.official_runs),
            ("--max-turns", b.turns),
        ):
            if value is not None:
                args += [flag, str(value)]
        env = {"AAR_REFEREE_TOKEN": self.tokens[s.name]}
        if self._uid(s.name) is not None:  # the socket knows the sandbox's uid: no token inside it
            env[UID_BOUND_ENV] = "1"
        if self.sandbox_backend:
            env["AAR_SANDBOX_BACKEND"] = self.sandbox_backend
        if self.campaign.ray is not None and self.campaign.ray.researchers:  # a Ray actor (imports Ray)
            from aar.lab import ray_researchers

            port = int(self.dir.port_file.read_text().strip())
            m.proc = ray_researchers.launch(  # type: ignore[assignment]
                self.campaign.ray.model_dump(exclude_none=True),
                name=s.name,
                args=args,
                env=env,
                referee=(self.campaign.referee.host, port),
                log=self.dir.logs / f"{s.name}.log",
                tag=self.tag,
                gpus=s.gpus,
            )
        else:
            m.proc = procs.spawn(args, log=self.dir.logs / f"{s.name}.log", env=env, tag=self.tag)
            self._remember_pid(m.proc.pid)
        m.status, m.started_at, m.launched = "running", now_iso(), time.monotonic()
        self._write_member(m)

    def _write_member(self, m: Member) -> None:
        path = self.dir.researcher_file(m.spec.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        old = read_json(path)
        write_json(
            path,
            {
                **m.describe(),
                "restarts": m.restarts,
                "started_at": old.get("started_at") or m.started_at,
                "updated_at": now_iso(),
            },
        )

    def _reap(self, m: Member) -> None:
        """A researcher process ended: finished, or crashed (restart it a few times)."""
        assert m.proc is not None
        code = m.proc.returncode
        m.account = researcher_account(self.dir.transcript(m.spec.name))
        last = m.account.get("last_stop")
        m.proc = None
        if code == 0 and last:
            m.status, m.stop_reason = ("finished" if m.account.get("final") else "stopped"), last
        elif m.restarts < MAX_RESTARTS:
            m.restarts += 1
            self.console.print(
                f"[yellow]{m.spec.name} exited with code {code}; restarting "
                f"({m.restarts}/{MAX_RESTARTS}, see logs/{m.spec.name}.log)[/yellow]"
            )
            self._launch(m)
            return
        else:
            m.status, m.stop_reason = "crashed", f"exit code {code} after {MAX_RESTARTS} restarts"
        self._write_member(m)

    def _watch(self) -> str:
        from aar.lab.progress import Progress

        progress = Progress(self, live=self.live)
        with progress:
            while True:
                for m in self.members:
                    if m.proc is not None and m.proc.poll() is not None:
                        self._reap(m)
                if self.referee is not None and self.referee.poll() is not None:
                    raise RuntimeError(
                        f"the referee died (code {self.referee.returncode}); see {self.dir.logs}/referee.log"
                    )
                progress.update()
                if all(m.proc is None for m in self.members):
                    return "budget" if all(m.status == "finished" for m in self.members) else "stopped"
                time.sleep(1.0)

    def _drain(self) -> None:
        """Official runs still queued get their score before the report (up to drain_minutes)."""
        assert self.view is not None
        deadline = time.monotonic() + self.campaign.referee.drain_minutes * 60
        announced = False
        while time.monotonic() < deadline:
            pending = [r for r in self.view.runs() if r["status"] in IN_FLIGHT]
            if not pending:
                return
            if not announced:
                self.console.print(f"waiting for {len(pending)} queued official run(s) to be scored")
                announced = True
            time.sleep(2.0)
        self.console.print("[yellow]drain time is up; unscored runs stay queued (resume to finish)[/yellow]")

    def _stop_researchers(self) -> None:
        """SIGTERM to every researcher (each closes its transcript), SIGKILL to the process groups of those
        still running after the grace period. Not SIGINT: a researcher started from a shell's background
        job may have inherited it as ignored before its own handler was installed."""
        running = [m for m in self.members if m.proc is not None and m.proc.poll() is None]
        for m in running:
            if not hasattr(m.proc, "actor"):  # a researcher on Ray (ray_researchers) is stopped below
                procs.terminate(m.proc)  # type: ignore[arg-type]
        deadline = time.monotonic() + procs.STOP_GRACE
        for m in running:
            if hasattr(m.proc, "actor"):  # its actor stops it (SIGTERM, then SIGKILL) and then ends
                m.proc.stop(max(0.0, deadline - time.monotonic()))  # type: ignore[union-attr]
            else:
                procs.wait_or_kill(m.proc, max(0.0, deadline - time.monotonic()))  # type: ignore[arg-type]
            m.account = researcher_account(self.dir.transcript(m.spec.name))
            m.status, m.stop_reason, m.proc = "stopped", m.account.get("last_stop") or "interrupted", None
            self._write_member(m)

    def _stop_referee(self) -> None:
        if self.view is not None:
            self.view.close()
        if self.referee is not None and self.referee.poll() is None:
            procs.stop(self.referee, procs.STOP_GRACE)

    # -- the end -----------------------------------------------------------------------------------

    def _snapshot(self, stop_reason: str) -> dict:
        c = self.campaign
        runs, flags, posts = [], [], {}
        if self.view is not None and self.referee is not None and self.referee.poll() is None:
            runs, flags = self.view.runs(), self.view.flags()
            posts = {m.spec.name: self.view.posts_by(m.spec.name) for m in self.members}
        researchers = []
        for m in self.members:
            acct = researcher_account(self.dir.transcript(m.spec.name))
            researchers.append(
                {
                    **m.describe(),
                    "spend_usd": acct["usd"],
                    "tokens": acct["tokens"],
                    "turns": acct["turns"],
                    "official_runs": sum(1 for r in runs if r.get("author") == m.spec.name),
                    "posts": posts.get(m.spec.name, 0),
                    "active_seconds": acct["seconds"],
                }
            )
        return {
            "campaign": c.name,
            "started_at": self.state.get("created_at"),
            "finished_at": now_iso(),
            "home_task": c.testbed.home,
            "visible_tasks": list(c.testbed.visible),
            "held_out_tasks": list(c.testbed.held_out),
            "report_top_k": c.report_top_k,
            "model_pair": list(c.testbed.model_pair),
            "tier": c.testbed.tier,
            "stop_reason": stop_reason,
            "sessions": len(self.state.get("sessions", [])),
            "researchers": researchers,
            "runs": runs,
            "flags": flags,
            "dashboard_url": self.url,
        }

    def _report(self, snapshot: dict) -> Path | None:
        from aar.lab.report import write_report, write_snapshot

        if not snapshot["runs"]:
            write_snapshot(self.dir.root, snapshot)
            return None
        return write_report(self.dir.root, snapshot)


def _raise_interrupt(signum, frame) -> None:  # noqa: ANN001
    raise KeyboardInterrupt


def _port_free(host: str, port: int) -> bool:
    if port == 0:
        return True
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
