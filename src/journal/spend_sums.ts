/**
 * Model spend held in memory, by hour, principal and model: the whole store of the memory journal,
 * and the shared store's copy of its spend table (reads are synchronous; PostgreSQL is not).
 */
import type { JournalSpend } from "./journal.ts";

export class SpendSums {
  readonly #rows = new Map<string, JournalSpend>();

  /** Adds `spend` to its hour's row. */
  add(spend: JournalSpend): void {
    const key = JSON.stringify([spend.hour, spend.owner, spend.model]);
    const had = this.#rows.get(key);
    this.#rows.set(key, had ? addSpend(had, spend) : spend);
  }

  /** Replaces every row of the hours from `since` on with `rows` (as the shared store has them). */
  replaceFrom(since: number, rows: readonly JournalSpend[]): void {
    this.forgetFrom(since);
    for (const row of rows) this.add(row);
  }

  /** Spend per principal and model from `since` on, summed; sorted by principal, then model. */
  read(since: number, owner?: string): JournalSpend[] {
    const sums = new Map<string, JournalSpend>();
    for (const row of this.#rows.values()) {
      if (row.hour < since || (owner !== undefined && row.owner !== owner)) continue;
      const key = JSON.stringify([row.owner, row.model]);
      const had = sums.get(key);
      sums.set(key, had ? addSpend(had, row) : { ...row, hour: since });
    }
    return [...sums.values()].sort((a, b) =>
      a.owner === b.owner ? (a.model < b.model ? -1 : 1) : a.owner < b.owner ? -1 : 1
    );
  }

  /** Forgets the hours before `before`. */
  forgetBefore(before: number): void {
    for (const [key, row] of this.#rows) if (row.hour < before) this.#rows.delete(key);
  }

  forgetFrom(since: number): void {
    for (const [key, row] of this.#rows) if (row.hour >= since) this.#rows.delete(key);
  }
}

function addSpend(a: JournalSpend, b: JournalSpend): JournalSpend {
  return {
    ...a,
    calls: a.calls + b.calls,
    refusals: a.refusals + b.refusals,
    inputTokens: a.inputTokens + b.inputTokens,
    outputTokens: a.outputTokens + b.outputTokens,
  };
}
