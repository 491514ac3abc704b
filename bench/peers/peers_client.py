"""The one client of bench/peers_bench.ts: the Python MCP SDK over Streamable HTTP, driving one
server (Klym, FastMCP's background tasks or the seed design) through every figure of the bench.

    python peers_client.py SERVER URL SETTINGS_JSON

SERVER is `klym`, `fastmcp` or `seed`. Klym and the seed are driven through their tools
(start_async_agent_task, check_task_status, cancel_task); FastMCP through MCP tasks (tools/call
with `task`, tasks/get, tasks/result, tasks/cancel). Memory and CPU are measured by the bench,
which owns the server's process: this client asks for them with a JSON line on stdout and reads
the answer on stdin. Its last line is `{"done": …}` with every raw sample; the bench computes
the figures.
"""

import asyncio
import http.client
import json
import sys
import time
import warnings
from typing import Any
from urllib.parse import urlparse

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from mcp.types import CallToolResult

warnings.filterwarnings("ignore", category=DeprecationWarning)

SERVER, URL, SETTINGS = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
FINAL = {"succeeded", "failed", "cancelled", "timed_out", "interrupted", "completed"}
PATIENCE_S = 120


def ask(question: dict[str, Any]) -> Any:
    """A measurement only the bench can make (it owns the server's process)."""
    print(json.dumps({"ask": question}), flush=True)
    return json.loads(sys.stdin.readline())


def note(text: str) -> None:
    print(json.dumps({"note": text}), flush=True)


def iso_ms(text: str) -> float:
    """Epoch milliseconds of an ISO time with milliseconds and a Z."""
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


class Driver:
    """One server's way of starting, reading and cancelling a task."""

    def __init__(self, session: ClientSession) -> None:
        self.s = session

    async def start(self, kind: str, params: dict[str, Any] | None = None) -> str:
        if SERVER == "fastmcp":
            created = await self.s.experimental.call_tool_as_task(kind, params or {}, ttl=600_000)
            return created.task.taskId
        out = await self.tool("start_async_agent_task", {"kind": kind, "params": params or {}})
        return out["task_id"]

    async def tool(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        result = await self.s.call_tool(name, args)
        if result.isError:
            raise RuntimeError(f"{name} failed: {result.content}")
        return result.structuredContent or {}

    async def status(self, task_id: str) -> dict[str, Any]:
        """`status` (final or not), `first` (epoch ms of the first line, when seen), `result`."""
        if SERVER == "fastmcp":
            got = await self.s.experimental.get_task(task_id)
            out: dict[str, Any] = {"status": got.status}
            if got.status == "completed":
                result = await self.s.experimental.get_task_result(task_id, CallToolResult)
                value = (result.structuredContent or {}).get("result")
                out["result"] = value
                if isinstance(value, float):
                    out["first"] = value * 1000
            return out
        got = await self.tool("check_task_status", {"task_id": task_id, "max_log_lines": 1})
        out = {"status": got["status"], "result": got.get("result"), "error": got.get("error")}
        if got.get("logs"):
            out["first"] = iso_ms(got["logs"][0]["time"])
        return out

    async def cancel(self, task_id: str) -> str:
        if SERVER == "fastmcp":
            return (await self.s.experimental.cancel_task(task_id)).status
        return (await self.tool("cancel_task", {"task_id": task_id}))["status"]

    async def until(self, task_id: str, done, pause_s: float = 0.005) -> dict[str, Any]:
        deadline = time.time() + PATIENCE_S
        while True:
            status = await self.status(task_id)
            if done(status):
                return status
            if status["status"] in FINAL:
                raise RuntimeError(f"task {task_id} ended {status['status']}: {status}"[:500])
            if time.time() > deadline:
                raise TimeoutError(f"task {task_id} still {status['status']}")
            await asyncio.sleep(pause_s)

    async def final(self, task_id: str, pause_s: float = 0.02) -> dict[str, Any]:
        return await self.until(task_id, lambda s: s["status"] in FINAL, pause_s)

    async def started(self, task_id: str) -> None:
        """Until the task's code runs (its first line; FastMCP tells only `working`)."""
        if SERVER == "fastmcp":
            await self.until(task_id, lambda s: s["status"] == "working", 0.02)
        else:
            await self.until(task_id, lambda s: "first" in s, 0.02)


async def trivial(d: Driver) -> dict[str, Any]:
    """N tasks that do nothing, started back to back; the time until all are finished."""
    n = SETTINGS["trivial"]
    t0 = time.perf_counter()
    ids = [await d.start("noop") for _ in range(n)]
    started = time.perf_counter() - t0
    statuses = [(await d.final(i))["status"] for i in ids]
    ok = sum(s in ("succeeded", "completed") for s in statuses)
    return {"n": n, "ok": ok, "started_s": started, "all_done_s": time.perf_counter() - t0}


async def first_line(d: Driver) -> dict[str, Any]:
    samples = []
    for i in range(SETTINGS["first_line"] + 1):
        await asyncio.sleep(SETTINGS["pace_ms"] / 1000)
        t0 = time.time() * 1000
        task_id = await d.start("first_line")
        status = await d.until(task_id, lambda s: "first" in s)
        await d.final(task_id)
        if i > 0:  # the first one warms up
            samples.append(status["first"] - t0)
    return {"samples": samples}


async def memory_per_task(d: Driver, kind: str, params: dict[str, Any], n: int) -> dict[str, Any]:
    """Memory of the server's whole process tree, idle and with n tasks of `kind` running."""
    # Klym's hosts kept idle after the figures before must have exited: each task's whole process counts.
    await asyncio.sleep(SETTINGS.get("idle_wait_s", 0))
    before = ask({"measure": f"before {kind}"})
    ids = [await d.start(kind, params) for _ in range(n)]
    for task_id in ids:
        await d.started(task_id)
    await asyncio.sleep(SETTINGS["steady_s"])
    during = ask({"measure": f"{n} {kind}"})
    for task_id in ids:
        await d.cancel(task_id)
    for task_id in ids:
        await d.final(task_id)
    return {"n": n, "before": before, "during": during}


async def retained(d: Driver) -> dict[str, Any]:
    """n tasks of 1 MB results, each read once as a client would; memory before and after."""
    n = SETTINGS["retained"]
    # Klym's hosts kept idle exit before each measure: the figure is what the server keeps, not
    # the process of the last task (a Klym task's, which a peer's server holds in itself).
    await asyncio.sleep(SETTINGS.get("idle_wait_s", 0))
    before = ask({"measure": "before results"})
    for _ in range(n):
        task_id = await d.start("big_result", {"bytes": 1_000_000})
        status = await d.final(task_id)
        if not isinstance(status.get("result"), str) or len(status["result"]) != 1_000_000:
            raise RuntimeError(f"big_result came back as {str(status)[:200]}")
    await asyncio.sleep(SETTINGS.get("idle_wait_s", 0))
    # Then the server sits idle, read each second without forcing a collection: what it holds once
    # its runtime has collected the garbage of making and reading the results on its own.
    soon = ask({"resident": True})
    idle = [soon["rss"]]
    for _ in range(SETTINGS["retained_idle_s"]):
        await asyncio.sleep(1)
        idle.append(ask({"resident": True})["rss"])
    after = ask({"measure": "after results, idle"})
    return {"n": n, "before": before, "soon": soon, "idle": idle, "after": after}


def raw_request(task_id: str, rpc_id: int) -> dict[str, Any]:
    if SERVER == "fastmcp":
        return {"jsonrpc": "2.0", "id": rpc_id, "method": "tasks/get", "params": {"taskId": task_id}}
    return {
        "jsonrpc": "2.0",
        "id": rpc_id,
        "method": "tools/call",
        "params": {"name": "check_task_status", "arguments": {"task_id": task_id}},
    }


def raw_status(task_id: str, session_id: str, version: str, n: int) -> list[float]:
    """check_task_status (tasks/get for FastMCP) as bare HTTP on one kept-alive connection."""
    url = urlparse(URL)
    conn = http.client.HTTPConnection(url.hostname, url.port)
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-session-id": session_id,
        "mcp-protocol-version": version,
    }
    samples = []
    for i in range(n + 20):
        body = json.dumps(raw_request(task_id, 10_000 + i))
        t0 = time.perf_counter()
        conn.request("POST", url.path, body, headers)
        response = conn.getresponse()
        data = response.read()
        elapsed = (time.perf_counter() - t0) * 1000
        if response.status != 200 or b'"error"' in data[:200]:
            raise RuntimeError(f"raw status call answered {response.status}: {data[:300]!r}")
        if i >= 20:  # 20 warm-up calls
            samples.append(elapsed)
    conn.close()
    return samples


async def status_latency(d: Driver, session_id: str, version: str) -> dict[str, Any]:
    n = SETTINGS["status"]
    task_id = await d.start("noop")
    await d.final(task_id)
    sdk = []
    for i in range(n + 20):
        t0 = time.perf_counter()
        if SERVER == "fastmcp":
            await d.s.experimental.get_task(task_id)
        else:
            await d.s.call_tool("check_task_status", {"task_id": task_id})
        if i >= 20:
            sdk.append((time.perf_counter() - t0) * 1000)
    raw = await asyncio.to_thread(raw_status, task_id, session_id, version, n)
    return {"sdk": sdk, "raw": raw, "validate": await validation(d, task_id, n)}


async def validation(d: Driver, task_id: str, n: int) -> list[float]:
    """What the SDK's check of one check_task_status answer against its outputSchema costs
    (`jsonschema.validate`, as `ClientSession.call_tool` does it), apart from the network."""
    if SERVER == "fastmcp":
        return []  # tasks/get has no output schema to check
    from jsonschema import validate
    from referencing import Registry

    schema = next(t.outputSchema for t in (await d.s.list_tools()).tools if t.name == "check_task_status")
    answer = (await d.s.call_tool("check_task_status", {"task_id": task_id})).structuredContent
    samples = []
    for i in range(n + 20):
        t0 = time.perf_counter()
        validate(answer, schema, registry=Registry())
        if i >= 20:
            samples.append((time.perf_counter() - t0) * 1000)
    return samples


async def cancel_loop(d: Driver) -> dict[str, Any]:
    """A task in a CPU loop, cancelled: until its status is final, and until its CPU is released."""
    runs = []
    for _ in range(SETTINGS["cancels"]):
        ask({"before": "spin"})
        t_start = time.perf_counter()
        task_id = await d.start("spin", {"s": SETTINGS["peer_spin_s"]})
        start_ms = (time.perf_counter() - t_start) * 1000
        if SERVER == "klym":
            await d.started(task_id)
        else:
            await asyncio.sleep(0.5)  # the loop holds the server: nothing can say it runs
        ask({"target": "spin"})
        t0 = time.time() * 1000
        status = await d.cancel(task_id)
        if status not in FINAL:
            status = (await d.final(task_id, 0.002))["status"]
        terminal = time.time() * 1000 - t0
        released = ask({"released": t0})
        runs.append(
            {"status": status, "start_ms": start_ms, "terminal_ms": terminal, "released_ms": released}
        )
    return {"runs": runs}


async def main() -> None:
    async with streamablehttp_client(URL, timeout=PATIENCE_S, sse_read_timeout=PATIENCE_S) as (
        read,
        write,
        session_id,
    ):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            d = Driver(session)
            out: dict[str, Any] = {"protocol": init.protocolVersion}
            figures = [
                ("status", lambda: status_latency(d, session_id(), init.protocolVersion)),
                ("first_line", lambda: first_line(d)),
                ("trivial", lambda: trivial(d)),
                ("waiting", lambda: memory_per_task(d, "wait", {"ms": 600_000}, SETTINGS["waiting"])),
                ("holding", lambda: memory_per_task(d, "hold", {"mb": 50, "ms": 600_000}, SETTINGS["holding"])),
                ("retained", lambda: retained(d)),
                ("cancel", lambda: cancel_loop(d)),
            ]
            for name, figure in figures:
                if SETTINGS["figures"] and name not in SETTINGS["figures"]:
                    continue
                note(f"{SERVER}: {name}")
                out[name] = await figure()
            print(json.dumps({"done": out}), flush=True)


asyncio.run(main())
