/**
 * A reader that counts its calls, for tests of samplers that read on a timer: each call is one
 * sample, so a test waits for samples to happen (`after(n)`), not for time to pass.
 */
export function countedReads<T>(
  value: () => T,
): { read: () => T; after: (n: number) => Promise<void> } {
  let reads = 0;
  let wake: (() => void) | undefined;
  return {
    read: () => {
      reads++;
      wake?.();
      return value();
    },
    after: async (n) => {
      const target = reads + n;
      while (reads < target) await new Promise<void>((resolve) => wake = resolve);
      wake = undefined;
    },
  };
}
