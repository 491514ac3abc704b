/**
 * An abort controller that follows other signals (and an optional deadline) through strong
 * listeners. `AbortSignal.any` holds its result only weakly: a composite signal that nothing else
 * references can be collected mid-call, and then an abort never reaches the HTTP request under it.
 */
export interface LinkedAbort extends Disposable {
  readonly signal: AbortSignal;
  /** True when the deadline, not a source signal, ended it. */
  readonly timedOut: boolean;
}

export function linkedAbort(sources: AbortSignal[], timeoutMs?: number): LinkedAbort {
  const controller = new AbortController();
  let timedOut = false;
  const follow = (source: AbortSignal) => () => controller.abort(source.reason);
  const listeners = sources.map((source) => {
    const listener = follow(source);
    if (source.aborted) listener();
    else source.addEventListener("abort", listener, { once: true });
    return [source, listener] as const;
  });
  const timer = timeoutMs === undefined ? undefined : setTimeout(() => {
    timedOut = true;
    controller.abort(new DOMException(`Timed out after ${timeoutMs} ms`, "TimeoutError"));
  }, timeoutMs);
  return {
    signal: controller.signal,
    get timedOut() {
      return timedOut;
    },
    [Symbol.dispose]() {
      clearTimeout(timer);
      for (const [source, listener] of listeners) source.removeEventListener("abort", listener);
    },
  };
}
