"""The native task flow from the Python MCP SDK (mcp 1.x, its experimental tasks client).

Usage: python native_tasks_client.py <klym url>. Starts a task-augmented run_task, polls it with
tasks/get until it is completed, reads its result with tasks/result, lists it, starts another and
cancels it. Prints one JSON object describing what it saw; exits non-zero on any failure.
"""

import asyncio
import json
import sys
import warnings

from mcp import ClientSession, types
from mcp.client.streamable_http import streamablehttp_client

warnings.simplefilter("ignore", DeprecationWarning)


async def main(url: str) -> None:
    seen: dict = {}
    async with streamablehttp_client(f"{url}/mcp") as (read, write, _):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            seen["tasks_capability"] = init.capabilities.tasks is not None
            tasks = session.experimental
            created = await tasks.call_tool_as_task(
                "run_task", {"kind": "hello", "prompt": "from python"}, ttl=30000
            )
            task_id = created.task.taskId
            seen["created_status"] = created.task.status
            statuses = []
            async for status in tasks.poll_task(task_id):
                statuses.append(status.status)
            seen["final_status"] = statuses[-1]
            result = await tasks.get_task_result(task_id, types.CallToolResult)
            seen["result"] = result.structuredContent
            listed = await tasks.list_tasks()
            seen["listed"] = task_id in [t.taskId for t in listed.tasks]
            other = await tasks.call_tool_as_task(
                "run_task", {"kind": "sleep", "params": {"ms": 20000}}
            )
            cancelled = await tasks.cancel_task(other.task.taskId)
            seen["cancelled_status"] = cancelled.status
    print(json.dumps(seen))


asyncio.run(main(sys.argv[1]))
