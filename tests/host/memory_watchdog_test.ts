import assert from "node:assert/strict";
import { MEMORY_CHECK_MS, watchMemory } from "../../src/host/memory_watchdog.ts";

Deno.test("the watchdog fires once when the resident size passes the cap, not before", async () => {
  let rss = 100;
  const fired: number[] = [];
  using _watch = watchMemory(500, (used) => fired.push(used), () => rss);
  await new Promise((r) => setTimeout(r, MEMORY_CHECK_MS * 5));
  assert.deepEqual(fired, [], "at 100 of 500");
  rss = 500;
  await new Promise((r) => setTimeout(r, MEMORY_CHECK_MS * 5));
  assert.deepEqual(fired, [], "at the cap itself");
  rss = 501;
  await new Promise((r) => setTimeout(r, MEMORY_CHECK_MS * 5));
  rss = 900;
  await new Promise((r) => setTimeout(r, MEMORY_CHECK_MS * 5));
  assert.deepEqual(fired, [501]);
});
