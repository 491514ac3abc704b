/** The HTTP face refuses what it must before any MCP work happens. */
import assert from "node:assert/strict";
import { OWN_SESSION, REPO, startKlym } from "../helpers/klym_process.ts";
import { INITIALIZE } from "../helpers/raw_mcp.ts";

function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...headers,
    },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** fetch() sets Host itself, so a forged Host header needs a raw request. */
async function rawStatus(url: string, method: string, path: string, host: string, body = "") {
  const { hostname, port } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const request =
    `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\n` +
    `Accept: application/json, text/event-stream\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`;
  await conn.write(new TextEncoder().encode(request));
  const buf = new Uint8Array(1024);
  const n = await conn.read(buf);
  conn.close();
  const head = new TextDecoder().decode(buf.subarray(0, n ?? 0));
  return { status: Number(head.split(" ")[1]), session: /mcp-session-id/i.test(head) };
}

Deno.test("DNS-rebinding Host and Origin headers are refused with 403 and no session", async () => {
  await using klym = await startKlym();
  for (const host of ["evil.example", "evil.example:8765"]) {
    const mcp = await rawStatus(klym.url, "POST", "/mcp", host, JSON.stringify(INITIALIZE));
    assert.deepEqual(mcp, { status: 403, session: false }, host);
    assert.equal((await rawStatus(klym.url, "GET", "/sse", host)).status, 403);
  }
  assert.equal((await rawStatus(klym.url, "GET", "/healthz", "localhost")).status, 200);
  const headers = { origin: "http://evil.example" };
  const response = await post(`${klym.url}/mcp`, INITIALIZE, headers);
  assert.equal(response.status, 403);
  assert.equal(response.headers.get("mcp-session-id"), null);
  await response.body?.cancel();
  const sse = await fetch(`${klym.url}/sse`, { headers });
  assert.equal(sse.status, 403);
  await sse.body?.cancel();
  const health = await (await fetch(`${klym.url}/healthz`)).json();
  assert.equal(health.sessions, 0);
  const local = await post(`${klym.url}/mcp`, INITIALIZE, { origin: "http://localhost:3000" });
  assert.equal(local.status, 200);
  assert.ok(local.headers.get("mcp-session-id"));
  await local.body?.cancel();
});

Deno.test("KLYM_ALLOWED_HOSTS admits more Host names; a wildcard bind with a token takes any", async () => {
  {
    await using klym = await startKlym({ KLYM_ALLOWED_HOSTS: "klym.internal" });
    const body = JSON.stringify(INITIALIZE);
    assert.equal(
      (await rawStatus(klym.url, "POST", "/mcp", "klym.internal:8765", body)).status,
      200,
    );
    assert.equal((await rawStatus(klym.url, "POST", "/mcp", "other.internal", body)).status, 403);
  }
  const token = "wildcard-token-0123456789";
  await using open = await startKlym({ KLYM_HOST: "0.0.0.0", KLYM_AUTH_TOKEN: token });
  const url = open.url.replace("0.0.0.0", "127.0.0.1");
  const { hostname, port } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  await conn.write(new TextEncoder().encode(
    `GET /sse HTTP/1.1\r\nHost: 10.1.2.3:${port}\r\nAuthorization: Bearer ${token}\r\n\r\n`,
  ));
  const buf = new Uint8Array(256);
  const n = await conn.read(buf);
  conn.close();
  assert.match(new TextDecoder().decode(buf.subarray(0, n ?? 0)), /^HTTP\/1\.1 200/);
});

Deno.test("a body over KLYM_MAX_REQUEST_BODY_BYTES gets 413 before parsing; one at the limit passes", async () => {
  await using klym = await startKlym({ KLYM_MAX_REQUEST_BODY_BYTES: "2048" });
  const pad = (n: number) => {
    const base = JSON.stringify({ ...INITIALIZE, params: { ...INITIALIZE.params, pad: "" } });
    return base.replace('"pad":""', `"pad":"${"x".repeat(n - base.length)}"`);
  };
  const atLimit = await post(`${klym.url}/mcp`, pad(2048));
  assert.equal(atLimit.status, 200);
  await atLimit.body?.cancel();
  const over = await post(`${klym.url}/mcp`, pad(2049));
  assert.equal(over.status, 413);
  assert.match((await over.json()).error.message, /KLYM_MAX_REQUEST_BODY_BYTES/);
  const chunked = await fetch(`${klym.url}/mcp`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: ReadableStream.from([new TextEncoder().encode(pad(4000))]),
  });
  assert.equal(chunked.status, 413, "a body without Content-Length is capped while read");
  await chunked.body?.cancel();
  const garbage = await post(`${klym.url}/mcp`, "{not json");
  assert.equal(garbage.status, 400);
  await garbage.body?.cancel();
});

Deno.test("with KLYM_AUTH_TOKEN set, requests need the bearer token", async () => {
  const token = "s3cret-token-0123456789";
  await using klym = await startKlym({ KLYM_AUTH_TOKEN: token });
  for (const auth of [undefined, "Bearer wrong-token-0123456789", token]) {
    const response = await post(`${klym.url}/mcp`, INITIALIZE, auth ? { authorization: auth } : {});
    assert.equal(response.status, 401, String(auth));
    assert.equal(response.headers.get("www-authenticate"), "Bearer");
    await response.body?.cancel();
  }
  const ok = await post(`${klym.url}/mcp`, INITIALIZE, { authorization: `Bearer ${token}` });
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
  const sse = await fetch(`${klym.url}/sse`);
  assert.equal(sse.status, 401);
  await sse.body?.cancel();
});

Deno.test("binding a non-loopback address without a token refuses to start", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-worker-options", `${REPO}main.ts`, "--host", "0.0.0.0"],
    env: { KLYM_AUTH_TOKEN: "" },
    stdout: "null",
    stderr: "piped",
    ...OWN_SESSION,
  }).output();
  assert.equal(out.code, 2);
  assert.match(
    new TextDecoder().decode(out.stderr),
    /KLYM_AUTH_TOKEN is required when binding to the non-loopback host "0.0.0.0"/,
  );
});

Deno.test("beyond KLYM_MAX_SESSIONS a new session gets 503", async () => {
  await using klym = await startKlym({ KLYM_MAX_SESSIONS: "1" });
  const first = await post(`${klym.url}/mcp`, INITIALIZE);
  assert.equal(first.status, 200);
  await first.body?.cancel();
  const second = await post(`${klym.url}/mcp`, INITIALIZE);
  assert.equal(second.status, 503);
  assert.match((await second.json()).error.message, /KLYM_MAX_SESSIONS/);
});

Deno.test("clients that vanish mid-stream or write to closed sessions leave no leak and no crash", async () => {
  await using klym = await startKlym();
  // An SSE client that connects and goes away.
  const abort = new AbortController();
  const sse = await fetch(`${klym.url}/sse`, { signal: abort.signal });
  const reader = sse.body!.getReader();
  const first = new TextDecoder().decode((await reader.read()).value);
  const sessionId = first.match(/sessionId=([\w-]+)/)![1]!;
  abort.abort();
  await reader.cancel().catch(() => {});
  let health = { sessions: -1 };
  for (let i = 0; i < 50 && health.sessions !== 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
    health = await (await fetch(`${klym.url}/healthz`)).json();
  }
  assert.equal(health.sessions, 0, "the session is dropped when its stream ends");
  const late = await post(`${klym.url}/messages?sessionId=${sessionId}`, {
    jsonrpc: "2.0",
    method: "notifications/initialized",
  });
  assert.equal(late.status, 404);
  await late.body?.cancel();
  // A Streamable HTTP client that hangs up in the middle of a call.
  const client = await klym.connect();
  const caller = new AbortController();
  const pending = client.callTool({ name: "list_tasks", arguments: {} }, { signal: caller.signal });
  caller.abort();
  await assert.rejects(pending);
  const again = await client.callTool({ name: "list_tasks", arguments: {} });
  assert.equal(again.isError, undefined);
  assert.ok((await fetch(`${klym.url}/healthz`).then((r) => r.json())).ok);
});
