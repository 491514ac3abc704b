/** Klym reaching grynya: real third-party MCP servers on 127.0.0.1 as grynya's stand-ins. */
import assert from "node:assert/strict";
import { Client, SSEClientTransport } from "@modelcontextprotocol/client";
import {
  call,
  type KlymProcess,
  ranMs,
  startKlym,
  type Status,
  waitFinal,
  waitLogged,
} from "./helpers/klym_process.ts";
import { establishedTo, withSilentPort } from "./helpers/tcp.ts";
import {
  freePort,
  type Peer,
  startEverythingPeer,
  startFastMcpPeer,
  startMemoryPeer,
} from "./peers/peers.ts";
import { PATIENCE_MS } from "./helpers/patience.ts";

const REPORT_TEXT = "Бачу базу та інструменти, полет нормальний";

async function runTask(klym: KlymProcess, kind: string, params: Record<string, unknown> = {}) {
  const client = await klym.connect();
  const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
    kind,
    params,
  });
  return { taskId: task_id, final: await waitFinal(client, task_id) };
}

async function readGraph(
  url: string,
): Promise<{ entities: { name: string; observations: string[] }[] }> {
  const client = new Client({ name: "graph-reader", version: "1" });
  await client.connect(new SSEClientTransport(new URL(url)));
  try {
    const result = await client.callTool({ name: "read_graph", arguments: {} });
    const structured = result.structuredContent as { entities?: unknown } | undefined;
    if (structured?.entities) return structured as never;
    return JSON.parse((result.content as { type: string; text: string }[])[0]!.text);
  } finally {
    await client.close();
  }
}

const memoryFile = () => Deno.makeTempFileSync({ suffix: ".jsonl" });

const PEERS: [string, () => Promise<Peer>, string[]][] = [
  [
    "server-memory over SSE",
    () => startMemoryPeer({ transport: "sse", memoryFile: memoryFile() }),
    ["create_entities", "read_graph"],
  ],
  [
    "server-memory over Streamable HTTP",
    () => startMemoryPeer({ transport: "http", memoryFile: memoryFile() }),
    ["create_entities", "read_graph"],
  ],
  ["FastMCP over SSE", () => startFastMcpPeer(), ["create_entities", "read_graph", "hang"]],
  ["server-everything over SSE", () => startEverythingPeer({ transport: "sse" }), ["echo"]],
  ["server-everything over Streamable HTTP", () => startEverythingPeer({ transport: "http" }), [
    "echo",
  ]],
];

for (const [name, start, expectedTools] of PEERS) {
  Deno.test(`report sees the tools of ${name}`, async () => {
    await using peer = await start();
    await using klym = await startKlym({ KLYM_GRYNYA_URL: peer.url });
    const { final } = await runTask(klym, "report");
    const writes = expectedTools.includes("create_entities");
    if (!writes) {
      // server-everything has no graph: the report succeeds and says its save did not land.
      assert.equal(final.status, "succeeded", JSON.stringify(final.error));
      const saved = (final.result as { saved: { ok: boolean; error: { code: string } } }).saved;
      assert.equal(saved.ok, false);
      assert.equal(saved.error.code, "grynya_no_write_strategy");
      assert.ok(final.allLogs.some((l) => /^grynya offers \d+ tools: echo, /.test(l.text)));
      return;
    }
    assert.equal(final.status, "succeeded", JSON.stringify(final.error));
    const result = final.result as {
      text: string;
      tools: string[];
      transport: string;
      server: { name: string };
    };
    assert.equal(result.text, REPORT_TEXT);
    for (const tool of expectedTools) {
      assert.ok(result.tools.includes(tool), `${tool} in ${result.tools}`);
    }
    assert.equal(result.transport, peer.url.endsWith("/mcp") ? "http" : "sse");
    assert.ok(result.server.name.length > 0);
    assert.ok(final.allLogs.some((l) => l.text === REPORT_TEXT));
    const graph = await readGraph(peer.url.replace(/\/mcp$/, "/sse"));
    const node = graph.entities.find((e) => e.name.startsWith("klym-task-"));
    assert.ok(node, "the report was saved into the graph");
    assert.match(node.observations[0]!, new RegExp(REPORT_TEXT));
  });
}

Deno.test("graph_write stores a node that read_graph shows; later saves append to it", async () => {
  await using peer = await startMemoryPeer({ transport: "sse", memoryFile: memoryFile() });
  await using klym = await startKlym({ KLYM_GRYNYA_URL: peer.url });
  const { taskId, final } = await runTask(klym, "graph_write", { text: "the sky is blue" });
  assert.equal(final.status, "succeeded", JSON.stringify(final.error));
  const saved = await runTask(klym, "save_twice");
  assert.deepEqual(saved.final.result, {
    tools: ["create_entities", "add_observations"],
    ok: [true, true],
  });
  const graph = await readGraph(peer.url);
  const node = graph.entities.find((e) => e.name === `klym-task-${taskId}`);
  assert.ok(node, JSON.stringify(graph));
  assert.equal(node.observations[0], "the sky is blue");
  const twice = graph.entities.find((e) => e.name === `klym-task-${saved.taskId}`)!;
  assert.equal(twice.observations.length, 2);
  assert.match(twice.observations[1]!, /\{"step":2,"note":"second finding"\}$/);
});

Deno.test("graph_write without anything to save fails naming the params", async () => {
  await using peer = await startFastMcpPeer();
  await using klym = await startKlym({ KLYM_GRYNYA_URL: peer.url });
  const { final } = await runTask(klym, "graph_write");
  assert.equal(final.error?.code, "invalid_params");
  assert.match(final.error!.message, /"params.text"/);
});

Deno.test("a write grynya rejects fails with grynya's message", async () => {
  await using peer = await startFastMcpPeer();
  const template = {
    create: {
      tool: "add_observations",
      arguments: { observations: [{ entityName: "nobody", contents: ["{{text}}"] }] },
    },
    append: { tool: "add_observations", arguments: {} },
  };
  await using klym = await startKlym({
    KLYM_GRYNYA_URL: peer.url,
    KLYM_GRYNYA_WRITE: JSON.stringify(template),
  });
  const { final } = await runTask(klym, "graph_write", { text: "x" });
  assert.equal(final.error?.code, "grynya_write_rejected");
  assert.match(
    final.error!.message,
    /refused save #1 \(strategy template, add_observations\): grynya answered isError: .*Entity with name nobody not found/,
  );
});

Deno.test("grynya down: report fails as grynya_unreachable with the URL, within the connect timeout", async () => {
  const url = `http://127.0.0.1:${freePort()}/sse`;
  await using klym = await startKlym({ KLYM_GRYNYA_URL: url, KLYM_GRYNYA_RECONNECTS: "1" });
  const { final } = await runTask(klym, "report");
  assert.equal(final.status, "failed");
  assert.equal(final.error?.code, "grynya_unreachable");
  assert.match(final.error!.message, new RegExp(`Cannot reach grynya at ${url} \\(2 attempts`));
  // A refused connection fails at once: well within the default connect timeout (10 s).
  assert.ok(ranMs(final) < 10_000, `${ranMs(final)} ms`);
});

Deno.test("a grynya that accepts but never answers fails the connect within its timeout", async () => {
  await withSilentPort(async (port) => {
    await using klym = await startKlym({
      KLYM_GRYNYA_URL: `http://127.0.0.1:${port}/sse`,
      KLYM_GRYNYA_CONNECT_TIMEOUT_MS: "500",
      KLYM_GRYNYA_RECONNECTS: "0",
    });
    const { final } = await runTask(klym, "report");
    assert.equal(final.error?.code, "grynya_unreachable");
    assert.match(
      final.error!.message,
      /no answer within 500 ms \(KLYM_GRYNYA_CONNECT_TIMEOUT_MS\)/,
    );
    // The knob's 500 ms, not the default 10 s, ended the wait.
    assert.ok(ranMs(final) < 10_000, `${ranMs(final)} ms`);
  });
});

for (const transport of ["http", "sse"] as const) {
  const stall = transport === "http"
    ? "answers initialize, then never answers the initialized notification"
    : "opens its event stream, then never names its endpoint";
  Deno.test(`a grynya that ${stall} (${transport}) fails the connect within its timeout`, async () => {
    await using grynya = stallingGrynya(transport);
    await using klym = await startKlym({
      KLYM_GRYNYA_URL: grynya.url,
      KLYM_GRYNYA_TRANSPORT: transport,
      // Long enough for a cold task process to get as far as the stall on a loaded machine.
      KLYM_GRYNYA_CONNECT_TIMEOUT_MS: "3000",
      KLYM_GRYNYA_RECONNECTS: "0",
    });
    const { final } = await runTask(klym, "report");
    assert.equal(final.error?.code, "grynya_unreachable", JSON.stringify(final));
    assert.match(
      final.error!.message,
      /no answer within (?:[12]\d{3}|3000) ms \(KLYM_GRYNYA_CONNECT_TIMEOUT_MS\)/,
    );
    assert.ok(grynya.stalled() > 0, "the connect never reached the stall");
    // The knob's 3 s ended the attempt, not the task's own timeout (600 s by default).
    assert.ok(ranMs(final) < 10_000, `${ranMs(final)} ms`);
  });
}

/**
 * A grynya that starts a connect and stalls in its middle: over Streamable HTTP it answers
 * `initialize` and holds the initialized notification; over SSE it opens the event stream and
 * never sends the `endpoint` event. What it holds is let go when it is disposed.
 */
function stallingGrynya(transport: "http" | "sse") {
  const held: (() => void)[] = [];
  const hold = (then: () => void) => held.push(then);
  let stalled = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    if (transport === "sse") {
      stalled++;
      const body = new ReadableStream<Uint8Array>({
        start: (controller) =>
          hold(() => {
            try {
              controller.close();
            } catch {
              // Klym's client went first and cancelled the stream.
            }
          }),
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    }
    if (req.method !== "POST") return new Response(null, { status: 405 });
    const message = await req.json();
    if (message.method === "initialize") {
      return Response.json({
        jsonrpc: "2.0",
        id: message.id,
        result: {
          protocolVersion: message.params.protocolVersion,
          capabilities: {},
          serverInfo: { name: "stalling", version: "1" },
        },
      }, { headers: { "mcp-session-id": "stalling" } });
    }
    stalled++;
    await new Promise<void>((resolve) => hold(resolve));
    return new Response(null, { status: 202 });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/${transport === "sse" ? "sse" : "mcp"}`,
    stalled: () => stalled,
    async [Symbol.asyncDispose]() {
      for (const release of held) release();
      await server.shutdown();
    },
  };
}

Deno.test("a tool call that never answers fails at the per-call timeout", async () => {
  await using peer = await startFastMcpPeer();
  await using klym = await startKlym({
    KLYM_GRYNYA_URL: peer.url,
    KLYM_GRYNYA_CALL_TIMEOUT_MS: "800",
  });
  const { final } = await runTask(klym, "grynya_calls", { tool: "hang" });
  assert.equal(final.error?.code, "grynya_timeout");
  assert.match(
    final.error!.message,
    new RegExp(`grynya at ${peer.url} did not answer tools/call hang within 800 ms`),
  );
  // The knob's 800 ms, not the default 60 s, ended the call.
  assert.ok(ranMs(final) < 60_000, `${ranMs(final)} ms`);
});

Deno.test("grynya restarting mid-task: the task reconnects and carries on", async () => {
  const port = freePort();
  let peer = await startFastMcpPeer({ port });
  await using klym = await startKlym({ KLYM_GRYNYA_URL: peer.url, KLYM_GRYNYA_RECONNECTS: "6" });
  const client = await klym.connect();
  const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
    kind: "grynya_calls",
    params: { times: 8, pause_ms: 250, resend_interrupted: true },
  });
  // Restart grynya only once the task is connected and working, however slowly it started.
  let cursor = 0;
  for (let seen = false; !seen;) {
    const page = await call<Status>(client, "check_task_status", { task_id, log_cursor: cursor });
    cursor = page.next_log_cursor;
    seen = page.logs.some((l) => l.text === "call 0: ok");
    if (!seen) await new Promise((r) => setTimeout(r, 20));
  }
  await peer.stop();
  peer = await startFastMcpPeer({ port });
  try {
    const final = await waitFinal(client, task_id);
    assert.equal(final.status, "succeeded", JSON.stringify(final.error));
    assert.equal((final.result as { calls: number }).calls, 8);
    // It went through a reconnect, not around one.
    assert.ok(
      final.allLogs.some((l) => /^grynya: reconnected to .* on attempt \d+/.test(l.text)),
      final.allLogs.map((l) => l.text).join("\n"),
    );
  } finally {
    await peer.stop();
  }
});

Deno.test("grynya gone for good mid-task: a clear failure, not a hang", async () => {
  const peer = await startFastMcpPeer();
  await using klym = await startKlym({ KLYM_GRYNYA_URL: peer.url, KLYM_GRYNYA_RECONNECTS: "2" });
  const client = await klym.connect();
  const baseline = establishedTo(peer.port); // the harness's own probe may keep one
  const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
    kind: "grynya_calls",
    params: { tool: "slow", args: { seconds: 30 } },
  });
  // The task's first act is to connect and call: the peer goes once the task is connected.
  for (const deadline = Date.now() + PATIENCE_MS; establishedTo(peer.port) <= baseline;) {
    assert.ok(Date.now() < deadline, "the task never connected to the peer");
    await new Promise((r) => setTimeout(r, 20));
  }
  await peer.stop(); // cuts the SSE stream with the call in flight or about to be sent
  const started = Date.now();
  const final = await waitFinal(client, task_id);
  assert.equal(final.status, "failed");
  assert.match(final.error!.code, /^grynya_(unreachable|error|call_interrupted)$/);
  assert.match(final.error!.message, new RegExp(peer.url.replace(/[/.]/g, "\\$&")));
  assert.ok(Date.now() - started < 10_000, `${Date.now() - started} ms`);
});

Deno.test("a task cancelled while connected leaves no connection open on grynya", async () => {
  for (const transport of ["sse", "http"] as const) {
    await using peer = await startMemoryPeer({ transport, memoryFile: memoryFile() });
    await using klym = await startKlym({ KLYM_GRYNYA_URL: peer.url, KLYM_WARM_SPARES: "0" });
    const client = await klym.connect();
    // Nothing holds a connection yet (the peer's readiness probe closes its own), so every one
    // counted below is the task's.
    const baseline = establishedTo(peer.port);
    assert.equal(baseline, 0, `${transport}: connections before the task`);
    const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
      kind: "grynya_hold",
    });
    await waitLogged(client, task_id); // grynya_hold logs once it holds its connection
    assert.ok(establishedTo(peer.port) > baseline, `${transport}: connected while running`);
    await call(client, "cancel_task", { task_id });
    assert.equal((await waitFinal(client, task_id)).status, "cancelled");
    // The kill closes the task process's sockets: the peer's side follows within moments.
    let open = establishedTo(peer.port);
    for (const deadline = Date.now() + PATIENCE_MS; open > baseline && Date.now() < deadline;) {
      await new Promise((r) => setTimeout(r, 50));
      open = establishedTo(peer.port);
    }
    assert.equal(open, baseline, `${transport}: connections left on the peer`);
  }
});

Deno.test("many tasks report against one grynya at once", async () => {
  await using peer = await startFastMcpPeer();
  await using klym = await startKlym({ KLYM_GRYNYA_URL: peer.url, KLYM_MAX_CONCURRENT: "8" });
  const client = await klym.connect();
  const ids = await Promise.all(
    Array.from(
      { length: 16 },
      () =>
        call<{ task_id: string }>(client, "start_async_agent_task", { kind: "report" }).then((s) =>
          s.task_id
        ),
    ),
  );
  for (const id of ids) {
    const final = await waitFinal(client, id);
    assert.equal(final.status, "succeeded", JSON.stringify(final.error));
  }
  const graph = await readGraph(peer.url);
  assert.equal(graph.entities.filter((e) => e.name.startsWith("klym-task-")).length, 16);
});

Deno.test("a forced transport is used as asked; auto falls back to SSE on a 4xx", async () => {
  await using sse = await startFastMcpPeer();
  {
    await using klym = await startKlym({
      KLYM_GRYNYA_URL: sse.url,
      KLYM_GRYNYA_TRANSPORT: "http",
      KLYM_GRYNYA_RECONNECTS: "0",
    });
    const { final } = await runTask(klym, "report");
    assert.equal(final.error?.code, "grynya_unreachable");
    assert.match(final.error!.message, /transport http/);
  }
  for (const transport of ["sse", "auto"]) {
    await using klym = await startKlym({
      KLYM_GRYNYA_URL: sse.url,
      KLYM_GRYNYA_TRANSPORT: transport,
    });
    const { final } = await runTask(klym, "report");
    assert.equal((final.result as { transport: string }).transport, "sse", transport);
  }
});

Deno.test("the grynya token and headers reach grynya on every request", async () => {
  await using peer = await startFastMcpPeer();
  const seen: (string | null)[][] = [];
  // A recording reverse proxy in front of grynya (same host, so the task may reach it).
  const upstream = new URL(peer.url);
  const proxy = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    seen.push([req.headers.get("authorization"), req.headers.get("x-team")]);
    const url = new URL(req.url);
    url.port = upstream.port;
    return fetch(url, {
      method: req.method,
      headers: req.headers,
      body: req.body,
      signal: req.signal,
    });
  });
  try {
    await using klym = await startKlym({
      KLYM_GRYNYA_URL: `http://127.0.0.1:${proxy.addr.port}/sse`,
      KLYM_GRYNYA_TOKEN: "grynya-secret",
      KLYM_GRYNYA_HEADERS: '{"x-team": "klym"}',
    });
    const { final } = await runTask(klym, "report");
    assert.equal(final.status, "succeeded", JSON.stringify(final.error));
    assert.ok(seen.length >= 3);
    for (const [auth, team] of seen) {
      assert.equal(auth, "Bearer grynya-secret");
      assert.equal(team, "klym");
    }
  } finally {
    await proxy.shutdown();
  }
});
