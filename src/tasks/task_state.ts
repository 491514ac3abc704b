/** The lifecycle of a task as a discriminated union, changed only through `transition`. */
import type { Failure } from "../protocol.ts";
import { KlymError } from "../errors.ts";

export type TaskStatus = TaskState["status"];

export type TaskState =
  | { readonly status: "queued"; readonly queuedAt: number }
  | { readonly status: "running"; readonly queuedAt: number; readonly startedAt: number }
  | {
    readonly status: "succeeded";
    readonly startedAt: number | undefined;
    readonly finishedAt: number;
    /** The result as JSON text: compact, and counted in bytes against KLYM_RETAINED_BYTES. */
    readonly resultJson: string;
  }
  | {
    /** `interrupted`: queued or running when the previous Klym process ended without a shutdown. */
    readonly status: "failed" | "cancelled" | "timed_out" | "interrupted";
    readonly startedAt: number | undefined;
    readonly finishedAt: number;
    readonly error: Failure;
  };

export const TASK_STATUSES = [
  "queued",
  "running",
  "succeeded",
  "failed",
  "cancelled",
  "timed_out",
  "interrupted",
] as const satisfies readonly TaskStatus[];

/** The moves each status allows; a status with none is final. */
const ALLOWED: Record<TaskStatus, readonly TaskStatus[]> = {
  queued: ["running", "cancelled", "interrupted"],
  running: ["succeeded", "failed", "cancelled", "timed_out", "interrupted"],
  succeeded: [],
  failed: [],
  cancelled: [],
  timed_out: [],
  interrupted: [],
};

/** The statuses that never change again. */
export const FINAL_STATUSES: readonly TaskStatus[] = TASK_STATUSES.filter((s) =>
  ALLOWED[s].length === 0
);

export function isTerminal(state: TaskState): boolean {
  return ALLOWED[state.status].length === 0;
}

/** Returns the next state, or throws when the move is not allowed (terminal states never change). */
export function transition(current: TaskState, next: TaskState): TaskState {
  if (!ALLOWED[current.status].includes(next.status)) {
    throw new KlymError(
      "ILLEGAL_TRANSITION",
      `A task cannot go from ${current.status} to ${next.status}`,
    );
  }
  return next;
}

/** A finished task's state when it succeeded. */
export type Succeeded = Extract<TaskState, { status: "succeeded" }>;

/**
 * Results from this many bytes of JSON on are not held in memory when a journal keeps them (a
 * SQLite file): the record's `resultJson` reads the journal when asked. Without such a journal
 * (KLYM_STATE=memory, PostgreSQL) they are held as UTF-8 bytes (`resultAsBytes`). Smaller ones stay
 * as they are.
 */
export const RESULT_IN_JOURNAL_BYTES = 1024;

/**
 * `state` with its result left where `read` finds it (the journal): `resultJson` reads it each time
 * it is asked, so a retained result costs the server no memory between reads. A read that finds
 * nothing (the journal closed or failing) throws STORE_UNAVAILABLE.
 */
/**
 * `state` with its result held as UTF-8 bytes, outside the JavaScript heap, decoded each time it is
 * read. A string on V8's heap costs a retained result about twice its size in resident memory (the
 * heap grows by a factor of what it keeps before it collects); bytes cost their size.
 */
export function resultAsBytes(state: Succeeded): Succeeded {
  const bytes = new TextEncoder().encode(state.resultJson);
  return resultKeptElsewhere(state, () => new TextDecoder().decode(bytes));
}

export function resultKeptElsewhere(
  state: Omit<Succeeded, "resultJson">,
  read: () => string | undefined,
): Succeeded {
  const { status, startedAt, finishedAt } = state;
  return Object.defineProperty({ status, startedAt, finishedAt }, "resultJson", {
    enumerable: true,
    get(): string {
      const json = read();
      if (json === undefined) {
        throw new KlymError(
          "STORE_UNAVAILABLE",
          "Cannot read the task's result: the journal that keeps it cannot be read now; see /healthz and Klym's log",
        );
      }
      return json;
    },
  }) as Succeeded;
}

export function startedAtOf(state: TaskState): number | undefined {
  switch (state.status) {
    case "queued":
      return undefined;
    case "running":
    case "succeeded":
    case "failed":
    case "cancelled":
    case "timed_out":
    case "interrupted":
      return state.startedAt;
    default: {
      const _exhaustive: never = state;
      return _exhaustive;
    }
  }
}
