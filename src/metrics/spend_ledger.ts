/**
 * Model spend per principal and model, kept in the journal by the hour: calls, refusals and
 * tokens, read back over a window for the dashboard's server panel and `klym usage` (`/usage`).
 * Hours older than KLYM_SPEND_RETENTION_DAYS are forgotten.
 */
import type { Journal, JournalSpend } from "../journal/journal.ts";
import type { ModelCall } from "../tasks/task_observer.ts";
import type { TaskRecord } from "../tasks/task_store.ts";
import { KlymError } from "../errors.ts";
import { LabelValues } from "./label_values.ts";

const HOUR_MS = 3_600_000;
const DAY_S = 86_400;

/** One principal's spend on one model over a window, as the faces show it. */
export interface SpendRow {
  readonly principal: string;
  readonly model: string;
  readonly calls: number;
  readonly refusals: number;
  readonly input_tokens: number;
  readonly output_tokens: number;
}

export interface Spend {
  readonly window_s: number;
  /** The first hour counted (ISO time): spend is kept by the hour. */
  readonly since: string;
  readonly rows: SpendRow[];
}

export interface SpendLedgerOptions {
  readonly retentionDays: number;
  readonly maxModels: number;
  readonly now?: () => number;
}

export class SpendLedger {
  readonly #journal: Journal;
  readonly #models: LabelValues;
  readonly #retentionDays: number;
  readonly #now: () => number;
  #lastHour = 0;

  constructor(journal: Journal, options: SpendLedgerOptions) {
    this.#journal = journal;
    this.#models = new LabelValues(options.maxModels);
    this.#retentionDays = options.retentionDays;
    this.#now = options.now ?? Date.now;
  }

  modelCall(task: TaskRecord, call: ModelCall): void {
    this.spentBy(task.owner, call);
  }

  /** A model call of `owner`'s, in a task or not (`llm_generate`). */
  spentBy(owner: string, call: ModelCall): void {
    const hour = Math.floor(call.endedAt / HOUR_MS) * HOUR_MS;
    const refused = call.outcome === "refused";
    this.#journal.spent({
      hour,
      owner,
      model: this.#models.of(call.model),
      calls: refused ? 0 : 1,
      refusals: refused ? 1 : 0,
      inputTokens: call.inputTokens,
      outputTokens: call.outputTokens,
    });
    if (hour !== this.#lastHour) {
      this.#lastHour = hour;
      this.#journal.forgetSpend(hour - this.#retentionDays * DAY_S * 1000);
    }
  }

  /**
   * Spend over the last `windowS` seconds (whole hours: the current one and those before it
   * that the window reaches); with `owner`, that principal's only.
   */
  read(windowS: number, owner?: string): Spend {
    const max = this.#retentionDays * DAY_S;
    if (!Number.isSafeInteger(windowS) || windowS < 1 || windowS > max) {
      throw new KlymError(
        "INVALID_INPUT",
        `Cannot read model spend: the window must be between 1 and ${max} seconds (KLYM_SPEND_RETENTION_DAYS is ${this.#retentionDays}), received ${windowS}`,
      );
    }
    const since = Math.floor((this.#now() - windowS * 1000) / HOUR_MS) * HOUR_MS;
    return {
      window_s: windowS,
      since: new Date(since).toISOString(),
      rows: this.#journal.readSpend(since, owner).map(toRow),
    };
  }
}

function toRow(spend: JournalSpend): SpendRow {
  return {
    principal: spend.owner,
    model: spend.model,
    calls: spend.calls,
    refusals: spend.refusals,
    input_tokens: spend.inputTokens,
    output_tokens: spend.outputTokens,
  };
}

/** A window as `klym usage --window` and `/usage?window=` take it: `90m`, `24h`, `7d` or seconds. */
export function parseWindow(text: string): number | undefined {
  const match = /^(\d{1,9})([smhd]?)$/.exec(text.trim());
  if (!match) return undefined;
  const unit = { "": 1, s: 1, m: 60, h: 3600, d: DAY_S }[match[2]!]!;
  return Number(match[1]) * unit;
}
