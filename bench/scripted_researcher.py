"""Acceptance run of the scripted researcher: alone, N minutes, on the default home task.

    python bench/scripted_researcher.py --minutes 10 [--fast] [--max-rows N] [--seed 0]

Builds a referee data dir (default testbed: home task + held-out tasks, default model tier), serves it
on a Unix socket, runs `aar agent run --backend scripted` for N minutes, waits for its official runs,
and prints its best official run (chosen by the one rule on the home task's *public* part, read with
the admin token) with its PGR (95% CI) on the *private* part next to vanilla's, plus transfer
accuracies (which stay defined when PGR is not: PGR is undefined when the gap is under 3 SE).
Writes a JSON summary to --out.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from aar.contract import AdminRun
from aar.contract import best as best_run

AAR = [sys.executable, "-m", "aar.cli"]


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def home_row(run: AdminRun) -> dict:
    """The run's home numbers on both parts of final (the admin view) and its held-out PGRs."""
    pub, priv = run.score("public"), run.score("private")
    return {
        "run_id": run.id,
        "idea": run.idea_path,
        "public_pgr": pub and pub.pgr,
        "public_pgr_ci": pub and list(pub.pgr_ci),
        "pgr": priv and priv.pgr,
        "pgr_ci": priv and list(priv.pgr_ci),
        "transfer_acc": priv and priv.transfer_acc,
        "transfer_acc_ci": priv and list(priv.transfer_acc_ci),
        "weak_acc": priv and priv.weak_acc,
        "ceiling_acc": priv and priv.ceiling_acc,
        "n_private": priv and priv.n_items,
        "held_out_pgr": {t: r.private and r.private.pgr for t, r in run.held_out().items()},
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--direction", default="self-training and confidence: relabel with the student's own beliefs"
    )
    ap.add_argument("--fast", action="store_true", help="fast model tier (tests); default: the default tier")
    ap.add_argument("--max-rows", type=int, default=None)
    ap.add_argument("--tasks", default=None, help="comma-separated, home first (default: the testbed's)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument(
        "--root", type=Path, default=None, help="keep everything here (default: a temp dir, removed)"
    )
    ap.add_argument("--out", type=Path, default=Path("bench/results/scripted_researcher.json"))
    args = ap.parse_args(argv)

    root = args.root or Path(tempfile.mkdtemp(prefix="aar-bench-agent-"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    data, public, sock = root / "data", root / "public", root / "sock" / "referee.sock"
    started = time.monotonic()
    try:
        if not (data / "manifest.json").exists():
            cmd = [*AAR, "referee", "init", str(data), "--seeds", str(args.seeds)]
            cmd += ["--fast"] if args.fast else []
            cmd += ["--max-rows", str(args.max_rows)] if args.max_rows else []
            cmd += ["--tasks", args.tasks] if args.tasks else []
            _log("referee init: " + " ".join(cmd[3:]))
            subprocess.run(cmd, check=True)
        subprocess.run(
            [*AAR, "referee", "export-public", "--data", str(data), "--out", str(public)], check=True
        )
        sock.parent.mkdir(mode=0o755, exist_ok=True)
        sock.unlink(missing_ok=True)
        server = subprocess.Popen([*AAR, "referee", "serve", "--data", str(data), "--uds", str(sock)])
        while not sock.exists():
            time.sleep(0.2)
        name = f"scripted{args.seed}"
        token = (
            subprocess.run(
                [*AAR, "referee", "add-agent", name, "--data", str(data)], capture_output=True, text=True
            ).stdout.strip()
            or (root / f"{name}.token").read_text().strip()
        )
        (root / f"{name}.token").write_text(token)
        _log(f"setup took {time.monotonic() - started:.0f} s; researcher runs {args.minutes} min")
        t0 = time.monotonic()
        subprocess.run(
            [
                *AAR,
                "agent",
                "run",
                "--referee",
                str(sock),
                "--token",
                token,
                "--backend",
                "scripted",
                "--seed",
                str(args.seed),
                "--direction",
                args.direction,
                "--workspace",
                str(root / name),
                "--public",
                str(public),
                "--hours",
                str(args.minutes / 60),
                "--log-level",
                "warning",
            ],
            check=True,
        )
        research_s = time.monotonic() - t0
        http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(sock)),
            base_url="http://r/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        deadline = time.monotonic() + 900
        while any(
            r["status"] in ("queued", "running") for r in http.get("/runs", params={"agent": name}).json()
        ):
            if time.monotonic() > deadline:
                break
            time.sleep(5)
        admin = {"Authorization": f"Bearer {(data / 'admin.token').read_text().strip()}"}
        board = [AdminRun.model_validate(r) for r in http.get("/leaderboard", headers=admin).json()]
        runs = http.get("/runs", params={"agent": name, "limit": 500}).json()
        posts = http.get("/posts", params={"author": name, "limit": 100}).json()["total"]
        server.terminate()
        server.wait(timeout=30)
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)

    vanilla = next(home_row(r) for r in board if r.baseline and r.idea_path == "vanilla")
    mine_runs = [r for r in board if r.author == name]
    mine = [home_row(r) for r in mine_runs]
    # selected on public by the one rule, reported on private (the numbers below are private)
    chosen = best_run(mine_runs)
    best = home_row(chosen) if chosen is not None else None
    v_hi = (vanilla["pgr_ci"] or [None, None])[1]
    above = bool(
        best
        and best["pgr_ci"]
        and best["pgr_ci"][0] is not None
        and v_hi is not None
        and best["pgr_ci"][0] > v_hi
    )
    summary = {
        "minutes": args.minutes,
        "research_seconds": round(research_s, 1),
        "official_runs": len(runs),
        "done_runs": len(mine),
        "posts": posts,
        "vanilla": vanilla,
        "best": best,
        "ci_above_vanilla_ci": above,
        "ci_low_above_vanilla_pgr": bool(
            best
            and best["pgr_ci"]
            and best["pgr_ci"][0] is not None
            and vanilla["pgr"] is not None
            and best["pgr_ci"][0] > vanilla["pgr"]
        ),
        "best_transfer_above_vanilla": bool(
            best
            and best["transfer_acc"]
            and vanilla["transfer_acc"]
            and best["transfer_acc"] > vanilla["transfer_acc"]
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    print(f"official runs: {len(runs)} ({len(mine)} done), forum posts: {posts}")
    print(
        f"vanilla (private): PGR {vanilla['pgr']} CI {vanilla['pgr_ci']}; "
        f"transfer acc {vanilla['transfer_acc']}"
    )
    if best:
        print(
            f"best by public ({best['idea']}, run {best['run_id']}), on private: PGR {best['pgr']} "
            f"CI {best['pgr_ci']}; "
            f"transfer acc {best['transfer_acc']} CI {best['transfer_acc_ci']}"
        )
    print(
        f"best PGR CI above vanilla's PGR: {summary['ci_low_above_vanilla_pgr']}; above vanilla's CI: {above}"
    )
    return summary


if __name__ == "__main__":
    main()
