import assert from "node:assert/strict";
import { settleWithin } from "../../src/journal/settle_within.ts";
import { readGiveUpMs } from "../../src/journal/pg_journal.ts";
import { isKlymError } from "../../src/errors.ts";

Deno.test("work that settles in time settles as it does", async () => {
  assert.equal(await settleWithin(Promise.resolve(7), 1000, "A read", "a rule"), 7);
  await assert.rejects(
    settleWithin(Promise.reject(new Error("refused")), 1000, "A read", "a rule"),
    /refused/,
  );
});

Deno.test("work that never settles is given up with STORE_UNAVAILABLE naming it", async () => {
  const never = new Promise<never>(() => {});
  const error = await settleWithin(never, 20, "A read", "three times the wait").catch((e) => e);
  assert(isKlymError(error, "STORE_UNAVAILABLE"), String(error));
  assert.equal(error.message, "A read did not settle within 20 ms (three times the wait)");
});

Deno.test("the read's give-up follows KLYM_SHARED_WAIT_MS", () => {
  assert.equal(readGiveUpMs(5000), 15_000);
  assert.equal(readGiveUpMs(3333), 10_000, "10 s at least");
  assert.equal(readGiveUpMs(3334), 10_002);
});
