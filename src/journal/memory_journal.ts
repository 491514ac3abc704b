/**
 * `KLYM_STATE=memory`: nothing is written anywhere, and a restart starts from no tasks. The
 * registry keeps every task it knows in memory, so this journal has nothing to answer but saves.
 */
import type {
  Journal,
  JournalHealth,
  JournalLine,
  JournalSave,
  JournalSpend,
  JournalTask,
  RestoredTask,
} from "./journal.ts";

export class MemoryJournal implements Journal {
  readonly where = "memory";
  readonly #saves = new Map<string, JournalSave[]>();
  readonly #spend = new Map<string, JournalSpend>();

  restore(_now: number): RestoredTask[] {
    return [];
  }
  admitted(_task: JournalTask): void {}
  changed(_task: JournalTask): void {}
  progressed(_task: JournalTask): void {}
  logged(_id: string, _lines: readonly JournalLine[], _keepFrom: number, _dropped: number): void {}
  saved(save: JournalSave): void {
    const saves = this.#saves.get(save.taskId) ?? [];
    saves.push(save);
    this.#saves.set(save.taskId, saves);
  }
  spent(spend: JournalSpend): void {
    const key = JSON.stringify([spend.hour, spend.owner, spend.model]);
    const had = this.#spend.get(key);
    this.#spend.set(key, had ? addSpend(had, spend) : spend);
  }
  readSpend(since: number, owner?: string): JournalSpend[] {
    return sumSpend(
      [...this.#spend.values()].filter((s) =>
        s.hour >= since && (owner === undefined || s.owner === owner)
      ),
      since,
    );
  }
  forgetSpend(before: number): void {
    for (const [key, spend] of this.#spend) if (spend.hour < before) this.#spend.delete(key);
  }
  readLogs(_taskId: string, _cursor: number, _max: number): JournalLine[] {
    return [];
  }
  readSaves(taskId: string): JournalSave[] {
    return [...this.#saves.get(taskId) ?? []];
  }
  forget(ids: readonly string[]): void {
    for (const id of ids) this.#saves.delete(id);
  }
  compact(): void {}
  flush(): void {}
  health(): JournalHealth {
    return { ok: true, store: this.where };
  }
  close(): void {}
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

/** Hourly rows summed per principal and model, sorted by principal then model. */
function sumSpend(rows: readonly JournalSpend[], since: number): JournalSpend[] {
  const sums = new Map<string, JournalSpend>();
  for (const row of rows) {
    const key = JSON.stringify([row.owner, row.model]);
    const had = sums.get(key);
    sums.set(key, had ? addSpend(had, row) : { ...row, hour: since });
  }
  return [...sums.values()].sort((a, b) =>
    a.owner === b.owner ? (a.model < b.model ? -1 : 1) : a.owner < b.owner ? -1 : 1
  );
}
