/**
 * The dashboard's server panel: running and queued counts, each task process's CPU and memory
 * (Linux `/proc`; `null`, shown as "n/a", elsewhere), whether grynya answers, and the model in use.
 * Counts and processes are the viewer's own tasks'; an admin's are every task's, with owners.
 */
import type { TaskRegistry } from "../tasks/task_registry.ts";
import { scopeOf, type Viewer } from "../principals.ts";
import type { TaskStatus } from "../tasks/task_state.ts";
import type { Spend } from "../metrics/spend_ledger.ts";
import { GRYNYA_PROBE_CACHE_MS, GRYNYA_PROBE_TIMEOUT_MS } from "./ui_limits.ts";
import type { NodesView } from "./node_panel.ts";
import { cpuTicks } from "../tasks/cpu_time.ts";
import { AT_CLKTCK, auxvValue } from "../tasks/proc_files.ts";

export interface ProcessFigures {
  readonly task_id: string;
  /** The task's principal, shown to admins only. */
  readonly owner?: string;
  readonly pid: number | null;
  /** Share of one core since the previous sample, in percent. */
  readonly cpu_percent: number | null;
  readonly rss_bytes: number | null;
}

export interface ServerStats {
  readonly version: string;
  readonly counts: Record<TaskStatus, number>;
  readonly processes: ProcessFigures[];
  readonly grynya: {
    readonly url: string;
    readonly reachable: boolean;
    readonly checked_at: string;
  };
  readonly model: string;
  /** Model spend of the viewer (an admin's: everyone's) per principal and model, last day. */
  readonly spend?: Spend;
  /** The nodes sharing the store (`KLYM_STATE=postgres://…` only). */
  readonly cluster?: NodesView;
}

/**
 * CPU ticks (user + system), seconds since the process started, and resident bytes of `pid` from
 * `/proc`; `undefined` elsewhere.
 */
export function readProcFigures(
  pid: number,
): { ticks: number; ticksPerS: number; ageS: number; rssBytes: number } | undefined {
  // The kernel's clock ticks per second (USER_HZ), as it tells this process.
  const ticksPerS = auxvValue(AT_CLKTCK);
  if (!ticksPerS) return undefined;
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const ticks = cpuTicks(stat) ?? NaN;
    // The command name may hold spaces and parentheses: fields start after the last ")".
    const startTicks = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
    const uptimeS = Number(Deno.readTextFileSync("/proc/uptime").split(" ")[0]);
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const rssKb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1]);
    if (![ticks, startTicks, uptimeS, rssKb].every(Number.isFinite)) return undefined;
    return { ticks, ticksPerS, ageS: uptimeS - startTicks / ticksPerS, rssBytes: rssKb * 1024 };
  } catch {
    return undefined;
  }
}

/** Whether a TCP connection to `url`'s host and port opens within the timeout. */
export async function tcpAnswers(url: string, timeoutMs: number): Promise<boolean> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return false;
  }
  const port = Number(target.port || (target.protocol === "https:" ? 443 : 80));
  const hostname = target.hostname.replace(/^\[|\]$/g, "");
  const connecting = Deno.connect({ hostname, port });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  try {
    const outcome = await Promise.race([connecting, timeout]);
    if (outcome === "timeout") {
      // Close the connection if it opens after all.
      connecting.then((conn) => conn.close(), () => {});
      return false;
    }
    outcome.close();
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

export class ServerStatsSource {
  readonly #previous = new Map<number, { ticks: number; at: number }>();
  #probe: { at: number; reachable: Promise<boolean> } | undefined;

  constructor(
    readonly registry: TaskRegistry,
    readonly grynyaUrl: string,
    readonly model: string,
    readonly version: string,
    readonly probe: (url: string, timeoutMs: number) => Promise<boolean> = tcpAnswers,
  ) {}

  /** The figures `viewer` may see: its own tasks' (an admin's, every task's). */
  async read(viewer: Viewer): Promise<ServerStats> {
    const scope = scopeOf(viewer);
    const now = Date.now();
    if (!this.#probe || now - this.#probe.at > GRYNYA_PROBE_CACHE_MS) {
      this.#probe = { at: now, reachable: this.probe(this.grynyaUrl, GRYNYA_PROBE_TIMEOUT_MS) };
    }
    const probe = this.#probe;
    const processes: ProcessFigures[] = [];
    const seen = new Set<number>();
    // Every running process is sampled, so that each one's CPU share spans the time since the
    // previous sample whoever asked then; only the viewer's are shown.
    for (const task of this.registry.list("running", Infinity)) {
      const shown = scope === undefined || task.owner === scope;
      const who = viewer.admin ? { task_id: task.id, owner: task.owner } : { task_id: task.id };
      const pid = this.registry.pidOf(task.id);
      if (pid === undefined) {
        if (shown) processes.push({ ...who, pid: null, cpu_percent: null, rss_bytes: null });
        continue;
      }
      seen.add(pid);
      const figures = readProcFigures(pid);
      const before = this.#previous.get(pid);
      let cpu: number | null = null;
      if (figures) {
        // Since the previous sample; the first one averages over the process's life.
        const [usedS, spanS] = before && now > before.at
          ? [(figures.ticks - before.ticks) / figures.ticksPerS, (now - before.at) / 1000]
          : [figures.ticks / figures.ticksPerS, figures.ageS];
        if (spanS > 0) cpu = Math.max(0, Math.round((usedS / spanS) * 1000) / 10);
        this.#previous.set(pid, { ticks: figures.ticks, at: now });
      }
      if (!shown) continue;
      processes.push({ ...who, pid, cpu_percent: cpu, rss_bytes: figures?.rssBytes ?? null });
    }
    for (const pid of this.#previous.keys()) if (!seen.has(pid)) this.#previous.delete(pid);
    return {
      version: this.version,
      counts: this.registry.counts(scope),
      processes,
      grynya: {
        url: this.grynyaUrl,
        reachable: await probe.reachable,
        checked_at: new Date(probe.at).toISOString(),
      },
      model: this.model,
    };
  }
}
