"""The researchers: long-running agents that propose, implement, test and share W2S ideas.

A researcher is a loop (``aar.agents.loop``) around a backend (``aar.agents.backends``: Anthropic,
any OpenAI-compatible endpoint, Claude Code, or the offline scripted researcher) and one set of tools
(``aar.agents.tools``) that act in the researcher's sandbox (``aar.agents.home``: its own uid, a git
workspace, bubblewrap) or talk to the referee over HTTP (``aar.agents.referee``). Every message and
tool call goes to a JSONL transcript (``aar.agents.transcript``) from which a killed researcher
resumes; budgets (``aar.agents.budget``) stop it on dollars, tokens, wall clock or official runs.

Agents never import referee code: everything they learn crosses the referee's HTTP API.
"""
