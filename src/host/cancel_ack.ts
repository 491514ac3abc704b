/**
 * Tells a task that can still hear its cancel from one stuck in synchronous code. On a cancel the
 * host posts the abort to the Worker with a fresh nonce, and the Worker's runtime echoes it from
 * its message handler before task code hears the abort (`src/worker/task_worker.ts`). An echo
 * within KLYM_CANCEL_ACK_MS means the Worker's event loop turns: the task keeps the whole
 * KLYM_CANCEL_GRACE_MS to clean up. No echo means the loop is blocked (a CPU loop, a long
 * synchronous step) and cannot hear `ctx.signal` anyway: the host ends the process at once, so
 * the loop keeps no core for the grace. The nonce is random, so task code cannot answer ahead of
 * time; only a Worker that received the cancel can echo it.
 */

/** Runs `fn` after `ms` unless the returned function is called first (tests pass their own). */
export type After = (ms: number, fn: () => void) => () => void;

const afterTimeout: After = (ms, fn) => {
  const timer = setTimeout(fn, ms);
  return () => clearTimeout(timer);
};

export class CancelAck {
  #nonce: string | undefined;
  /** Stops the running bound; `undefined` when none runs. */
  #stop: (() => void) | undefined;
  readonly #after: After;

  constructor(
    /** KLYM_CANCEL_ACK_MS. */
    readonly boundMs: number,
    /** Called once, when the bound passes without the echo. */
    readonly unanswered: () => void,
    options: { readonly after?: After } = {},
  ) {
    this.#after = options.after ?? afterTimeout;
  }

  /** The nonce to post with the cancel; the first call starts the bound, later ones reuse it. */
  ask(): string {
    if (this.#nonce !== undefined) return this.#nonce;
    this.#nonce = crypto.randomUUID();
    this.#stop = this.#after(this.boundMs, () => {
      this.#stop = undefined;
      this.unanswered();
    });
    return this.#nonce;
  }

  /** The Worker's echo: the one asked for, within the bound, stops the clock; others change nothing. */
  answer(nonce: string): void {
    if (nonce === this.#nonce) this[Symbol.dispose]();
  }

  /** Stops the clock without a verdict (the task ended by itself meanwhile). */
  [Symbol.dispose](): void {
    this.#stop?.();
    this.#stop = undefined;
  }
}
