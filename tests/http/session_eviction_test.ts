/**
 * Over real HTTP, a session the table closed is gone for its client: the app on a local port with
 * bare MCP servers (no tasks) and a session clock the test moves, so nothing waits for time.
 */
import assert from "node:assert/strict";
import { McpServer } from "@modelcontextprotocol/server";
import { loadConfig } from "../../src/config.ts";
import { HttpApp } from "../../src/http/http_app.ts";
import {
  EVICTABLE_IDLE_MS,
  type SessionClock,
  UNUSED_SESSION_IDLE_MS,
} from "../../src/http/session_table.ts";
import { RawMcp } from "../helpers/raw_mcp.ts";
import { PATIENCE_MS } from "../helpers/patience.ts";

/** A clock that moves only when told; `sweep` runs the sweeps the table scheduled on it. */
class TestClock implements SessionClock {
  ms = 1_000_000;
  readonly #timers: (() => void)[] = [];

  now(): number {
    return this.ms;
  }

  every(_ms: number, run: () => void): { stop(): void } {
    this.#timers.push(run);
    return { stop: () => void this.#timers.splice(this.#timers.indexOf(run), 1) };
  }

  sweep(): void {
    for (const run of this.#timers) run();
  }
}

/** The app on a local port with bare MCP servers and `clock`; `close` ends both. */
async function serve(
  env: Record<string, string>,
  clock: TestClock,
  createServer = () => new McpServer({ name: "bare", version: "1" }),
) {
  const app = new HttpApp({
    config: loadConfig({ KLYM_STATE: "memory", ...env }, []),
    createServer,
    health: () => ({}),
    clock,
  });
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: (addr) => resolve(addr) },
    app.fetch,
  );
  return {
    app,
    url: `http://127.0.0.1:${(await listening).port}`,
    close: async () => {
      await app.close();
      await http.shutdown();
    },
  };
}

/** The HTTP status of a `ping` in `client`'s session (its body read or let go). */
async function pingStatus(client: RawMcp): Promise<number> {
  const res = await client.post({ id: 99, method: "ping", params: {} });
  await res.body?.cancel();
  return res.status;
}

Deno.test("sessions closed to make room or as idle answer 404; the others still answer", async () => {
  const clock = new TestClock();
  const { app, url, close } = await serve(
    { KLYM_MAX_SESSIONS: "2", KLYM_SESSION_IDLE_S: "60" },
    clock,
  );
  try {
    const [first, second, third] = [new RawMcp(url), new RawMcp(url), new RawMcp(url)];
    await first.initialize();
    await second.initialize();
    clock.ms += EVICTABLE_IDLE_MS;
    assert.equal(await pingStatus(second), 200, "second is used: first is the least recently");
    clock.ms += EVICTABLE_IDLE_MS;
    assert.ok((await third.initialize()).result, "the third gets in at the limit");
    assert.equal(app.sessionCount, 2);
    assert.equal(await pingStatus(first), 404, "first gave way");
    assert.equal(await pingStatus(second), 200);

    clock.ms += 60_000;
    assert.equal(await pingStatus(third), 200, "third is used at the sweep's eve");
    clock.ms += 1;
    clock.sweep();
    assert.equal(app.sessionCount, 1);
    assert.equal(await pingStatus(second), 404, "second, idle past KLYM_SESSION_IDLE_S, is gone");
    assert.equal(await pingStatus(third), 200);
    await third.close();
    assert.equal(app.sessionCount, 0, "DELETE closes the session");
    const closed = await third.post({ id: 8, method: "ping", params: {} });
    assert.equal(closed.status, 404);
    assert.match(
      (await closed.json()).error.message,
      /^Session .+ was closed by its client \(DELETE\); initialize a new one$/,
    );
  } finally {
    await close();
  }
});

Deno.test("a client listening on its GET stream keeps its session past the unused bound; a closed session's 404 says why", async () => {
  const clock = new TestClock();
  const { app, url, close } = await serve({}, clock);
  try {
    const [listener, silent] = [new RawMcp(url), new RawMcp(url)];
    await listener.initialize();
    await silent.initialize();
    // What the SDK's client does after its handshake: a standing GET stream for the server's
    // messages, and nothing else until its user asks.
    const stream = await fetch(`${url}/mcp`, {
      headers: { ...listener.headers(), accept: "text/event-stream" },
    });
    assert.equal(stream.status, 200);
    clock.ms += UNUSED_SESSION_IDLE_MS + 1;
    clock.sweep();
    assert.equal(app.sessionCount, 1, "the silent session went, the listening one stayed");
    assert.equal(await pingStatus(listener), 200);
    const res = await silent.post({ id: 7, method: "ping", params: {} });
    assert.equal(res.status, 404);
    assert.deepEqual(await res.json(), {
      jsonrpc: "2.0",
      error: {
        code: -32001,
        message:
          `Session ${silent.sessionId} was closed after 60 s with nothing sent after its handshake and no stream open; initialize a new one`,
      },
      id: 7,
    });
    await stream.body?.cancel();
  } finally {
    await close();
  }
});

Deno.test("a request answered at once that never gets its answer (its client cancelled it, then went) does not hold its session", async () => {
  const clock = new TestClock();
  const entered = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const { app, url, close } = await serve({ KLYM_SESSION_IDLE_S: "60" }, clock, () => {
    const server = new McpServer({ name: "bare", version: "1" });
    // An instant tool held up (as a start waits on a slow journal): answered after its cancel,
    // the SDK drops the answer.
    server.registerTool("list_tasks", {}, async () => {
      entered.resolve();
      await release.promise;
      return { content: [{ type: "text", text: "late" }] };
    });
    return server;
  });
  try {
    const client = new RawMcp(url);
    await client.initialize();
    const going = new AbortController();
    const call = fetch(`${url}/mcp`, {
      method: "POST",
      headers: client.headers(),
      signal: going.signal,
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 5,
        method: "tools/call",
        params: { name: "list_tasks", arguments: {} },
      }),
    }).then((res) => res.body?.cancel(), () => {});
    await entered.promise;
    await client.notify("notifications/cancelled", { requestId: 5, reason: "client timeout" });
    release.resolve();
    going.abort();
    await call;
    const deadline = Date.now() + PATIENCE_MS;
    while (app.sessionCount > 0 && Date.now() < deadline) {
      clock.ms += 61_000;
      clock.sweep();
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(app.sessionCount, 0, "the idle sweep closed the session");
  } finally {
    await close();
  }
});
