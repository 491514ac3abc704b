"""Klym's flows driven by a real FastMCP client (tests/server/fastmcp_clients_test.ts).

Usage: python fastmcp_client.py <mode> <target> <flow>...
  mode    auto (FastMCP 4.x's default: protocol 2026-07-28) or legacy (2025-11-25)
  target  a Klym URL (Streamable HTTP at <url>/mcp), or a JSON object {"command", "args", "env"}
          that starts a Klym over stdio
  flow    tools (start, poll with logs, cancel a CPU loop), run (run_task with progress and live
          log messages), generate (llm_generate on the sampling handler), agent (an agent task on
          the sampling handler, tools and all), tasks (fastmcp-tasks' native flow: create, poll,
          result, cancel; needs fastmcp-tasks installed)

Prints one JSON object with what each flow saw; exits non-zero on any failure.
"""

import asyncio
import json
import sys
import time
import warnings

import mcp_types
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

warnings.simplefilter("ignore", DeprecationWarning)

try:
    # Importing it makes every Client declare the Tasks extension (and drive tasked calls).
    import fastmcp_tasks  # noqa: F401
except ImportError:
    fastmcp_tasks = None

SAMPLED = []


async def sampling_handler(messages, params, context):
    """A stand-in model: a read_graph tool call when offered tools on a fresh question, else text."""
    SAMPLED.append(
        {"messages": len(messages), "tools": [t.name for t in (params.tools or [])]}
    )
    if params.tools and len(messages) == 1:
        return mcp_types.CreateMessageResultWithTools(
            role="assistant",
            model="fastmcp-model",
            stop_reason="toolUse",
            content=[
                mcp_types.ToolUseContent(
                    type="tool_use", id="use_1", name="read_graph", input={}
                )
            ],
        )
    first = messages[0].content
    text = first.text if hasattr(first, "text") else "?"
    return mcp_types.CreateMessageResult(
        role="assistant",
        model="fastmcp-model",
        stop_reason="endTurn",
        content=mcp_types.TextContent(type="text", text=f"sampled: {text[:40]}"),
    )


def structured(result):
    return result.structured_content or json.loads(result.content[0].text)


async def until(predicate, what, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{what} not seen within {timeout}s")


async def flow_tools(client):
    started = structured(
        await client.call_tool("start_async_agent_task", {"kind": "spin"})
    )
    task_id = started["task_id"]

    async def spinning():
        status = structured(
            await client.call_tool("check_task_status", {"task_id": task_id})
        )
        return status if any("spinning" in l["text"] for l in status["logs"]) else None

    running = await spinning_status(spinning)
    cancelled = structured(
        await client.call_tool("cancel_task", {"task_id": task_id, "reason": "test"})
    )

    async def final():
        status = structured(
            await client.call_tool("check_task_status", {"task_id": task_id})
        )
        return status if status["status"] == "cancelled" else None

    done = await until(final, "cancelled status")
    return {
        "started": started["status"],
        "running": running["status"],
        "log": running["logs"][0]["text"],
        "cancel": cancelled["status"],
        "final": done["status"],
    }


async def spinning_status(spinning):
    return await until(spinning, "the spin task's log line")


async def flow_run(client, logs, progress):
    result = await client.call_tool(
        "run_task",
        {"kind": "steps", "params": {"steps": 3, "tick_ms": 50}},
        progress_handler=progress,
    )
    return {"status": structured(result)["status"]}


async def flow_generate(client):
    result = await client.call_tool("llm_generate", {"prompt": "Capital of France?"})
    return structured(result)


async def flow_agent(client):
    result = await client.call_tool(
        "run_task", {"kind": "agent", "prompt": "What is in the graph?"}
    )
    return structured(result)


async def flow_tasks(client):
    from fastmcp_tasks.client import call_tool_task

    # A task polled to its result: create, tasks/get, the inline result.
    done = await call_tool_task(client, "run_task", {"kind": "hello"})
    first = await done.status()
    result = await done.result()
    # A CPU loop cancelled through tasks/cancel.
    spin = await call_tool_task(client, "run_task", {"kind": "spin"})
    working = await spin.status()
    await spin.cancel()
    final = await spin.wait(timeout=60)
    # The transparent way: call_tool polls the task to its result itself.
    transparent = await client.call_tool("run_task", {"kind": "hello"})
    return {
        "task_id": done.task_id,
        "first_status": first.status,
        "result": structured(result)["status"],
        "spin_task_id": spin.task_id,
        "spin_working": working.status,
        "spin_final": final.status,
        "transparent": structured(transparent)["status"],
    }


async def main(mode: str, target: str, flows: list[str]) -> None:
    logs: list[dict] = []
    progress: list[float] = []

    async def log_handler(message):
        logs.append({"level": message.level, "data": message.data})

    async def progress_handler(value, total, message):
        progress.append(value)

    if target.startswith("{"):
        spec = json.loads(target)
        transport = StdioTransport(
            command=spec["command"], args=spec["args"], env=spec["env"]
        )
    else:
        transport = f"{target}/mcp"
    client = Client(
        transport,
        mode=mode,
        sampling_handler=sampling_handler,
        sampling_capabilities=mcp_types.SamplingCapability(
            tools=mcp_types.SamplingToolsCapability()
        ),
        log_handler=log_handler,
        progress_handler=progress_handler,
        timeout=120,
    )
    seen: dict = {}
    async with client:
        if mode == "legacy":
            # 2025 sends log messages once the client picks a level (2026-07-28 asks per request).
            await client.set_logging_level("debug")
        for flow in flows:
            if flow == "tools":
                seen[flow] = await flow_tools(client)
            elif flow == "run":
                seen[flow] = await flow_run(client, logs, progress_handler)
                lines = [
                    line["text"]
                    for entry in logs
                    if isinstance(entry["data"], dict)
                    for line in entry["data"].get("lines", [])
                ]
                seen[flow]["log_lines"] = lines
                seen[flow]["progress"] = progress
            elif flow == "generate":
                seen[flow] = await flow_generate(client)
            elif flow == "agent":
                seen[flow] = await flow_agent(client)
            elif flow == "tasks":
                seen[flow] = await flow_tasks(client)
            else:
                raise ValueError(f"unknown flow {flow}")
    seen["sampled"] = SAMPLED
    print(json.dumps(seen, default=str))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
