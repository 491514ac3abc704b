/**
 * A bound on work that may never settle: a query on a PostgreSQL connection that was lost while
 * the client wrote to it, or one whose answers stopped coming (a partition the socket never sees),
 * is neither answered nor failed. The caller gives it up and tries again rather than waiting on it.
 */
import { KlymError } from "../errors.ts";

/**
 * Settles as `work` does, or rejects with a `STORE_UNAVAILABLE` KlymError naming `what` and the
 * bound (`ms`, and the rule it comes from) once `ms` have passed first. `work` itself goes on
 * (nothing can stop it); its outcome is then ignored.
 */
export async function settleWithin<T>(
  work: Promise<T>,
  ms: number,
  what: string,
  rule: string,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const givenUp = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new KlymError("STORE_UNAVAILABLE", `${what} did not settle within ${ms} ms (${rule})`),
        ),
      ms,
    );
  });
  try {
    return await Promise.race([work, givenUp]);
  } finally {
    clearTimeout(timer);
  }
}
