/** What a `KlymMetrics` made outside a server reads when scraped: an idle server's figures. */
import type { MetricSources } from "../../src/metrics/klym_metrics.ts";

export const IDLE_SOURCES: MetricSources = {
  runningPids: () => [],
  processCount: () => 0,
  residentBytes: () => undefined,
  spares: () => 0,
  journal: () => ({ ok: true, store: "memory" }),
  sessions: () => [],
};
