/** A real task registry with real task processes, configured for tests. */
import { type Config, grynyaSettings, loadConfig } from "../../src/config.ts";
import { KindCatalog } from "../../src/tasks/kind_catalog.ts";
import { ProcessPool, type Spawn } from "../../src/tasks/process_pool.ts";
import { processOptions } from "../../src/tasks/task_process.ts";
import { TaskRegistry } from "../../src/tasks/task_registry.ts";
import type { Every } from "../../src/tasks/task_store.ts";
import { ModelCatalog } from "../../src/llm/model_catalog.ts";
import { LlmService } from "../../src/llm/llm_service.ts";
import type { TaskRecord } from "../../src/tasks/task_registry.ts";
import { isTerminal } from "../../src/tasks/task_state.ts";
import { openJournal } from "../../src/journal/open_journal.ts";
import type { Journal } from "../../src/journal/journal.ts";
import { FIXTURE_TASKS } from "./klym_process.ts";
import { PATIENCE_MS } from "./patience.ts";

/** What a test registry was made of, for tests that observe its parts or build on them. */
export interface RegistryParts {
  readonly config: Config;
  readonly kinds: KindCatalog;
  readonly pool: ProcessPool;
  readonly llm: LlmService;
  readonly journal: Journal;
}

const partsOf = new WeakMap<TaskRegistry, RegistryParts>();

/** The parts `makeRegistry` made `registry` of (the pool it spawns with, its journal, …). */
export function registryParts(registry: TaskRegistry): RegistryParts {
  const parts = partsOf.get(registry);
  if (!parts) throw new Error("The registry was not made by makeRegistry");
  return parts;
}

export interface MakeRegistryOptions {
  /** The registry's clock. */
  readonly now?: () => number;
  /** The journal (else the one `KLYM_STATE` names). */
  readonly journal?: Journal | undefined;
  /** How task processes start. */
  readonly spawn?: Spawn;
  /** What runs the retention sweep. */
  readonly every?: Every;
  /** What runs the pool's check of kept hosts' CPU time. */
  readonly cpuCheck?: Every;
}

/**
 * A registry in memory mode (tests run in parallel and must not share a state file), unless `env`
 * names a `KLYM_STATE` file; `now` replaces the clock, `spawn` the way processes start, `every`
 * the timer of the retention sweep, `cpuCheck` the timer of the kept hosts' CPU check.
 */
export function makeRegistry(
  env: Record<string, string> = {},
  options: MakeRegistryOptions = {},
): TaskRegistry {
  const config = loadConfig({
    KLYM_TASKS_DIR: FIXTURE_TASKS,
    KLYM_WARM_SPARES: "0",
    KLYM_TASK_MEMORY_MB: "256",
    KLYM_STATE: "memory",
    ...env,
  }, []);
  const kinds = new KindCatalog(config.tasksDir, config);
  const pool = new ProcessPool(processOptions(config, kinds.snapshotDir()), {
    warmSpares: config.warmSpares,
    idleHosts: config.idleHosts,
    idleMs: config.idleHostS * 1000,
    idleCpuMs: config.idleHostCpuMs,
    ...(options.spawn ? { spawn: options.spawn } : {}),
    ...(options.cpuCheck ? { every: options.cpuCheck } : {}),
  });
  pool.warm();
  const llm = new LlmService(new ModelCatalog(config, () => undefined), config);
  const journal = options.journal ?? openJournal(config.state);
  const registry = new TaskRegistry({
    limits: config,
    grynya: grynyaSettings(config),
    llm,
    kinds,
    pool,
    ...(options.now ? { now: options.now } : {}),
    journal,
    ...(options.every ? { every: options.every } : {}),
  });
  partsOf.set(registry, { config, kinds, pool, llm, journal });
  return registry;
}

/**
 * Resolves at the first change of the registry's tasks (admission, status, progress, log line)
 * after which `condition` holds, or at once if it holds already.
 */
export function until(
  registry: TaskRegistry,
  condition: () => boolean,
  timeoutMs = PATIENCE_MS,
): Promise<void> {
  if (condition()) return Promise.resolve();
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  const timer = setTimeout(() => {
    unsubscribe();
    reject(new Error(`The condition did not hold within ${timeoutMs} ms: ${condition}`));
  }, timeoutMs);
  const unsubscribe = registry.events.subscribe(() => {
    if (!condition()) return;
    clearTimeout(timer);
    unsubscribe();
    resolve();
  });
  return promise;
}

/** A retention sweep timer that runs only when the test calls `tick`. */
export function manualEvery(): Every & { tick(): void; readonly ms: number[]; stopped: boolean } {
  const ticks: (() => void)[] = [];
  const every = Object.assign((ms: number, tick: () => void) => {
    every.ms.push(ms);
    ticks.push(tick);
    return () => {
      every.stopped = true;
    };
  }, {
    ms: [] as number[],
    stopped: false,
    tick: () => ticks.forEach((tick) => tick()),
  });
  return every;
}

/** Resolves when the task is terminal (polling the registry like a client would). */
export async function settled(task: TaskRecord, timeoutMs = PATIENCE_MS): Promise<TaskRecord> {
  const deadline = Date.now() + timeoutMs;
  while (!isTerminal(task.state)) {
    if (Date.now() > deadline) throw new Error(`Task ${task.kind} still ${task.state.status}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return task;
}

export function errorOf(task: TaskRecord): { code: string; message: string } | undefined {
  return "error" in task.state ? task.state.error : undefined;
}

export function resultOf(task: TaskRecord): unknown {
  return task.state.status === "succeeded" ? JSON.parse(task.state.resultJson) : undefined;
}
