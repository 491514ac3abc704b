// deno-lint-ignore-file no-console -- a benchmark prints its figures
/** Figures of a bench's samples, and the machine's load while they were taken. */

/** The sample at fraction `p` (0.5 the median, 0.99 the p99) of `samples`, which it leaves as is. */
export function percentile(samples: readonly number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

/**
 * Prints one figure: its median, its p99 from 200 samples on (below that it is the maximum under
 * another name), its maximum and the sample count.
 */
export function report(name: string, samples: readonly number[], unit = "ms", width = 52): void {
  if (samples.length === 0) {
    console.log(`${name.padEnd(width)} no samples`);
    return;
  }
  const f = (n: number) => n.toFixed(2);
  const p99 = samples.length >= 200 ? `  p99 ${f(percentile(samples, 0.99))} ${unit}` : "";
  console.log(
    `${name.padEnd(width)} p50 ${f(percentile(samples, 0.5))} ${unit}${p99}  max ${
      f(Math.max(...samples))
    } ${unit}  (n=${samples.length})`,
  );
}

/** The 1-minute load average (Linux `/proc/loadavg`); `undefined` elsewhere. */
export function loadAverage(): number | undefined {
  try {
    const value = Number(Deno.readTextFileSync("/proc/loadavg").split(" ")[0]);
    return Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Samples the 1-minute load average every second until disposed, then says its range: the figures
 * of a machine shared with other work are the machine's as much as the program's.
 */
export class LoadWatch {
  readonly #samples: number[] = [];
  readonly #timer: ReturnType<typeof setInterval>;

  constructor() {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), 1000);
  }

  #sample(): void {
    const load = loadAverage();
    if (load !== undefined) this.#samples.push(load);
  }

  /** "load average 3.10–5.42 (n samples)", or that it is unknown here. */
  stop(): string {
    clearInterval(this.#timer);
    this.#sample();
    if (this.#samples.length === 0) return "load average unknown (no /proc/loadavg)";
    const f = (n: number) => n.toFixed(2);
    return `load average ${f(Math.min(...this.#samples))}–${
      f(Math.max(...this.#samples))
    } (1 min, sampled each second)`;
  }
}
