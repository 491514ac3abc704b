/** Figures of a bench's samples. */

/** The sample at fraction `p` (0.5 the median, 0.99 the p99) of `samples`, which it leaves as is. */
export function percentile(samples: readonly number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}
