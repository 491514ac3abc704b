"""FastMCP's background tasks, as a peer for bench/peers_bench.ts: each of the bench's kinds is a
tool with `task=True`, served to the client as an MCP task (tools/call with `task`, then
tasks/get, tasks/result and tasks/cancel) by Docket's in-memory backend, in the server's process.

    python fastmcp_server.py PORT

`first_line` returns the time its first line ran (there is no task log to read it from).
"""

import asyncio
import sys
import time

from fastmcp import FastMCP

mcp = FastMCP("fastmcp-peer")


@mcp.tool(task=True)
async def noop() -> None:
    return None


@mcp.tool(task=True)
async def first_line() -> float:
    return time.time()


@mcp.tool(task=True)
async def wait(ms: int = 60_000) -> None:
    await asyncio.sleep(ms / 1000)


@mcp.tool(task=True)
async def hold(mb: int = 50, ms: int = 60_000) -> int:
    held = bytearray(b"\x01" * (mb * 1_000_000))
    await asyncio.sleep(ms / 1000)
    return len(held)


@mcp.tool(task=True)
async def spin(s: float = 3) -> None:
    end = time.time() + s
    while time.time() < end:  # a CPU loop: the event loop waits for it
        pass


@mcp.tool(task=True)
async def big_result(bytes: int = 1_000_000) -> str:
    return "r" * bytes


if __name__ == "__main__":
    mcp.run(
        transport="http", host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
        show_banner=False,
    )
