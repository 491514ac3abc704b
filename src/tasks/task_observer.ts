/**
 * What the registry tells the operator's tools as tasks move: metrics and traces (`src/metrics/`)
 * implement it; the registry only calls it. Every call is synchronous, cheap and never throws into
 * the registry (`observeAll` makes one of several, logging one that fails).
 */
import { getLogger } from "@logtape/logtape";
import type { GrynyaActivity } from "../protocol.ts";
import type { TaskRecord } from "./task_store.ts";
import type { TaskStatus } from "./task_state.ts";
import type { ProcessExit } from "./task_process.ts";

const logger = getLogger(["klym", "tasks"]);

/** W3C trace context a client sent with the request that started a task (`_meta`). */
export interface TraceContext {
  readonly traceparent: string;
  readonly tracestate?: string;
}

/** One model call a task made, answered or not. */
export interface ModelCall {
  /** The model named (or answering); the default model's id, or "default" for the client's. */
  readonly model: string;
  /** `ok`, `refused` (a limit of Klym's: budget, concurrency), or `failed` (the provider). */
  readonly outcome: "ok" | "refused" | "failed";
  /** The refusal's or failure's code. */
  readonly code?: string;
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** Epoch ms. */
  readonly startedAt: number;
  readonly endedAt: number;
}

export interface TaskObserver {
  /** Recorded `queued`. */
  admitted(task: TaskRecord, trace: TraceContext | undefined): void;
  /** Given a process (a warm spare, or a fresh spawn): `running`. */
  launched(task: TaskRecord, spare: boolean): void;
  /** The task's own code is about to run. */
  codeStarted(task: TaskRecord): void;
  /** Log lines received (their UTF-8 bytes), and lines the host dropped before sending. */
  logged(task: TaskRecord, lines: number, bytes: number, dropped: number): void;
  /** Reached its final status, from `queued` or `running`. */
  settled(task: TaskRecord, from: TaskStatus): void;
  /** Its process has exited (after a cancel, a deadline or the end of the task). */
  exited(task: TaskRecord, exit: ProcessExit): void;
  modelCall(task: TaskRecord, call: ModelCall): void;
  /** A grynya connect, reconnect or call made by the task's host. */
  grynya(task: TaskRecord, activity: GrynyaActivity): void;
}

/**
 * One observer made of `observers`, each told in turn; one that throws is logged and the others
 * are still told, so that no observer can throw into the registry.
 */
export function observeAll(observers: readonly Partial<TaskObserver>[]): TaskObserver {
  const all = {} as Record<string, unknown>;
  for (const name of OBSERVER_CALLS) {
    const calls = observers.flatMap((o) => {
      const call = o[name] as ((...args: unknown[]) => void) | undefined;
      return call ? [call.bind(o)] : [];
    });
    all[name] = (...args: unknown[]) => {
      for (const call of calls) {
        try {
          call(...args);
        } catch (error) {
          logger.error("A task observer failed in {name}: {error}", { name, error });
        }
      }
    };
  }
  return all as unknown as TaskObserver;
}

const OBSERVER_CALLS: readonly (keyof TaskObserver)[] = [
  "admitted",
  "launched",
  "codeStarted",
  "logged",
  "settled",
  "exited",
  "modelCall",
  "grynya",
];
