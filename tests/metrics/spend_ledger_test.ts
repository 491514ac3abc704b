/** Model spend per principal and model is kept in the journal by the hour and read over a window. */
import assert from "node:assert/strict";
import { SpendLedger } from "../../src/metrics/spend_ledger.ts";
import { MemoryJournal } from "../../src/journal/memory_journal.ts";
import { SqliteJournal } from "../../src/journal/sqlite_journal.ts";
import type { Journal } from "../../src/journal/journal.ts";
import type { TaskRecord } from "../../src/tasks/task_store.ts";
import { isKlymError } from "../../src/errors.ts";

const HOUR = 3_600_000;
const NOW = Date.UTC(2026, 0, 10, 12, 30);
const of = (owner: string) => ({ owner }) as TaskRecord;
const call = (model: string, endedAt: number, outcome: "ok" | "refused" = "ok") => ({
  model,
  outcome,
  inputTokens: outcome === "ok" ? 100 : 0,
  outputTokens: outcome === "ok" ? 10 : 0,
  startedAt: endedAt,
  endedAt,
});

for (
  const [name, open] of [
    ["memory", () => ({ journal: new MemoryJournal() as Journal, done: () => {} })],
    ["SQLite", () => {
      const dir = Deno.makeTempDirSync();
      Deno.chmodSync(dir, 0o700);
      const journal = new SqliteJournal(`${dir}/klym.db`);
      return {
        journal: journal as Journal,
        done: () => {
          journal.close();
          Deno.removeSync(dir, { recursive: true });
        },
      };
    }],
  ] as const
) {
  Deno.test(`${name} journal: spend is summed per principal and model over the window asked`, () => {
    const { journal, done } = open();
    try {
      const ledger = new SpendLedger(journal, { retentionDays: 2, maxModels: 2, now: () => NOW });
      ledger.modelCall(of("alice"), call("a", NOW - 10 * 60_000));
      ledger.modelCall(of("alice"), call("a", NOW - 5 * 60_000));
      ledger.modelCall(of("alice"), call("a", NOW, "refused"));
      ledger.modelCall(of("bob"), call("b", NOW - 3 * HOUR));
      // A third model, past KLYM_METRICS_MAX_LABEL_VALUES (2 here), is kept as "other".
      ledger.modelCall(of("bob"), call("c", NOW - 3 * HOUR));
      const hour = ledger.read(3600);
      assert.equal(hour.since, new Date(NOW - 30 * 60_000 - HOUR).toISOString());
      assert.deepEqual(hour.rows, [{
        principal: "alice",
        model: "a",
        calls: 2,
        refusals: 1,
        input_tokens: 200,
        output_tokens: 20,
      }]);
      const day = ledger.read(86_400);
      assert.deepEqual(day.rows.map((r) => [r.principal, r.model, r.calls]), [
        ["alice", "a", 2],
        ["bob", "b", 1],
        ["bob", "other", 1],
      ]);
      assert.deepEqual(ledger.read(86_400, "bob").rows.map((r) => r.principal), ["bob", "bob"]);
      // The window reaches back as far as spend is kept, and no further.
      assert.equal(ledger.read(2 * 86_400).rows.length, 3);
      assert.throws(
        () => ledger.read(2 * 86_400 + 1),
        (e) => isKlymError(e, "INVALID_INPUT") && /KLYM_SPEND_RETENTION_DAYS is 2/.test(e.message),
      );
      assert.throws(() => ledger.read(0), (e) => isKlymError(e, "INVALID_INPUT"));
    } finally {
      done();
    }
  });
}

Deno.test("spend older than KLYM_SPEND_RETENTION_DAYS is forgotten when a new hour begins", () => {
  const journal = new MemoryJournal();
  let now = NOW;
  const ledger = new SpendLedger(journal, { retentionDays: 1, maxModels: 5, now: () => now });
  ledger.modelCall(of("alice"), call("a", NOW));
  now = NOW + 24 * HOUR;
  ledger.modelCall(of("alice"), call("a", now - 60_000));
  // A day back from 12:29 reaches into the hour from 12:00 of the day before, kept for now.
  assert.equal(ledger.read(86_400).rows[0]!.calls, 2, "whole hours: the window reaches into it");
  assert.equal(journal.readSpend(0)[0]!.calls, 2);
  now = NOW + 26 * HOUR;
  ledger.modelCall(of("alice"), call("a", now));
  assert.equal(journal.readSpend(0)[0]!.calls, 2, "the first hour is gone, a day later");
});
