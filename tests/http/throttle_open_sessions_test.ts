/**
 * A guesser sharing an address (any local process, on loopback) cannot cut off the sessions
 * already open there: while the address is throttled, a request of an open session with its
 * owner's token still gets in; everything else waits, another principal's right token included.
 */
import assert from "node:assert/strict";
import { startKlym } from "../helpers/klym_process.ts";
import { RawMcp } from "../helpers/raw_mcp.ts";

const ALICE = "alice-token-0123456789abcdef";
const BOB = "bob-token-0123456789abcdef";

Deno.test("while a guesser throttles the address, open sessions go on with their owner's token", async () => {
  await using klym = await startKlym({
    KLYM_AUTH_TOKENS: `alice:${ALICE},bob:${BOB}`,
    KLYM_AUTH_FAILURES_BURST: "3",
    KLYM_AUTH_FAILURES_PER_MIN: "1",
  });
  const bob = new RawMcp(klym.url, BOB);
  await bob.initialize();
  const sse = await fetch(`${klym.url}/sse`, { headers: { authorization: `Bearer ${BOB}` } });
  const reader = sse.body!.pipeThrough(new TextDecoderStream()).getReader();
  let endpoint = "";
  while (!endpoint.includes("\n\n")) endpoint += (await reader.read()).value ?? "";
  const messages = /data: (\S+)/.exec(endpoint)![1]!;

  // A process with no token guesses from the same address until it is throttled.
  let throttled = 0;
  for (let i = 0; i < 5; i++) {
    const guess = await new RawMcp(klym.url, `wrong-guess-${i}-0123456789`).post({});
    await guess.body?.cancel();
    if (guess.status === 429) throttled++;
  }
  assert.ok(throttled > 0, "the guesser is throttled");

  // Bob's open sessions still answer, on Streamable HTTP and on legacy SSE.
  const listed = await bob.request("tools/call", { name: "list_tasks", arguments: {} });
  assert.ok(listed.result, JSON.stringify(listed));
  const posted = await fetch(`${klym.url}${messages}`, {
    method: "POST",
    headers: { authorization: `Bearer ${BOB}`, "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }),
  });
  await posted.body?.cancel();
  assert.equal(posted.status, 202);
  await reader.cancel();

  // Anything else waits: a new session, and Bob's session id with another token, right or wrong.
  const fresh = await new RawMcp(klym.url, BOB).post({
    id: 1,
    method: "initialize",
    params: {
      protocolVersion: "2025-11-25",
      capabilities: {},
      clientInfo: { name: "t", version: "1" },
    },
  });
  await fresh.body?.cancel();
  assert.equal(fresh.status, 429, "a new session waits like any guess");
  for (const token of [ALICE, "another-wrong-guess-0123456789"]) {
    const borrowed = await fetch(`${klym.url}/mcp`, {
      method: "POST",
      headers: { ...bob.headers(), authorization: `Bearer ${token}` },
      body: JSON.stringify({ jsonrpc: "2.0", id: 9, method: "tools/list" }),
    });
    await borrowed.body?.cancel();
    assert.equal(borrowed.status, 429, "a session id lets only its owner's token by");
  }
  await bob.close();
});
