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
import { OneMachineJournal } from "./one_machine.ts";
import { SpendSums } from "./spend_sums.ts";

export class MemoryJournal extends OneMachineJournal implements Journal {
  readonly where = "memory";
  readonly #saves = new Map<string, JournalSave[]>();
  readonly #spend = new SpendSums();

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
    this.#spend.add(spend);
  }
  readSpend(since: number, owner?: string): JournalSpend[] {
    return this.#spend.read(since, owner);
  }
  forgetSpend(before: number): void {
    this.#spend.forgetBefore(before);
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
