import assert from "node:assert/strict";
import type { JSONRPCMessage } from "@modelcontextprotocol/server";
import { BoundedEventStore, jsonLength } from "../../src/http/event_store.ts";

Deno.test("an event's length is its JSON's, escapes counted once, without building it", () => {
  const values: unknown[] = [
    { jsonrpc: "2.0", id: 7, result: { content: [{ type: "text", text: "hi" }], ok: true } },
    [1, -2.5, null, false, "", [], {}],
    { a: { b: [{ c: "x".repeat(1000) }] }, skipped: undefined },
    "plain",
    42,
  ];
  for (const value of values) assert.equal(jsonLength(value), JSON.stringify(value).length);
  assert.equal(jsonLength({ quote: 'a"b' }), JSON.stringify({ quote: 'a"b' }).length - 1);
  // Nesting deeper than a recursive walk could follow.
  let deep: unknown = [];
  for (let i = 0; i < 100_000; i++) deep = [deep];
  assert.equal(jsonLength(deep), 200_002);
});

Deno.test("the store keeps the newest events within its byte bound, and always the newest one", async () => {
  const event = (text: string): JSONRPCMessage => ({
    jsonrpc: "2.0",
    method: "notifications/message",
    params: { text },
  });
  const one = jsonLength(event("x".repeat(100)));
  const store = new BoundedEventStore(1000, one * 2);
  await store.storeEvent("s", event("x".repeat(100)));
  await store.storeEvent("s", event("x".repeat(100)));
  assert.equal(store.size, 2, "exactly at the bound: both kept");
  await store.storeEvent("s", event("x".repeat(100)));
  assert.equal(store.size, 2, "one more: the oldest goes");
  await store.storeEvent("s", event("x".repeat(one * 3)));
  assert.equal(store.size, 1, "an event over the bound alone is still kept, alone");
});
