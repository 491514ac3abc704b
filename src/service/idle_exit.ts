/**
 * Ends a service that has had no client and no task for `idleMs`: `busy()` is asked every
 * `checkMs`, and the first time it has said no for the whole idle time, `onIdle` runs once.
 */

/** What a service started by a bridge waits, idle, before it exits (`KLYM_SERVICE_IDLE_S`). */
export const SERVICE_IDLE_DEFAULT_S = 300;
/** The longest wait between two looks at `busy()`. */
export const IDLE_CHECK_MAX_MS = 1000;

export interface IdleExitOptions {
  readonly idleMs: number;
  /** Whether anything holds the service: a client connected, a task queued or running. */
  readonly busy: () => boolean;
  readonly onIdle: () => void;
  readonly now?: () => number;
  readonly checkMs?: number;
}

export class IdleExit implements Disposable {
  readonly #timer: ReturnType<typeof setInterval>;
  #idleSince: number | undefined;
  #done = false;

  constructor(options: IdleExitOptions) {
    const now = options.now ?? Date.now;
    const checkMs = options.checkMs ??
      Math.max(10, Math.min(IDLE_CHECK_MAX_MS, Math.floor(options.idleMs / 4)));
    this.#timer = setInterval(() => {
      if (this.#done) return;
      if (options.busy()) {
        this.#idleSince = undefined;
        return;
      }
      this.#idleSince ??= now();
      if (now() - this.#idleSince >= options.idleMs) {
        this.#done = true;
        clearInterval(this.#timer);
        options.onIdle();
      }
    }, checkMs);
  }

  [Symbol.dispose](): void {
    this.#done = true;
    clearInterval(this.#timer);
  }
}
