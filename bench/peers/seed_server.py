"""The seed's own design, as a peer for bench/peers_bench.ts: one asyncio server in one process,
each task a coroutine in it, with the same four tools as Klym (start_async_agent_task,
check_task_status, cancel_task, list_tasks) and the bench's kinds (bench/kinds/ in Klym).

    python seed_server.py PORT

Nothing isolates one task from another or from the server: a task in a CPU loop holds the
server's only thread, and cancelling it is a request that waits behind that loop.
"""

import asyncio
import json
import sys
import time
import uuid
from typing import Any

from mcp.server.fastmcp import FastMCP

FINAL = {"succeeded", "failed", "cancelled"}


class Task:
    def __init__(self, kind: str, params: dict[str, Any]) -> None:
        self.id = "t_" + uuid.uuid4().hex
        self.kind = kind
        self.params = params
        self.status = "running"
        self.logs: list[dict[str, Any]] = []
        self.result_json: str | None = None
        self.error: dict[str, str] | None = None
        self.created = time.time()
        self.handle: asyncio.Task | None = None

    def log(self, text: str) -> None:
        self.logs.append(
            {"seq": len(self.logs) + 1, "stream": "stdout", "time": iso(time.time()), "text": text}
        )


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


async def run_kind(task: Task) -> Any:
    p = task.params
    if task.kind == "noop":
        return None
    if task.kind == "first_line":
        task.log("first")
        return None
    if task.kind == "wait":
        task.log("waiting")
        await asyncio.sleep(p.get("ms", 60_000) / 1000)
        return None
    if task.kind == "hold":
        held = bytearray(b"\x01" * (p.get("mb", 50) * 1_000_000))
        task.log("holding")
        await asyncio.sleep(p.get("ms", 60_000) / 1000)
        return len(held)
    if task.kind == "spin":
        task.log("spinning")
        end = time.time() + p.get("s", 3)
        while time.time() < end:  # a CPU loop: nothing else runs meanwhile
            pass
        return None
    if task.kind == "big_result":
        return "r" * p.get("bytes", 1_000_000)
    raise ValueError(f"unknown kind {task.kind}")


tasks: dict[str, Task] = {}


async def execute(task: Task) -> None:
    try:
        task.result_json = json.dumps(await run_kind(task))
        task.status = "succeeded"
    except asyncio.CancelledError:
        task.status = "cancelled"
    except Exception as e:  # noqa: BLE001 - a task's failure is its status
        task.status = "failed"
        task.error = {"code": "task_error", "message": str(e)}


mcp = FastMCP("seed", host="127.0.0.1", port=int(sys.argv[1]), log_level="WARNING")


@mcp.tool()
async def start_async_agent_task(kind: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    task = Task(kind, params or {})
    tasks[task.id] = task
    task.handle = asyncio.create_task(execute(task))
    return {"task_id": task.id, "status": task.status}


@mcp.tool()
async def check_task_status(task_id: str, log_cursor: int = 0, max_log_lines: int = 200) -> dict[str, Any]:
    task = tasks[task_id]
    logs = task.logs[log_cursor : log_cursor + max_log_lines]
    out: dict[str, Any] = {
        "task_id": task.id,
        "status": task.status,
        "logs": logs,
        "next_log_cursor": log_cursor + len(logs),
    }
    if task.result_json is not None:
        out["result"] = json.loads(task.result_json)
    if task.error:
        out["error"] = task.error
    return out


@mcp.tool()
async def cancel_task(task_id: str) -> dict[str, Any]:
    task = tasks[task_id]
    if task.status not in FINAL and task.handle:
        task.handle.cancel()
        task.status = "cancelled"
    return {"task_id": task.id, "status": task.status}


@mcp.tool()
async def list_tasks() -> dict[str, Any]:
    counts: dict[str, int] = {}
    for task in tasks.values():
        counts[task.status] = counts.get(task.status, 0) + 1
    return {"counts": counts}


if __name__ == "__main__":
    mcp.run(transport="streamable-http")
