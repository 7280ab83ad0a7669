"""A backend in one file, registered from a test module (issue 13: adding a backend is one file).

It is a real ``Backend``: a deterministic policy over the same tools (write a note, append to the
notebook, read the leaderboard, then declare itself done), reporting token usage that its registered
price turns into dollars. The lab's child processes find it through ``AAR_PLUGINS=tests.agents.toy_backend``
(or the path of this file)."""

from __future__ import annotations

from aar.agents.backends import Backend, Completion, backend
from aar.agents.prices import Price, Usage

TOY_PRICE = Price(input=2.0, output=8.0)
USAGE = Usage(input=120, output=30)


@backend("toy", default_model="toy-1", prices={"toy-1": TOY_PRICE})
class ToyBackend(Backend):
    """A toy researcher: three tool calls, then done."""

    name = "toy"

    def __init__(self, model: str | None, *, direction: str = "", seed: int = 0, **_ignored) -> None:
        super().__init__()
        self.model, self.direction, self.seed = model or "toy-1", direction, seed

    def _complete(self, system, messages, tools, max_tokens) -> Completion:
        n = sum(1 for m in messages if m["role"] == "assistant")
        plan = [
            ("write_file", {"path": "notes/toy.md", "content": f"direction: {self.direction}\n"}),
            ("notebook", {"action": "append", "text": f"toy researcher, seed {self.seed}"}),
            ("leaderboard", {"limit": 3}),
        ]
        if n >= len(plan):
            return Completion([{"type": "text", "text": "done"}], "end_turn", USAGE, self.model, done=True)
        name, args = plan[n]
        blocks = [
            {"type": "text", "text": f"toy step {n}"},
            {"type": "tool_use", "id": f"toy_{n}", "name": name, "input": args},
        ]
        return Completion(blocks, "tool_use", USAGE, self.model)
