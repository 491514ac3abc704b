"""A stdio MCP client of Klym's service, from the Python MCP SDK (mcp 1.x) and from LangChain.

Usage: python service_client.py <command> [args]; the Klym command line comes from the environment
(KLYM_TEST_COMMAND, a JSON list), and the rest of the environment (HOME, XDG_STATE_HOME, ...) is
passed to it. Each command opens its own stdio session, as an assistant restarted between calls
would, prints one JSON object with what it saw, and exits non-zero on any failure:

  start KIND PARAMS_JSON   start_async_agent_task; prints {"task_id"} and exits at once
  wait TASK_ID             polls check_task_status until the task is final; prints the status
  langchain KIND PARAMS    langchain-mcp-adapters' default get_tools() (a new session per call):
                           starts the task with one tool call, polls with more until it is final
"""

import asyncio
import json
import os
import sys
import warnings

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

warnings.simplefilter("ignore", DeprecationWarning)

FINAL = {"succeeded", "failed", "cancelled", "timed_out", "interrupted"}


def server() -> StdioServerParameters:
    command = json.loads(os.environ["KLYM_TEST_COMMAND"])
    env = {k: v for k, v in os.environ.items() if k != "KLYM_TEST_COMMAND"}
    return StdioServerParameters(command=command[0], args=command[1:], env=env)


async def call(session: ClientSession, name: str, args: dict) -> dict:
    result = await session.call_tool(name, args)
    if result.isError:
        raise RuntimeError(f"{name} failed: {result.content}")
    return result.structuredContent


async def start(kind: str, params: str) -> dict:
    async with stdio_client(server()) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            started = await call(
                session, "start_async_agent_task", {"kind": kind, "params": json.loads(params)}
            )
            return {"task_id": started["task_id"]}


async def wait(task_id: str) -> dict:
    async with stdio_client(server()) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            while True:
                status = await call(session, "check_task_status", {"task_id": task_id})
                if status["status"] in FINAL:
                    return {"status": status["status"], "result": status.get("result")}
                await asyncio.sleep(0.1)


async def langchain(kind: str, params: str) -> dict:
    from langchain_mcp_adapters.client import MultiServerMCPClient

    params_ = server()
    client = MultiServerMCPClient(
        {
            "klym": {
                "transport": "stdio",
                "command": params_.command,
                "args": params_.args,
                "env": params_.env,
            }
        }
    )
    tools = {tool.name: tool for tool in await client.get_tools()}
    started = await tools["start_async_agent_task"].ainvoke(
        {"kind": kind, "params": json.loads(params)}
    )
    task_id = json.loads(text_of(started))["task_id"]
    polls = 0
    while True:
        polls += 1
        status = json.loads(
            text_of(await tools["check_task_status"].ainvoke({"task_id": task_id}))
        )
        if status["status"] in FINAL:
            return {
                "task_id": task_id,
                "status": status["status"],
                "result": status.get("result"),
                "polls": polls,
                "tools": sorted(tools),
            }
        await asyncio.sleep(0.1)


def text_of(content) -> str:
    """The text of a LangChain tool's answer: a string, or a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, tuple):
        content = content[0]
    if isinstance(content, list):
        return "".join(
            block.get("text", "") if isinstance(block, dict) else str(block) for block in content
        )
    return str(content)


COMMANDS = {"start": start, "wait": wait, "langchain": langchain}

if __name__ == "__main__":
    print(json.dumps(asyncio.run(COMMANDS[sys.argv[1]](*sys.argv[2:]))))
