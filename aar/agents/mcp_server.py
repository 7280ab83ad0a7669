"""The researcher's tools as an MCP server (package ``mcp`` 2.x, low-level ``Server``): the same
``Toolbox`` behind ``tools/list`` and ``tools/call``, served over stdio by ``aar agent mcp``, or
in-process (claude-agent-sdk, tests) by handing ``build_server`` to a transport."""

from __future__ import annotations

import anyio
import mcp_types as types
from mcp.server import Server

from aar.agents.tools import Toolbox


def build_server(toolbox: Toolbox, name: str = "aar-researcher") -> Server:
    async def list_tools(_ctx, _params) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(name=s["name"], description=s["description"], input_schema=s["input_schema"])
                for s in toolbox.specs()
            ]
        )

    async def call_tool(_ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        # tools block (sandboxed commands, HTTP): keep the event loop free
        result = await anyio.to_thread.run_sync(toolbox.call, params.name, dict(params.arguments or {}))
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=result.content)], is_error=result.is_error
        )

    return Server(
        name,
        version="1",
        instructions="Tools of an aar weak-to-strong researcher.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def serve_stdio(toolbox: Toolbox) -> None:
    from mcp.server.stdio import stdio_server

    server = build_server(toolbox)

    async def main() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(main)
