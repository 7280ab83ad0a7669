"""Live progress of a campaign in the terminal: a rich table redrawn in place (or, when stdout is not a
terminal, a plain line every half minute so logs stay readable)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.live import Live
from rich.table import Table

from aar.eta import format_seconds
from aar.lab.collect import best_runs, researcher_account
from aar.lab.report import part_pgr

if TYPE_CHECKING:
    from aar.lab.runner import Lab

REFRESH_S = 3.0
PLAIN_EVERY_S = 30.0


def _ci(ci: tuple) -> str:
    lo, hi = ci
    return "" if lo is None or hi is None else f" [{lo:.2f}, {hi:.2f}]"


class Progress:
    def __init__(self, lab: Lab, live: bool):
        self.lab = lab
        self.live = Live(console=lab.console, refresh_per_second=2, transient=False) if live else None
        self.t0 = time.monotonic()
        self.last_fetch = 0.0
        self.last_plain = 0.0
        self.runs: list[dict] = []
        self.preparing: list[dict] = []  # held-out tasks the referee still prepares (first result first)

    def __enter__(self) -> Progress:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.update(self.table())
            self.live.__exit__(*exc)

    def update(self) -> None:
        now = time.monotonic()
        if now - self.last_fetch < REFRESH_S:
            return
        self.last_fetch = now
        view = self.lab.view
        if view is not None:
            try:
                self.runs = view.runs()
                self.preparing = [p for p in view.preparation() if p["state"] in ("queued", "preparing")]
            except Exception:  # noqa: BLE001 (a slow referee must not stop the lab; next refresh retries)
                pass
        for m in self.lab.members:
            m.account = researcher_account(self.lab.dir.transcript(m.spec.name))
        if self.live is not None:
            self.live.update(self.table())
        elif now - self.last_plain >= PLAIN_EVERY_S:
            self.last_plain = now
            self.lab.console.print(self.plain())

    @staticmethod
    def active_minutes(m) -> float:  # noqa: ANN001 (aar.lab.runner.Member)
        """Earlier sessions' active time (from the transcript) plus this process's running time."""
        now = time.monotonic() - m.launched if m.launched is not None else 0.0
        return (m.account.get("seconds", 0.0) + now) / 60

    def table(self) -> Table:
        best = best_runs(self.runs)
        queued = sum(1 for r in self.runs if r.get("status") in ("queued", "running"))
        elapsed = (time.monotonic() - self.t0) / 60
        t = Table(
            title=f"campaign {self.lab.campaign.name}: {elapsed:.1f} min, {queued} official run(s) queued"
            + self.waiting_note(),
            caption="\n".join([*map(preparing_line, self.preparing), f"dashboard {self.lab.url}"]),
        )
        for col in ("researcher", "status", "spend $", "tokens", "turns", "runs", "best public PGR [95% CI]"):
            t.add_column(col)
        for m in self.lab.members:
            a = m.account
            runs = sum(1 for r in self.runs if r.get("author") == m.spec.name)
            pgr, ci = part_pgr(best.get(m.spec.name), "public")
            t.add_row(
                m.spec.name,
                m.status if m.status != "running" else f"running ({self.active_minutes(m):.1f} min)",
                f"{a.get('usd', 0):.2f}",
                str(a.get("tokens", 0)),
                str(a.get("turns", 0)),
                str(runs),
                "-" if pgr is None else f"{pgr:.3f}{_ci(ci)}",
            )
        return t

    def waiting_note(self) -> str:
        """ ", 2 waiting for navigate": runs that reached a held-out task still being prepared."""
        waiting = sum(1 for r in self.runs if r.get("status") == "waiting")
        if not waiting:
            return ""
        return f", {waiting} waiting for {', '.join(p['task'] for p in self.preparing) or 'a task'}"

    def plain(self) -> str:
        best = best_runs(self.runs)
        parts = []
        for m in self.lab.members:
            pgr = part_pgr(best.get(m.spec.name), "public")[0]
            n = sum(1 for r in self.runs if r.get("author") == m.spec.name)
            parts.append(f"{m.spec.name} {m.status} runs={n} best={'-' if pgr is None else f'{pgr:.3f}'}")
        parts += [preparing_line(p) for p in self.preparing]
        return f"[{(time.monotonic() - self.t0) / 60:.1f} min] " + "; ".join(parts) + self.waiting_note()


def preparing_line(p: dict) -> str:
    """ "navigate (held_out): features mpnet 300/1,500 (20%, ETA 48 s)": one task being prepared."""
    head = f"preparing {p['task']} ({p['role']})"
    if p["state"] != "preparing" or not p["total"]:
        return f"{head}: {p['state']}"
    eta = "" if p.get("eta_seconds") is None else f", ETA {format_seconds(p['eta_seconds'])}"
    return f"{head}: {p['label']} {p['done']:,}/{p['total']:,} ({p['done'] / p['total']:.0%}{eta})"
