"""The researcher's tools as a command line, for use inside the sandbox (and for debugging outside).

    python -m aar.agents.client leaderboard '{"limit": 5}'
    python -m aar.agents.client schema '{"tool": "submit_run"}'     # arguments' JSON Schema (all: no tool)
    aar agent tool forum_search --json-args '{"query": "confidence"}'

Inside the sandbox the referee is the bind-mounted Unix socket ``$AAR_REFEREE`` and the token
``$AAR_REFEREE_TOKEN`` (set by ``AgentHome``); commands run directly (we are already sandboxed).
Prints the tool's result; exit code 0 on success, 1 on an error result, 2 on usage errors.
"""

from __future__ import annotations

import json
import os
import sys

from aar.agents.referee import RefereeClient
from aar.agents.runner import LocalRunner
from aar.agents.tools import Toolbox, ToolContext


def toolbox_from_env(max_wait: float = 30.0) -> Toolbox:
    target = os.environ.get("AAR_REFEREE")
    referee = (
        RefereeClient(target, os.environ.get("AAR_REFEREE_TOKEN"), max_wait=max_wait) if target else None
    )
    return Toolbox(ToolContext(runner=LocalRunner(), referee=referee))


def run_tool(name: str, args_json: str) -> int:
    box = toolbox_from_env()
    if name in ("list", "--list"):
        for spec in box.specs():
            print(f"{spec['name']}: {spec['description']}")
        return 0
    if name == "schema":  # the arguments' JSON Schema, from the same pydantic models the LLM tools use
        try:
            wanted = json.loads(args_json or "{}").get("tool")
        except (ValueError, AttributeError):
            print("usage: schema '{\"tool\": NAME}'", file=sys.stderr)
            return 2
        specs = [s for s in box.specs() if wanted in (None, s["name"])]
        print(json.dumps({s["name"]: s["input_schema"] for s in specs}, indent=1))
        return 0 if specs else 2
    result = box.call(name, args_json or "{}")
    print(result.content)
    return 1 if result.is_error else 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 2 if not args else 0
    return run_tool(args[0], args[1] if len(args) > 1 else "{}")


if __name__ == "__main__":
    sys.exit(main())
