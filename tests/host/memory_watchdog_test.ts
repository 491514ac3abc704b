import assert from "node:assert/strict";
import { watchMemory } from "../../src/host/memory_watchdog.ts";

Deno.test("the watchdog fires once when the resident size passes the cap, not before", async () => {
  // The test's reader is the watchdog's only view of memory: each call is one check, so the test
  // waits for checks to happen, not for time to pass.
  let rss = 100;
  let checks = 0;
  let wake: (() => void) | undefined;
  const read = () => {
    checks++;
    wake?.();
    return rss;
  };
  const checked = async (n: number) => {
    const target = checks + n;
    while (checks < target) await new Promise<void>((resolve) => wake = resolve);
    wake = undefined;
  };
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
