/**
 * The server's own sampling of task processes' memory (Linux): a process is reported once when it
 * passes its cap, never at the cap itself, and a real process is read from /proc.
 */
import assert from "node:assert/strict";
import { watchProcessMemory } from "../../src/tasks/memory_sampler.ts";
import { countedReads } from "../helpers/counted_reads.ts";

Deno.test("the sampler reports a process once when it passes its cap, not at the cap", async () => {
  // The test's reader is the sampler's only view of the process.
  let rss = 100;
  let closed = 0;
  const { read, after: sampled } = countedReads<number | undefined>(() => rss);
  const fired: number[] = [];
  using _watch = watchProcessMemory(1, 500, (used) => fired.push(used), () => ({
    read,
    close: () => closed++,
  }));
  await sampled(3);
  assert.deepEqual(fired, [], "at 100 of 500");
  rss = 500;
  await sampled(3);
  assert.deepEqual(fired, [], "at the cap itself");
  rss = 501;
  await sampled(1);
  assert.deepEqual(fired, [501], "the first sample past the cap reports it");
  assert.equal(closed, 1, "and stops watching the process");
});

Deno.test("the sampler reads a live process's resident size from /proc", {
  ignore: Deno.build.os !== "linux",
}, async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "setInterval(() => {}, 1e6)"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    const { promise, resolve } = Promise.withResolvers<number>();
    // Any Deno process holds more than 1 MB.
    using watch = watchProcessMemory(child.pid, 1024 * 1024, resolve);
    assert.ok(watch, "Linux has /proc: the server samples, the host runs no watchdog");
    assert.ok(await promise > 1024 * 1024);
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
});

Deno.test("without a readable process the sampler answers undefined: the host watches itself", () => {
  assert.equal(watchProcessMemory(1, 1, () => {}, () => undefined), undefined);
});
