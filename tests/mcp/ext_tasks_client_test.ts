/**
 * A native task flow from the TypeScript client SDK with the official tasks package
 * (`@modelcontextprotocol/ext-tasks`), as an assistant built on them would run it: start
 * `run_task` as a task, let the package poll it to its result, and cancel another, in both protocol
 * eras.
 */
import assert from "node:assert/strict";
import {
  createTaskSessionFromClient,
  resultFromTaskOutcome,
} from "@modelcontextprotocol/ext-tasks/client";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { call, startKlym } from "../helpers/klym_process.ts";
import { MODERN_VERSION, parseSse, TASKS_EXTENSION } from "../helpers/raw_mcp.ts";

type Summary = { status: string; kind: string; result?: Record<string, unknown> };

Deno.test("the ext-tasks client runs, settles and cancels Klym tasks (protocol 2025-11-25)", async () => {
  await using klym = await startKlym();
  const client = await klym.connect("http");
  const session = createTaskSessionFromClient(client, { endpointId: "klym-test" });
  try {
    const execution = await session.callTool("run_task", { kind: "hello", prompt: "hi" }, {
      task: { preference: "require" },
    });
    assert.equal(execution.kind, "task", "run_task came back as a task, not an immediate result");
    const taskId = execution.handle!.taskId;
    const { outcome } = await execution.settle();
    assert.equal(outcome.status, "completed");
    const result = resultFromTaskOutcome(outcome) as unknown as { structuredContent: Summary };
    assert.equal(result.structuredContent.status, "succeeded");
    assert.deepEqual(result.structuredContent.result, { taskId, prompt: "hi", params: {} });
    // The same registry task, as the four tools see it.
    assert.equal(
      (await call<Summary>(client, "check_task_status", { task_id: taskId })).kind,
      "hello",
    );

    const long = await session.callTool("run_task", { kind: "sleep", params: { ms: 60_000 } }, {
      task: { preference: "require" },
    });
    assert.equal(long.kind, "task");
    await long.cancel();
    const cancelled = await call<Summary>(client, "check_task_status", {
      task_id: long.handle!.taskId,
    });
    assert.equal(cancelled.status, "cancelled");
  } finally {
    await session.close();
  }
});

Deno.test("the ext-tasks client runs, settles and cancels Klym tasks (protocol 2026-07-28, Tasks extension)", async () => {
  await using klym = await startKlym();
  const clientInfo = { name: "klym-ext-tasks-test", version: "1.0.0" };
  const clientCapabilities = { extensions: { [TASKS_EXTENSION]: {} } };
  const client = new Client(
    clientInfo,
    {
      capabilities: clientCapabilities,
      versionNegotiation: { mode: { pin: MODERN_VERSION } },
    } as ConstructorParameters<typeof Client>[1],
  );
  await client.connect(new StreamableHTTPClientTransport(new URL(`${klym.url}/mcp`)));
  assert.equal(client.getProtocolEra(), "modern");
  // The package sends the extension's requests itself, through the host's own dispatch.
  const rawDispatch = async (request: unknown) => {
    const { method, params } = request as { method: string; params?: Record<string, unknown> };
    const name = params?.name ?? params?.taskId;
    const res = await fetch(`${klym.url}/mcp`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-protocol-version": MODERN_VERSION,
        "mcp-method": method,
        ...(typeof name === "string" ? { "mcp-name": name } : {}),
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: crypto.randomUUID(), ...(request as object) }),
    });
    const text = await res.text();
    const body = res.headers.get("content-type")?.includes("text/event-stream")
      ? parseSse(text).filter((e) => e.data).at(-1)!.data
      : text;
    return JSON.parse(body);
  };
  const session = createTaskSessionFromClient(client, {
    endpointId: "klym-test-modern",
    rawDispatch,
    v2RequestFraming: { protocolVersion: MODERN_VERSION, clientInfo, clientCapabilities },
  });
  try {
    const execution = await session.callTool("run_task", { kind: "hello", prompt: "hi" }, {
      task: { preference: "require" },
    });
    assert.equal(execution.kind, "task");
    const taskId = execution.handle!.taskId;
    const { outcome } = await execution.settle();
    assert.equal(outcome.status, "completed");
    const result = resultFromTaskOutcome(outcome) as unknown as { structuredContent: Summary };
    assert.equal(result.structuredContent.status, "succeeded");
    assert.deepEqual(result.structuredContent.result, { taskId, prompt: "hi", params: {} });

    const long = await session.callTool("run_task", { kind: "sleep", params: { ms: 60_000 } }, {
      task: { preference: "require" },
    });
    assert.equal(long.kind, "task");
    await long.cancel();
    const legacy = await klym.connect("http");
    const cancelled = await call<Summary>(legacy, "check_task_status", {
      task_id: long.handle!.taskId,
    });
    assert.equal(cancelled.status, "cancelled");
  } finally {
    await session.close();
  }
});
