"""The researcher's tools, defined once (name, description, pydantic argument model, handler) and
exposed three ways: as LLM tools (``specs()``), as an MCP server (``aar.agents.mcp_server``) and as the
``aar`` client CLI inside the sandbox (``aar.agents.client``). The argument model is the only schema:
the JSON Schema all three publish is derived from it, and so is the validation behind them.

A handler gets validated arguments and returns text for the model. Anything that goes wrong (bad
arguments, a failing command, a 4xx from the referee, an unreachable referee) becomes an error
*result* the model reads; ``Toolbox.call`` never raises, so one bad call cannot end a research run.
Commands and file access run through a ``Runner`` (the agent's sandbox), never with the host's eyes.
"""

from __future__ import annotations

import base64
import json
import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aar.agents.referee import RefereeClient, RefereeError, RefereeUnavailable
from aar.agents.runner import PYTHON, Runner
from aar.contract import ResearcherRun, RunBase, has_result, ranked

log = logging.getLogger("aar.agents")
MAX_RESULT_CHARS = 20_000


class ToolError(Exception):
    """A handler's way to say 'this call failed, tell the model why'."""


@dataclass
class ToolResult:
    content: str
    is_error: bool = False
    data: Any = None  # structured payload for callers that want it (never sent to the model as-is)


@dataclass
class ToolContext:
    runner: Runner
    referee: RefereeClient | None
    shell_timeout: float = 300.0
    max_chars: int = MAX_RESULT_CHARS
    official_runs_left: Callable[[], int | None] = lambda: None
    time_left: Callable[[], float | None] = lambda: None  # seconds of wall-clock budget; caps waits
    on_official_run: Callable[[dict], None] = lambda run: None
    _me: str | None = None
    _tasks: list[dict] | None = None

    def ref(self) -> RefereeClient:
        if self.referee is None:
            raise ToolError("no referee is configured for this researcher")
        return self.referee

    def me(self) -> str:
        if self._me is None:
            self._me = self.ref().me()["name"]
        return self._me

    def task_cards(self) -> list[dict]:
        """The home task first, then the visible ones (an admin token's held-out tasks are dropped)."""
        if self._tasks is None:
            self._tasks = task_cards(self.ref().tasks())
            if not self._tasks:
                raise ToolError("the referee lists no task you may see")
        return self._tasks

    def shown(self) -> list[str]:
        """Names of the tasks whose released numbers a researcher may see (home first)."""
        return [t["name"] for t in self.task_cards()]

    def home_task(self) -> str:
        return self.task_cards()[0]["name"]


class Args(BaseModel):
    """A tool's arguments. The model is the single source of the JSON Schema that all three exposures
    publish (LLM tool specs, the MCP server, the in-sandbox CLI) and of the validation behind them;
    unknown fields are an error, so a misspelt argument is never silently dropped."""

    model_config = ConfigDict(extra="forbid")


def _clean(node: Any) -> Any:
    """Pydantic's schema as model APIs want it: no titles, an optional field as its plain type (null is
    still accepted on input, just not advertised), no ``default: null``."""
    if isinstance(node, list):
        return [_clean(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: ({name: _clean(sub) for name, sub in v.items()} if k == "properties" else _clean(v))
        for k, v in node.items()
        if k != "title" and not (k == "default" and v is None)
    }
    options = out.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        (kept,) = [o for o in options if o != {"type": "null"}]
        del out["anyOf"]
        out = {**kept, **out}
    return out


def schema_of(model: type[Args]) -> dict:
    schema = _clean(model.model_json_schema())
    schema.setdefault("properties", {})
    schema.setdefault("required", [])
    return schema


@dataclass(frozen=True)
class Tool:
    """One tool: its name, what the model is told, its argument model and its handler. The handler gets
    the validated arguments as a dict of the fields the caller gave (coerced to their types)."""

    name: str
    description: str
    args: type[Args]
    handler: Callable[[ToolContext, dict], Any]

    @property
    def schema(self) -> dict:
        return schema_of(self.args)

    def spec(self) -> dict:
        return {"name": self.name, "description": self.description, "input_schema": self.schema}


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head, tail = text[: limit * 3 // 4], text[-limit // 4 :]
    return (
        f"{head}\n[... output truncated: {len(text) - len(head) - len(tail)} characters omitted; "
        f"redirect long output to a file and read it in parts ...]\n{tail}"
    )


def _fmt(data: Any) -> str:
    return data if isinstance(data, str) else json.dumps(data, indent=1, default=str)


# -- handlers ----------------------------------------------------------------------------------------


def _shell(ctx: ToolContext, a: dict) -> str:
    timeout = float(a.get("timeout") or ctx.shell_timeout)
    r = ctx.runner(["/bin/bash", "-c", a["command"]], timeout=timeout, max_output=2_000_000)
    parts = [
        f"exit code {r.returncode}"
        + (f" (killed after {timeout:.0f} s timeout, with its whole process group)" if r.timed_out else "")
    ]
    if r.violations and not r.timed_out:
        parts.append(f"sandbox: {', '.join(r.violations)}")
    if r.stdout:
        parts.append("--- stdout ---\n" + r.stdout.rstrip("\n"))
    if r.stderr:
        parts.append("--- stderr ---\n" + r.stderr.rstrip("\n"))
    text = _truncate("\n".join(parts), ctx.max_chars)
    if r.returncode != 0 or r.timed_out:
        raise ToolError(text)
    return text


def _fileop(ctx: ToolContext, req: dict, timeout: float = 60) -> dict:
    r = ctx.runner(
        [PYTHON, "-m", "aar.agents.fileops"], timeout=timeout, input=json.dumps(req), max_output=8_000_000
    )
    try:
        out = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ToolError(f"file operation failed (exit {r.returncode}): {r.stderr.strip()[-1000:]}") from None
    if "error" in out:
        raise ToolError(out["error"])
    return out


def _read_file(ctx: ToolContext, a: dict) -> str:
    out = _fileop(ctx, {"op": "read", **a})
    note = f"[{a['path']}: {out['lines']} lines, {out['bytes']} bytes]\n"
    return _truncate(note + out["content"], ctx.max_chars)


def _write_file(ctx: ToolContext, a: dict) -> str:
    out = _fileop(ctx, {"op": "write", **a})
    return f"wrote {out['written']} bytes to {a['path']}"


def _edit_file(ctx: ToolContext, a: dict) -> str:
    out = _fileop(ctx, {"op": "edit", **a})
    return f"edited {a['path']}: {out['replacements']} replacement(s)"


def _forum_post(ctx: ToolContext, a: dict) -> dict:
    post = ctx.ref().post(a["title"], a["body"], a["kind"], a.get("tags", []), a.get("cites", []))
    return {
        "post_id": post["id"],
        "title": post["title"],
        "kind": post["kind"],
        "cites": [c["run_id"] for c in post["cites"]],
    }


def _cite_brief(c: dict, shown: list[str] | None = None) -> dict:
    return {
        "run_id": c.get("run_id"),
        "author": c.get("author"),
        "commit": str(c.get("commit", ""))[:12],
        "status": c.get("status"),
        "review_state": c.get("review_state"),
        "verified": c.get("verified"),
        "released": released_brief(c.get("released"), shown),
    }


def _post_brief(p: dict, shown: list[str] | None = None) -> dict:
    cited = {}
    for c in p.get("cites", []):
        brief = _cite_brief(c, shown)
        cited[brief.pop("run_id")] = {k: brief[k] for k in ("verified", "status", "released")}
    return {
        "id": p["id"],
        "author": p["author"],
        "kind": p["kind"],
        "title": p["title"],
        "tags": p["tags"],
        "score": p["score"],
        "created_at": p["created_at"],
        "body": p["body"][:400],
        "cited_runs": cited,
    }


def _forum_search(ctx: ToolContext, a: dict) -> dict:
    page = ctx.ref().search_posts(a.get("query"), a.get("kind"), a.get("author"), int(a.get("limit", 10)))
    shown = ctx.shown()
    return {"total": page["total"], "posts": [_post_brief(p, shown) for p in page["items"]]}


def _forum_read(ctx: ToolContext, a: dict) -> dict:
    post = ctx.ref().get_post(a["post_id"])
    shown = ctx.shown()
    post["cites"] = [_cite_brief(c, shown) for c in post.get("cites", [])]
    post["comments_list"] = ctx.ref().comments(a["post_id"])
    return post


def _code_push(ctx: ToolContext, a: dict) -> dict:
    script = (
        "set -e; git add -A; "
        "if ! git diff --cached --quiet 2>/dev/null || ! git rev-parse -q --verify HEAD >/dev/null; then "
        "git commit -q --allow-empty -F -; fi; git rev-parse HEAD; "
        "git bundle create -q - --branches | base64 -w0"
    )
    r = ctx.runner(
        ["/bin/bash", "-c", script],
        timeout=300,
        input=a.get("message") or "work in progress",
        max_output=80_000_000,
    )
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or len(lines) < 2:
        raise ToolError(f"commit/bundle failed (exit {r.returncode}): {r.stderr.strip()[-1500:]}")
    commit, bundle = lines[0].strip(), base64.b64decode(lines[-1])
    pushed = ctx.ref().push_bundle(bundle)
    return {
        "commit": commit,
        "refs": pushed,
        "hint": "submit_run with this commit and the idea's path for an official score",
    }


def _code_fetch(ctx: ToolContext, a: dict) -> str:
    data = ctx.ref().code_tarball(a["commit"])
    dest = a.get("dest") or f"others/{a['commit'][:12]}"
    out = _fileop(ctx, {"op": "untar", "dest": dest, "data": base64.b64encode(data).decode()}, timeout=120)
    return f"checked out commit {a['commit']} into {out['dest']} ({out['files']} files)"


def _predictions_from_idea(ctx: ToolContext, idea: str, task: str, seed: int) -> dict:
    r = ctx.runner(
        [PYTHON, "-m", "aar.agents.devkit", "predict", idea, "--task", task, "--seed", str(seed)],
        timeout=max(ctx.shell_timeout, 600),
        max_output=64_000_000,
    )
    if r.returncode != 0 or r.timed_out:
        raise ToolError(
            _truncate(
                f"running {idea} on dev failed (exit {r.returncode}"
                f"{', timed out' if r.timed_out else ''}):\n{r.stderr.strip()}",
                4000,
            )
        )
    return json.loads(r.stdout.strip().splitlines()[-1])


def _dev_evaluate(ctx: ToolContext, a: dict) -> dict:
    task = a.get("task") or ctx.home_task()
    if task not in ctx.shown():
        raise ToolError(
            f"dev_evaluate scores the home task and the visible tasks only: {', '.join(ctx.shown())}"
        )
    if bool(a.get("idea_path")) == bool(a.get("predictions_path")):
        raise ToolError(
            "give exactly one of idea_path (run the idea on dev here) or predictions_path "
            "(a JSON file {id: probability} for every dev id)"
        )
    summary = None
    if a.get("idea_path"):
        out = _predictions_from_idea(ctx, a["idea_path"], task, int(a.get("seed", 0)))
        preds, summary = out["predictions"], out["summary"]
    else:
        raw = _fileop(ctx, {"op": "read", "path": a["predictions_path"]})["content"]
        try:
            preds = {str(k): float(v) for k, v in json.loads(raw).items()}
        except (ValueError, AttributeError) as exc:
            raise ToolError(
                f"{a['predictions_path']} is not a JSON object id -> probability ({exc})"
            ) from None
    ans = ctx.ref().dev_evaluate(task, preds)
    return {
        **ans,
        "local_summary": summary,
        "note": "pgr is the task's best released dev PGR (rounded; its Ladder is shared by all "
        "researchers): it moves only when a submission significantly beats it; improved: yours did",
    }


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4)
    if isinstance(v, list):
        return [_round(x) for x in v]
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    return v


SHOWN_ROLES = ("home", "visible")
_CARD_KEYS = ("name", "role", "domain", "description", "weak_model", "strong_model", "protocol_c", "files")
_PUBLIC_SIZES = ("student_train", "dev")
_RELEASED_KEYS = ("pgr", "pgr_ci", "improved", "best_pgr")


def task_cards(cards: list[dict]) -> list[dict]:
    """The task cards a researcher may read, home first, then the visible tasks. Held-out tasks and
    whatever an admin's card adds (the sizes of final's parts, ...) are left out, whoever asks."""
    shown = [c for c in cards if isinstance(c, dict) and c.get("role") in SHOWN_ROLES]
    shown.sort(key=lambda c: c["role"] != "home")  # stable: the referee's order otherwise
    out = []
    for c in shown:
        card = {k: c[k] for k in _CARD_KEYS if k in c}
        card["sizes"] = {k: v for k, v in (c.get("sizes") or {}).items() if k in _PUBLIC_SIZES}
        out.append(card)
    return out


def released_brief(released: Any, shown: list[str] | None = None) -> dict:
    """A run's released public score per home/visible task (the official Ladder's answer: pgr, its
    rounded CI, whether the run moved the task's best, the best after it) and nothing else. Tasks not
    in ``shown`` are dropped, so an admin-shaped run shows a researcher what a researcher's would."""
    out: dict[str, dict] = {}
    if not isinstance(released, dict):
        return out
    for task, rel in released.items():
        if isinstance(rel, dict) and (shown is None or task in shown):
            out[task] = {k: _round(rel.get(k)) for k in _RELEASED_KEYS}
            out[task]["improved"] = bool(out[task]["improved"])
    return out


def run_brief(run: dict, shown: list[str] | None = None) -> dict:
    """An official run as a researcher reads it: never its exact ``results`` (an admin token's run has
    them; they are not looked at), only the released public score per home/visible task."""
    return {
        "run_id": run["id"],
        "author": run["author"],
        "commit": run["commit"][:12],
        "idea_path": run["idea_path"],
        "task": run["task"],
        "status": run["status"],
        "error": (run.get("error") or "")[-1500:] or None,
        "review_state": run["review_state"],
        "released": released_brief(run.get("released"), shown),
    }


def _submit_run(ctx: ToolContext, a: dict) -> dict:
    task = a.get("task") or ctx.home_task()
    commit = a["commit"].lower()
    for run in ctx.ref().runs(agent=ctx.me(), limit=200):  # idempotent: a resumed researcher may retry
        if (
            run["commit"].startswith(commit)
            and run["idea_path"] == a["idea_path"]
            and run["task"] == task
            and run["status"] not in ("failed", "cancelled")
        ):
            return {
                **run_brief(run, ctx.shown()),
                "note": "already submitted (not resubmitted); poll run_status",
            }
    left = ctx.official_runs_left()
    if left is not None and left <= 0:
        raise ToolError("your official-run budget is spent")
    run = ctx.ref().submit_run(commit, a["idea_path"], task)
    ctx.on_official_run(run)
    return {
        **run_brief(run, ctx.shown()),
        "note": "queued: the referee re-runs it on the final split of the home, visible and held-out "
        "tasks; you will see its released public PGR per home/visible task; poll run_status",
    }


def _run_status(ctx: ToolContext, a: dict) -> Any:
    if a.get("run_id"):
        run = ctx.ref().run(a["run_id"])
        wait = float(a.get("wait_seconds") or 0)
        left = ctx.time_left()
        if left is not None:
            wait = min(wait, max(0.0, left))  # never wait past the researcher's wall-clock budget
        deadline = time.monotonic() + min(wait, 900)
        while not has_result(run) and time.monotonic() < deadline:
            time.sleep(min(5.0, max(0.5, deadline - time.monotonic())))
            run = ctx.ref().run(a["run_id"])
        return run_brief(run, ctx.shown())
    shown = ctx.shown()
    return [run_brief(r, shown) for r in ctx.ref().runs(agent=ctx.me(), limit=int(a.get("limit", 10)))]


def _researcher_view(row: dict) -> ResearcherRun | None:
    """The researcher view of a run dict of either view (an admin's extra fields are dropped)."""
    try:
        return ResearcherRun.model_validate({k: row[k] for k in RunBase.model_fields if k in row})
    except ValidationError:
        return None


def leaderboard_rows(rows: list[dict], limit: int, shown: list[str] | None = None) -> list[dict]:
    """Done runs ranked by the one rule (``aar.contract.ranked``) on their *released* numbers, so an
    admin's leaderboard (ranked by exact scores) reads here as a researcher's would."""
    views = [v for v in map(_researcher_view, rows) if v is not None]
    if len(views) < len(rows):
        log.warning("leaderboard: %d rows not in the run contract were left out", len(rows) - len(views))
    out = []
    for rank, v in enumerate(ranked(views)[:limit], start=1):
        out.append(
            {
                "rank": rank,
                "run_id": v.id,
                "author": v.author,
                "idea_path": v.idea_path,
                "commit": v.commit[:12],
                "task": v.task,
                "baseline": v.baseline,
                "review": v.review_state,
                "released": released_brief({t: r.model_dump() for t, r in v.released.items()}, shown),
            }
        )
    return out


def _leaderboard(ctx: ToolContext, a: dict) -> list[dict]:
    return leaderboard_rows(ctx.ref().leaderboard(), int(a.get("limit", 20)), ctx.shown())


def _tasks(ctx: ToolContext, a: dict) -> list[dict]:
    return ctx.task_cards()


def _notebook(ctx: ToolContext, a: dict) -> str:
    """The notebook lives in the agent's scratch dir and is touched only through the sandbox, so the
    host and the in-sandbox client see the same file and neither follows a planted symlink as root."""
    path = str(ctx.runner.scratch / "notebook.md")
    if a["action"] == "append":
        if not a.get("text"):
            raise ToolError("append needs text")
        entry = f"\n## {time.strftime('%Y-%m-%d %H:%M:%S')}\n{a['text'].rstrip()}\n"
        _fileop(ctx, {"op": "write", "path": path, "content": entry, "append": True})
        return "appended to the notebook"
    try:
        text = _fileop(ctx, {"op": "read", "path": path})["content"]
    except ToolError:
        text = ""
    limit = int(a.get("max_chars", 8000))
    return (text[-limit:] if len(text) > limit else text) or "(the notebook is empty)"


# -- the table ---------------------------------------------------------------------------------------

Kind = Literal["result", "hypothesis", "insight", "failure"]
Sha = Annotated[str, Field(pattern="^[0-9a-fA-F]{7,40}$")]


class ShellArgs(Args):
    command: str = Field(min_length=1)
    timeout: float | None = Field(
        None, gt=0, le=7200, description="seconds (default 300); the whole process group is killed after"
    )


class ReadFileArgs(Args):
    path: str = Field(min_length=1)
    offset: int | None = Field(None, ge=0)
    limit: int | None = Field(None, ge=1)


class WriteFileArgs(Args):
    path: str = Field(min_length=1)
    content: str
    append: bool | None = None


class EditFileArgs(Args):
    path: str = Field(min_length=1)
    old: str = Field(min_length=1)
    new: str
    replace_all: bool | None = None


class ForumPostArgs(Args):
    title: str = Field(min_length=1, max_length=300)
    body: str
    kind: Kind
    tags: list[str] | None = Field(None, max_length=20)
    cites: list[Annotated[int, Field(ge=1)]] | None = Field(None, max_length=50)


class ForumSearchArgs(Args):
    query: str | None = None
    kind: Kind | None = None
    author: str | None = None
    limit: int | None = Field(None, ge=1, le=100)


class ForumReadArgs(Args):
    post_id: int = Field(ge=1)


class CodePushArgs(Args):
    message: str | None = None


class CodeFetchArgs(Args):
    commit: Sha
    dest: str | None = None


class DevEvaluateArgs(Args):
    task: str | None = None
    idea_path: str | None = None
    predictions_path: str | None = None
    seed: int | None = Field(None, ge=0)


class SubmitRunArgs(Args):
    commit: Sha
    idea_path: str = Field(pattern=r"^[^/].*\.py$")
    task: str | None = None


class RunStatusArgs(Args):
    run_id: int | None = Field(None, ge=1)
    wait_seconds: float | None = Field(None, ge=0, le=900)
    limit: int | None = Field(None, ge=1, le=100)


class LeaderboardArgs(Args):
    limit: int | None = Field(None, ge=1, le=200)


class TasksArgs(Args):
    pass


class NotebookArgs(Args):
    action: Literal["append", "read"]
    text: str | None = None
    max_chars: int | None = Field(None, ge=100)


TOOLS: list[Tool] = [
    Tool(
        "shell",
        "Run a bash command in your workspace (sandboxed: no network, your files only). "
        "Output is truncated; redirect long output to a file.",
        ShellArgs,
        _shell,
    ),
    Tool(
        "read_file",
        "Read a text file (path relative to your workspace), optionally a range of lines.",
        ReadFileArgs,
        _read_file,
    ),
    Tool(
        "write_file",
        "Create or overwrite (or append to) a text file in your workspace.",
        WriteFileArgs,
        _write_file,
    ),
    Tool(
        "edit_file",
        "Replace an exact, unique snippet of a file by new text.",
        EditFileArgs,
        _edit_file,
    ),
    Tool(
        "forum_post",
        "Share a result, hypothesis, insight or failure with the other researchers. Cite "
        "official run ids: a post shows its cited runs' released public numbers from the referee's "
        "records, never numbers typed in the body.",
        ForumPostArgs,
        _forum_post,
    ),
    Tool(
        "forum_search",
        "Search the forum (full text), newest first; each post's cited runs come with their released "
        "public PGR per home/visible task.",
        ForumSearchArgs,
        _forum_search,
    ),
    Tool(
        "forum_read",
        "Read one forum post in full, with its comments and cited runs.",
        ForumReadArgs,
        _forum_read,
    ),
    Tool(
        "code_push",
        "Commit everything in your workspace and push it to the referee's code store. "
        "Returns the commit sha to cite in submit_run.",
        CodePushArgs,
        _code_push,
    ),
    Tool(
        "code_fetch",
        "Check out any pushed commit (yours or another researcher's) into a folder of your "
        "workspace (default others/<sha>).",
        CodeFetchArgs,
        _code_fetch,
    ),
    Tool(
        "dev_evaluate",
        "Score an idea on the dev split of the home task or of a visible task (task: default the "
        "home task; held-out tasks are never dev-scored). Cheap, budgeted per task and day. The answer "
        "is the task's dev Ladder, shared by all researchers: pgr is the task's best released dev PGR "
        "(rounded), improved=true when your submission significantly beat it (otherwise the previous "
        "release is repeated). Give idea_path to run your idea file on the dev inputs, or "
        "predictions_path to a JSON {id: probability}.",
        DevEvaluateArgs,
        _dev_evaluate,
    ),
    Tool(
        "submit_run",
        "Ask the referee for an official run of a pushed idea: it re-runs run(ctx) itself, over "
        "several seeds, on the final split of the home task, of the visible tasks and of held-out "
        "tasks. final has a public and a private part: you see only the released public PGR per "
        "home/visible task; private and held-out numbers are never shown while the campaign runs. "
        "Budgeted; idempotent.",
        SubmitRunArgs,
        _submit_run,
    ),
    Tool(
        "run_status",
        "Status of an official run (optionally wait for it), or of your recent runs, with its released "
        "public score per home/visible task from the official Ladder: pgr (rounded) and pgr_ci (rounded "
        "95% CI) when the run significantly beat the task's best released run, else pgr null and "
        "improved false; best_pgr is the task's best released PGR after it. Exact accuracies, seed "
        "spread, the private part and held-out tasks are never shown.",
        RunStatusArgs,
        _run_status,
    ),
    Tool(
        "leaderboard",
        "Done official runs, best first by the released public PGR of the home task (highest lower CI "
        "bound first), with released public PGRs on the visible tasks. Runs that did not significantly "
        "beat the task's best released run show pgr null and improved false. Private and held-out "
        "numbers are never shown.",
        LeaderboardArgs,
        _leaderboard,
    ),
    Tool(
        "tasks",
        "The tasks you may see: the home task, then the campaign's visible secondary tasks (other "
        "domains, there to check that an idea generalises), with their cards (domain, description, "
        "models, public file sizes). Held-out tasks are not listed: official runs are scored on them "
        "too, but nothing about them is shown while the campaign runs.",
        TasksArgs,
        _tasks,
    ),
    Tool(
        "notebook",
        "Your persistent research log: append what you tried, learned and plan; read it back "
        "(it survives restarts and context compaction).",
        NotebookArgs,
        _notebook,
    ),
]


@dataclass
class Toolbox:
    ctx: ToolContext
    tools: dict[str, Tool] = field(default_factory=lambda: {t.name: t for t in TOOLS})

    def specs(self) -> list[dict]:
        return [t.spec() for t in self.tools.values()]

    def call(self, name: str, args: Any) -> ToolResult:
        """Run one tool call; every failure is an error result, never an exception."""
        tool = self.tools.get(name)
        if tool is None:
            return ToolResult(f"unknown tool {name!r}; tools: {', '.join(self.tools)}", True)
        if isinstance(args, str):
            try:
                args = json.loads(args or "{}")
            except ValueError as exc:
                return ToolResult(f"arguments are not valid JSON: {exc}", True)
        try:
            parsed = tool.args.model_validate(args)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = "/".join(str(p) for p in err["loc"]) or "arguments"
            msg = "unknown argument" if err["type"] == "extra_forbidden" else err["msg"]
            return ToolResult(f"bad arguments for {name} ({where}): {msg}", True)
        try:
            data = tool.handler(self.ctx, parsed.model_dump(exclude_unset=True, exclude_none=True))
        except ToolError as exc:
            return ToolResult(_truncate(str(exc), self.ctx.max_chars), True)
        except RefereeError as exc:
            return ToolResult(f"the referee refused ({exc.status}): {exc.detail}", True)
        except RefereeUnavailable as exc:
            return ToolResult(f"{exc}; try again later", True)
        except Exception as exc:  # noqa: BLE001 (a tool bug must not end the research run)
            log.exception("tool %s crashed", name)
            return ToolResult(f"tool {name} failed: {type(exc).__name__}: {exc}", True)
        return ToolResult(_truncate(_fmt(data), self.ctx.max_chars), False, data)


def shell_quote(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)
