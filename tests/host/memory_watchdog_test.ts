import assert from "node:assert/strict";
import { watchMemory } from "../../src/host/memory_watchdog.ts";
import { countedReads } from "../helpers/counted_reads.ts";

Deno.test("the watchdog fires once when the resident size passes the cap, not before", async () => {
  // The test's reader is the watchdog's only view of memory.
  let rss = 100;
  const { read, after: checked } = countedReads(() => rss);
  const fired: number[] = [];
  using _watch = watchMemory(500, (used) => fired.push(used), read);
  await checked(3);
  assert.deepEqual(fired, [], "at 100 of 500");
  rss = 500;
  await checked(3);
  assert.deepEqual(fired, [], "at the cap itself");
  rss = 501;
  await checked(1);
  assert.deepEqual(fired, [501], "the first check past the cap fires");
  rss = 900;
  await checked(3);
  assert.deepEqual(fired, [501], "only once");
});
