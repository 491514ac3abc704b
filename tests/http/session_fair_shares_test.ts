/** Two principals on one real server: neither can take the sessions from the other. */
import assert from "node:assert/strict";
import { startKlym } from "../helpers/klym_process.ts";
import { RawMcp } from "../helpers/raw_mcp.ts";
import { PATIENCE_MS } from "../helpers/patience.ts";

const ALICE = "alice-token-0123456789";
const BOB = "bob-token-0123456789ab";
const TOKENS = `alice:${ALICE},bob:${BOB}`;

/** Opens an SSE session of `token`: its stream's reader (past the endpoint event) and its id. */
async function openSse(url: string, token: string) {
  const res = await fetch(`${url}/sse`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200, await (res.ok ? "" : res.text()));
  const reader = res.body!.getReader();
  const first = new TextDecoder().decode((await reader.read()).value);
  const sessionId = first.match(/sessionId=([\w-]+)/)![1]!;
  return { reader, sessionId };
}

/** The HTTP status of a message posted to an SSE session. */
async function postStatus(url: string, token: string, sessionId: string): Promise<number> {
  const res = await fetch(`${url}/messages?sessionId=${sessionId}`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }),
  });
  await res.body?.cancel();
  return res.status;
}

/** Resolves when the stream ends (the server closed the session), skipping keepalives. */
async function ended(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
  while (!(await reader.read()).done) { /* keepalive */ }
}

async function initialize(url: string, token: string): Promise<RawMcp> {
  const raw = new RawMcp(url, token);
  await raw.initialize();
  return raw;
}

Deno.test("alice's SSE streams holding every session do not lock bob out; bob gets his fair share", async () => {
  await using klym = await startKlym({ KLYM_AUTH_TOKENS: TOKENS, KLYM_MAX_SESSIONS: "4" });
  const streams = [];
  for (let i = 0; i < 4; i++) streams.push(await openSse(klym.url, ALICE));
  const fifth = await fetch(`${klym.url}/sse`, { headers: { authorization: `Bearer ${ALICE}` } });
  assert.equal(fifth.status, 503, "alice holds her share and more: no room for her");
  assert.match(
    (await fifth.json()).error.message,
    /principal "alice" has 4 open sessions, the limit is 4 \(KLYM_MAX_SESSIONS\)/,
  );
  const first = await initialize(klym.url, BOB);
  assert.ok(first.sessionId, "bob's initialize is answered with a session");
  await ended(streams[0]!.reader);
  const second = await initialize(klym.url, BOB);
  assert.ok(second.sessionId, "bob's second session, up to his fair share of 2");
  await ended(streams[1]!.reader);
  const third = new RawMcp(klym.url, BOB);
  const refused = await third.initialize();
  assert.equal(third.sessionId, "", "beyond his fair share bob waits like anyone");
  assert.match(
    refused.error!.message,
    /4 sessions are open, the limit is 4 \(KLYM_MAX_SESSIONS\), and principal "bob" has 2, its fair share being 2/,
  );
  const health = await (await fetch(`${klym.url}/healthz`, {
    headers: { authorization: `Bearer ${ALICE}` },
  })).json();
  assert.equal(health.sessions, 2, "alice counts her own sessions only");
  // The least recently used of alice's sessions were closed, the others are still hers.
  const statuses = [];
  for (const { sessionId } of streams) statuses.push(await postStatus(klym.url, ALICE, sessionId));
  assert.deepEqual(statuses, [404, 404, 202, 202]);
  for (const { reader } of streams.slice(2)) await reader.cancel();
  await first.close();
  await second.close();
});

Deno.test("KLYM_MAX_SESSIONS_PER_PRINCIPAL holds at its edge and leaves room to others", async () => {
  await using klym = await startKlym({
    KLYM_AUTH_TOKENS: TOKENS,
    KLYM_MAX_SESSIONS: "10",
    KLYM_MAX_SESSIONS_PER_PRINCIPAL: "2",
  });
  const streams = [await openSse(klym.url, ALICE), await openSse(klym.url, ALICE)];
  const third = await fetch(`${klym.url}/sse`, { headers: { authorization: `Bearer ${ALICE}` } });
  assert.equal(third.status, 503);
  assert.match(
    (await third.json()).error.message,
    /principal "alice" has 2 open sessions, the limit per principal is 2 \(KLYM_MAX_SESSIONS_PER_PRINCIPAL\)/,
  );
  const bob = await initialize(klym.url, BOB);
  assert.ok(bob.sessionId);
  await streams[0]!.reader.cancel();
  // Alice's closed stream frees her place (the server sees the stream end).
  const deadline = Date.now() + PATIENCE_MS;
  let again: Response;
  while (
    (again = await fetch(`${klym.url}/sse`, {
        headers: { authorization: `Bearer ${ALICE}` },
      })).status === 503 && Date.now() < deadline
  ) {
    await again.body?.cancel();
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(again.status, 200);
  await again.body?.cancel();
  await streams[1]!.reader.cancel();
  await bob.close();
});

Deno.test("/healthz counts only the caller's own tasks and sessions; an admin's counts everyone's", async () => {
  const CAROL = "carol-token-0123456789";
  await using klym = await startKlym({
    KLYM_AUTH_TOKENS: `${TOKENS},carol:${CAROL}`,
    KLYM_ADMINS: "alice",
  });
  const bob = await initialize(klym.url, BOB);
  const started = await bob.request("tools/call", {
    name: "start_async_agent_task",
    arguments: { kind: "graph_write", params: { text: "bob's" } },
  });
  assert.ok(
    (started.result as { structuredContent?: { task_id?: string } }).structuredContent?.task_id,
  );
  const alice = await initialize(klym.url, ALICE);
  const health = async (token: string) =>
    await (await fetch(`${klym.url}/healthz`, { headers: { authorization: `Bearer ${token}` } }))
      .json();
  const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b);
  const carol = await health(CAROL);
  assert.equal(total(carol.tasks), 0, "bob's task is not carol's to count");
  assert.equal(carol.sessions, 0, "nor are bob's and alice's sessions");
  const own = await health(BOB);
  assert.equal(total(own.tasks), 1);
  assert.equal(own.sessions, 1);
  const admin = await health(ALICE);
  assert.equal(total(admin.tasks), 1, "the admin counts bob's task");
  assert.equal(admin.sessions, 2);
  await bob.close();
  await alice.close();
});
