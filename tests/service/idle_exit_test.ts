import assert from "node:assert/strict";
import { IdleExit } from "../../src/service/idle_exit.ts";

Deno.test("the service stops only after a whole idle time with nothing holding it", async () => {
  let now = 0;
  let busy = true;
  let looks = 0;
  const { promise: idle, resolve } = Promise.withResolvers<number>();
  const { promise: looked, resolve: lookedEnough } = Promise.withResolvers<void>();
  using _exit = new IdleExit({
    idleMs: 1000,
    checkMs: 1,
    now: () => now,
    busy: () => {
      if (++looks === 5) lookedEnough();
      return busy;
    },
    onIdle: () => resolve(now),
  });
  // Busy past the idle time: nothing happens.
  now = 5000;
  await looked;
  busy = false;
  now = 5001; // idle from here
  let stopped = false;
  const clock = (async () => {
    while (!stopped) {
      await new Promise((r) => setTimeout(r, 1));
      now += 250;
    }
  })();
  const stoppedAt = await idle;
  stopped = true;
  await clock;
  assert.ok(stoppedAt >= 5001 + 1000, `stopped at ${stoppedAt}, idle since 5001`);
});
