/**
 * What one task waits on from its client, in either era: sampling requests sent to a 2025-11-25
 * session's client and not yet answered (counted), and requests parked for a 2026-07-28 client,
 * which takes no server-to-client requests and answers them through `tasks/update` (by key, each
 * key used once in the task's life, as the Tasks extension asks). Each era sees only its own: a
 * task waiting on a 2025 session's model is `input_required` to 2025-11-25's `tasks/get` and
 * `working` to the extension's (which has nothing it could answer), and the other way round.
 */

/** A request to the client, as the extension's `inputRequests` lists it. */
export interface InputRequest {
  readonly method: string;
  readonly params: Record<string, unknown>;
}

interface Parked {
  readonly request: InputRequest;
  readonly answer: (response: unknown) => void;
}

export class InputRequests {
  /** Sampling requests sent to the client and not yet answered (2025-11-25). */
  #asked = 0;
  readonly #parked = new Map<string, Parked>();
  /** Requests parked so far, for keys that are never reused. */
  #parkedCount = 0;
  readonly #onParked = new Set<() => void>();

  /** Whether the task waits on input a client of `era` can give now. */
  awaitedBy(era: "legacy" | "modern"): boolean {
    return era === "legacy" ? this.#asked > 0 : this.#parked.size > 0;
  }

  /** Calls `listener` each time a request is parked, until the returned function runs. */
  onParked(listener: () => void): () => void {
    this.#onParked.add(listener);
    return () => this.#onParked.delete(listener);
  }

  /** A sampling request to the client went out (+1) or was answered or failed (-1). */
  asked(delta: 1 | -1): void {
    this.#asked += delta;
  }

  /** The parked requests not yet answered, by key. */
  outstanding(): Record<string, InputRequest> {
    return Object.fromEntries([...this.#parked].map(([key, parked]) => [key, parked.request]));
  }

  /**
   * Parks `request` until the client answers it (`answer`), `signal` aborts or `timeoutMs` passes;
   * resolves with the client's answer, unchecked.
   */
  park(request: InputRequest, signal: AbortSignal, timeoutMs: number): Promise<unknown> {
    const key = `${request.method.replace("/", "-")}-${++this.#parkedCount}`;
    const { promise, resolve, reject } = Promise.withResolvers<unknown>();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      this.#parked.delete(key);
    };
    const onAbort = () => (done(), reject(signal.reason ?? new Error("aborted")));
    const timer = setTimeout(() => {
      done();
      reject(
        new Error(`The client did not answer ${request.method} (${key}) within ${timeoutMs} ms`),
      );
    }, timeoutMs);
    signal.addEventListener("abort", onAbort, { once: true });
    this.#parked.set(key, { request, answer: (response) => (done(), resolve(response)) });
    if (signal.aborted) onAbort();
    else for (const listener of [...this.#onParked]) listener();
    return promise;
  }

  /** Delivers the responses whose keys are outstanding; any other key is ignored. */
  answer(responses: Record<string, unknown>): void {
    for (const [key, response] of Object.entries(responses)) {
      const waiting = this.#parked.get(key);
      if (!waiting) continue;
      this.#parked.delete(key);
      waiting.answer(response);
    }
  }
}
