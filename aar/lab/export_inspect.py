"""A finished campaign as an Inspect eval log, written with inspect_ai's own writer, so the tools built on
Inspect's format (``inspect view``, log readers, dataframes) read aar campaigns as they are.

The mapping: the campaign is one eval (task ``aar/<campaign>``); each researcher is one sample (id = its
name, input = its starting direction) with its whole conversation across sessions as messages (tool
calls and their results, errors marked; a compaction shows as the summary the model continued from),
its token usage per model, and its runs, flags, direction, backend and spend as metadata. Its score
``confirmed_pgr`` is the private PGR of its best official run (the one rule of ``aar.contract.best``:
chosen on the public part) when that run is *confirmed*: it beats vanilla on private by the paired test,
Holm-corrected over the researchers' best runs (``aar.lab.report.compare``). A researcher without a
confirmed run has no ``confirmed_pgr`` (its ``public_pgr`` and the comparison are in the score and
metadata): an unconfirmed number is not reported as if it were one.

inspect_ai is an optional extra (``pip install 'aar[inspect]'``): importing this module without it
raises a clear error, and nothing else in aar imports it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aar.agents.prices import Usage
from aar.agents.transcript import Transcript, restore_records
from aar.lab.layout import CampaignDir
from aar.lab.report import View, compare, part_pgr, summary

try:
    from inspect_ai.log import (
        EvalConfig,
        EvalDataset,
        EvalLog,
        EvalMetric,
        EvalResults,
        EvalSample,
        EvalScore,
        EvalSpec,
        EvalStats,
        write_eval_log,
    )
    from inspect_ai.model import (
        ChatMessage,
        ChatMessageAssistant,
        ChatMessageSystem,
        ChatMessageTool,
        ChatMessageUser,
        ModelUsage,
    )
    from inspect_ai.scorer import Score
    from inspect_ai.tool import ToolCall, ToolCallError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("`aar lab export --inspect` needs inspect_ai: pip install 'aar[inspect]'") from exc

SCORER = "aar_referee"


class ExportError(ValueError):
    """A folder that cannot be exported; the message names the file."""


# -- messages ----------------------------------------------------------------------------------------


def _block_type(b: dict) -> str:
    """The neutral block type; Claude Code transcripts name blocks by class (TextBlock, ToolUseBlock)."""
    t = str(b.get("type", ""))
    return {"TextBlock": "text", "ToolUseBlock": "tool_use", "ToolResultBlock": "tool_result"}.get(t, t)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_text(c.get("text", c) if isinstance(c, dict) else c) for c in content)
    return json.dumps(content, default=str)


def _assistant(blocks: list[dict], model: str | None) -> ChatMessageAssistant:
    texts, calls = [], []
    for b in blocks:
        kind = _block_type(b)
        if kind == "text":
            texts.append(str(b.get("text", "")))
        elif kind == "tool_use":
            raw = b.get("input")
            args = raw if isinstance(raw, dict) else {}
            parse_error = b.get("error") or (None if isinstance(raw, dict) else f"arguments: {raw!r}")
            calls.append(
                ToolCall(
                    id=str(b.get("id", "")),
                    function=str(b.get("name", "")),
                    arguments=args,
                    parse_error=parse_error,
                )
            )
    return ChatMessageAssistant(content="\n".join(texts), tool_calls=calls or None, model=model)


def _user(blocks: list[dict], names: dict[str, str]) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    texts = []
    for b in blocks:
        kind = _block_type(b)
        if kind == "tool_result":
            content = _text(b.get("content", ""))
            call_id = str(b.get("tool_use_id", ""))
            error = ToolCallError("unknown", content[:2000]) if b.get("is_error") else None
            out.append(
                ChatMessageTool(
                    content=content, tool_call_id=call_id, function=names.get(call_id), error=error
                )
            )
        elif kind == "text":
            texts.append(str(b.get("text", "")))
    if texts:
        out.append(ChatMessageUser(content="\n".join(texts)))
    return out


def messages_of(records: Iterable[dict], system: str | None = None) -> list[ChatMessage]:
    """Every message of a transcript, across sessions, as Inspect chat messages (tool calls included)."""
    out: list[ChatMessage] = [ChatMessageSystem(content=system)] if system else []
    names: dict[str, str] = {}
    model: str | None = None
    for rec in records:
        kind = rec.get("type")
        if kind == "session_start":
            model = rec.get("model") or model
        elif kind == "message":
            msg = rec.get("message") or {}
            content = msg.get("content")
            blocks = content if isinstance(content, list) else [{"type": "text", "text": _text(content)}]
            blocks = [b for b in blocks if isinstance(b, dict)]
            if msg.get("role") == "assistant":
                for b in blocks:
                    if _block_type(b) == "tool_use":
                        names[str(b.get("id", ""))] = str(b.get("name", ""))
                out.append(_assistant(blocks, model))
            else:
                out.extend(_user(blocks, names))
        elif kind == "compaction":
            first = (rec.get("messages") or [{}])[0]
            text = _text(first.get("content", "")) if isinstance(first, dict) else ""
            out.append(ChatMessageUser(content=f"[context compacted; the model continued from:]\n{text}"))
    return out


def usage_of(records: Iterable[dict]) -> dict[str, ModelUsage]:
    """Token usage per model and its cost as the researcher's budget recorded it (``cost_usd`` on each
    usage record, priced with the campaign's own table): the same dollars as the dashboard and the lab's
    report (:func:`aar.transcript_format.account`), never re-priced here."""
    per: dict[str, Usage] = {}
    cost: dict[str, float] = {}
    for rec in records:
        if rec.get("type") == "usage":
            model = str(rec.get("model") or "unknown")
            per[model] = per.get(model, Usage()) + Usage.from_dict(rec.get("usage") or {})
            paid = rec.get("cost_usd")
            if isinstance(paid, int | float) and not isinstance(paid, bool):
                cost[model] = cost.get(model, 0.0) + float(paid)
    return {
        m: ModelUsage(
            input_tokens=u.input,
            output_tokens=u.output,
            total_tokens=u.total,
            input_tokens_cache_write=u.cache_write,
            input_tokens_cache_read=u.cache_read,
            total_cost=cost.get(m),
        )
        for m, u in per.items()
    }


def _add_usage(into: dict[str, ModelUsage], more: dict[str, ModelUsage]) -> None:
    for m, u in more.items():
        into[m] = into[m] + u if m in into else u


# -- the log -----------------------------------------------------------------------------------------


def _iso(value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    return datetime.now(UTC).isoformat(timespec="seconds")


def _run_rows(snapshot: dict, board: list[dict], name: str) -> list[dict]:
    """This researcher's official runs: scored ones as the report's leaderboard rows, others by status."""
    done = {row["run_id"]: row for row in board}
    rows = []
    for raw in snapshot.get("runs") or []:
        if not isinstance(raw, dict) or raw.get("baseline") or raw.get("author") != name:
            continue
        row = done.get(raw.get("id"))
        rows.append(
            row
            if row is not None
            else {
                "run_id": raw.get("id"),
                "commit": raw.get("commit"),
                "idea_path": raw.get("idea_path"),
                "status": raw.get("status"),
                "error": raw.get("error"),
            }
        )
    return rows


def build_log(folder: Path) -> EvalLog:
    """The campaign in ``folder`` (finished: it has snapshot.json) as an ``EvalLog`` (not yet written)."""
    d = CampaignDir(Path(folder))
    snap_path = d.root / "snapshot.json"
    try:
        snapshot = json.loads(snap_path.read_text())
    except OSError:
        raise ExportError(
            f"{snap_path}: not found (the campaign has not ended, or this is not one)"
        ) from None
    except ValueError as exc:
        raise ExportError(f"{snap_path}: not valid JSON ({exc})") from None
    view = View.of(snapshot)
    board = summary(view)["leaderboard"]
    best = view.best_by_researcher()
    comparisons = {c.run.author: c for c in compare(list(best.values()))}
    flags = view.flags()

    samples: list[EvalSample] = []
    all_usage: dict[str, ModelUsage] = {}
    researchers = view.researchers() or [{"name": n} for n in view.researcher_names()]
    for info in researchers:
        name = str(info.get("name"))
        records = Transcript(d.transcript(name)).records() if d.transcript(name).exists() else []
        usage = usage_of(records)
        _add_usage(all_usage, usage)
        restored = restore_records(records)
        run = best.get(name)
        comp = comparisons.get(name)
        public_pgr, public_ci = part_pgr(run, "public") if run else (None, (None, None))
        private_pgr, private_ci = part_pgr(run, "private") if run else (None, (None, None))
        scores: dict[str, Score] = {}
        if run is not None and public_pgr is not None:
            scores["public_pgr"] = Score(
                value=public_pgr,
                answer=f"run {run.id}: {run.idea_path}",
                explanation=f"best official run by public PGR, 95% CI {list(public_ci)}",
            )
        confirmed = bool(comp and comp.confirmed and private_pgr is not None)
        if confirmed:
            assert run is not None and comp is not None and comp.vs is not None
            scores["confirmed_pgr"] = Score(
                value=private_pgr,
                answer=f"run {run.id}: {run.idea_path}",
                explanation=(
                    f"private PGR {private_pgr:.3f}, 95% CI {list(private_ci)}; beats vanilla on private "
                    f"(Holm p {comp.holm_p:.3g} over the researchers' best runs)"
                ),
            )
        samples.append(
            EvalSample(
                id=name,
                epoch=1,
                input=str(info.get("direction") or ""),
                target="",
                messages=messages_of(records),
                scores=scores or None,
                model_usage=usage,
                total_time=float(info.get("active_seconds") or restored.spend.seconds_before or 0.0),
                metadata={
                    "direction": info.get("direction"),
                    "backend": info.get("backend"),
                    "model": info.get("model"),
                    "status": info.get("status"),
                    "stop_reason": info.get("stop_reason"),
                    "spend_usd": info.get("spend_usd"),
                    "turns": info.get("turns", restored.spend.turns),
                    "posts": info.get("posts"),
                    "best_run": run.id if run else None,
                    "confirmed": confirmed,
                    "private_pgr": private_pgr,
                    "private_ci": list(private_ci),
                    "holm_p": comp.holm_p if comp else None,
                    "runs": _run_rows(snapshot, board, name),
                    "flags": [f for f in flags if f.get("agent") == name],
                },
            )
        )

    confirmed_values = [
        s.scores["confirmed_pgr"].value for s in samples if s.scores and "confirmed_pgr" in s.scores
    ]
    public_values = [s.scores["public_pgr"].value for s in samples if s.scores and "public_pgr" in s.scores]

    def eval_score(name: str, values: list, what: str) -> EvalScore:
        metrics = {"count": EvalMetric(name="count", value=len(values))}
        if values:
            metrics["mean"] = EvalMetric(name="mean", value=sum(values) / len(values))
            metrics["max"] = EvalMetric(name="max", value=max(values))
        return EvalScore(
            name=name,
            scorer=SCORER,
            scored_samples=len(values),
            unscored_samples=len(samples) - len(values),
            metrics=metrics,
            metadata={"what": what},
        )

    models = sorted(
        {str(s.metadata.get("model") or s.metadata.get("backend")) for s in samples if s.metadata}
    )
    started, finished = _iso(snapshot.get("started_at")), _iso(snapshot.get("finished_at"))
    name = str(snapshot.get("campaign") or d.root.name)
    campaign_file = d.campaign_file
    spec = EvalSpec(
        created=started,
        task=f"aar/{name}",
        task_id=name,
        dataset=EvalDataset(name=name, samples=len(samples), sample_ids=[str(s.id) for s in samples]),
        model=models[0] if len(models) == 1 else ("mixed: " + ", ".join(models) if models else "none"),
        config=EvalConfig(),
        metadata={
            "home_task": view.home,
            "visible_tasks": view.visible,
            "held_out_tasks": view.held_out,
            "model_pair": snapshot.get("model_pair"),
            "stop_reason": snapshot.get("stop_reason"),
            "report_top_k": view.k,
            "campaign_yaml": campaign_file.read_text() if campaign_file.exists() else None,
        },
    )
    head = summary(view)
    results = EvalResults(
        total_samples=len(samples),
        completed_samples=len(samples),
        scores=[
            eval_score(
                "confirmed_pgr", confirmed_values, "private PGR of each researcher's confirmed best run"
            ),
            eval_score("public_pgr", public_values, "public PGR of each researcher's best run"),
        ],
        metadata={"headline": head["headline"], "vanilla": head["vanilla"], "top_k": head["top_k"]},
    )
    return EvalLog(
        status="success",
        eval=spec,
        results=results,
        stats=EvalStats(started_at=started, completed_at=finished, model_usage=all_usage),
        samples=samples,
    )


def export_inspect(folder: Path, out: Path | None = None) -> Path:
    """Write ``folder``'s campaign as ``<out or folder/inspect>/<campaign>.eval``; returns the file."""
    log = build_log(folder)
    dest_dir = Path(out) if out is not None else Path(folder) / "inspect"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{log.eval.task_id}.eval"
    write_eval_log(log, str(dest), format="eval")
    return dest
