/**
 * The sandbox of a task's process, in one place for a security review. A task's code is hostile:
 * what it may reach is decided here (and at the places this lists), never by the task.
 *
 * Every guarantee, and where it is enforced:
 * - **Files.** The host process may read Klym's own `src/` and the folder of kind snapshots,
 *   nothing else (not the tasks folder itself, not the state folder), and write nothing:
 *   `--allow-read` below, no `--allow-write`. A kind's files are checked and copied there at launch
 *   (`kind_catalog.ts`).
 * - **Network.** Exactly grynya's host and port (`--allow-net`, `netAllowance` in
 *   `src/net_allowance.ts`); model calls are made by the server (`model_broker.ts`), which holds
 *   the keys.
 * - **No other permission.** No env, run, ffi or sys flag is granted and `--no-prompt` refuses
 *   every request. A compiled binary cannot pass flags to itself: its host drops env, run, write,
 *   ffi and sys before reading its task (`runHost` in `src/host/host.ts`).
 * - **Task code runs with no permissions at all**, in a Worker (`src/host/worker_entry.ts`), locked
 *   down before its first line (`src/worker/lockdown.ts`: no Cache API, nested Workers, stdin,
 *   runtime internals or Node's `process`).
 * - **Modules.** Only what ships with Klym loads (`--cached-only`, `--no-remote`); Node's built-ins
 *   other than `TASK_NODE_MODULES` (below) are refused to `import()` at run time by the import
 *   map, and to static imports on the source at admission and launch (`kind_imports.ts`).
 * - **Environment.** The process starts from an empty environment holding only what Deno needs to
 *   find its cache (`childEnv`): never the server's secrets.
 * - **No storage.** A private DENO_DIR whose `location_data` is a plain file (`taskDenoDir`): no
 *   Cache API or localStorage files, so no task fills the disk or leaves a message for the next.
 * - **CPU.** Nice level 19 (`lowerPriority`): tasks never slow the server's own answers. A process
 *   being cancelled or killed is put back to normal priority (`restorePriority`) so that it ends at
 *   once, even while the server keeps the CPU busy.
 * - **Memory.** The V8 heap is capped at KLYM_TASK_MEMORY_MB (`v8Flags`); the whole process's
 *   resident size is sampled by the server from `/proc` on Linux (`memory_sampler.ts`), elsewhere
 *   by the host's watchdog thread (`src/host/memory_watchdog.ts`), and the server kills the process
 *   over its cap (`task_process.ts`).
 * - **Time.** The deadline and cancel are the server's (`task_registry.ts`); a task that ignores
 *   its `ctx.signal` is killed after KLYM_CANCEL_GRACE_MS (`TaskProcess.stop`), one that cannot
 *   hear it (stuck in synchronous code) is ended by its host after KLYM_CANCEL_ACK_MS
 *   (`src/host/cancel_ack.ts`).
 * - **Output.** Read in bounded turns, validated and bounded per message, the server's paths made
 *   relative before a client sees them (`task_process.ts`, `client_paths.ts`).
 */
import { setPriority } from "node:os";
import { builtinModules } from "node:module";
import { fileURLToPath as fromFileUrl } from "node:url";
import { netAllowance } from "../net_allowance.ts";

/** Node's built-ins task code may import: computation only, no I/O, no way around the lockdown. */
export const TASK_NODE_MODULES: ReadonlySet<string> = new Set([
  "assert",
  "assert/strict",
  "buffer",
  "crypto",
  "events",
  "path",
  "path/posix",
  "path/win32",
  "punycode",
  "querystring",
  "stream",
  "stream/consumers",
  "stream/promises",
  "stream/web",
  "string_decoder",
  "timers",
  "timers/promises",
  "url",
  "util",
  "util/types",
  "zlib",
]);

/** Lower CPU priority for task processes keeps the server's own latency flat under load. */
const TASK_NICENESS = 19;

/** What the sandbox of one task process is drawn from. */
export interface SandboxOptions {
  /** grynya's URL: its host and port are the only ones the process may connect to. */
  grynyaUrl: string;
  /**
   * The folder of kind snapshots (`KindCatalog.snapshotDir`): the host process may read it and
   * Klym's `src/`, nothing else (not the tasks folder itself).
   */
  kindsDir?: string | undefined;
  /** The heap cap in MB (KLYM_TASK_MEMORY_MB). */
  memoryMb: number;
}

/** How a task's host process is started: spread into `Deno.Command`'s options. */
export interface SandboxedCommand {
  readonly command: string;
  readonly args: string[];
  /** The server's environment is never inherited. */
  readonly clearEnv: true;
  readonly env: Record<string, string>;
}

/** The command, flags and environment that start a task's host process inside its sandbox. */
export function sandboxedCommand(options: SandboxOptions): SandboxedCommand {
  return { ...hostCommand(options), clearEnv: true, env: childEnv(options) };
}

/** Lowers a started process's CPU priority (where the platform permits it). */
export function lowerPriority(pid: number): void {
  try {
    setPriority(pid, TASK_NICENESS);
  } catch {
    // Not permitted on every platform; the task then runs at normal priority.
  }
}

/**
 * Puts a process that was just sent SIGKILL back to normal priority, every thread of it (Linux
 * keeps a nice level per thread): it runs none of its code any more, but it must still be given
 * the CPU to end, and at nice 19 beside a busy server that took seconds. Raising a priority needs
 * root or CAP_SYS_NICE; without them the process ends at nice 19.
 */
export function restorePriority(pid: number): void {
  let threads: number[] = [pid];
  try {
    threads = [...Deno.readDirSync(`/proc/${pid}/task`)].map((entry) => Number(entry.name));
  } catch {
    // No /proc (not Linux), or the process is gone already.
  }
  for (const thread of threads) {
    try {
      setPriority(thread, 0);
    } catch {
      // Not permitted, or that thread has ended.
    }
  }
}

let taskImportMap: string | undefined;

/**
 * Klym's own import map plus Node's built-ins that task code may not import (all but
 * `TASK_NODE_MODULES`), each mapped to a module that refuses to load: this holds for `import()` at
 * run time; static imports are checked on the source at admission (`kind_imports.ts`).
 */
function importMapUrl(): string {
  if (taskImportMap) return taskImportMap;
  const config = JSON.parse(
    Deno.readTextFileSync(new URL("../../deno.json", import.meta.url)),
  ) as { imports?: Record<string, string> };
  const imports: Record<string, string> = { ...config.imports };
  for (const name of builtinModules.map((m) => m.replace(/^node:/, ""))) {
    if (TASK_NODE_MODULES.has(name) || name.startsWith("_")) continue;
    imports[`node:${name}`] = `data:text/javascript,${
      encodeURIComponent(
        `throw new Error("node:${name} is not available to task code; a task reaches files, the network and processes only through ctx");`,
      )
    }`;
  }
  taskImportMap = `data:application/json,${encodeURIComponent(JSON.stringify({ imports }))}`;
  return taskImportMap;
}

/** The command that starts a host process, under `deno run` or inside a compiled binary. */
function hostCommand(options: SandboxOptions): { command: string; args: string[] } {
  if (Deno.build.standalone) {
    // Runtime flags cannot be passed to a compiled binary: it re-invokes itself, the heap cap
    // comes from DENO_V8_FLAGS, and the host drops what it need not hold.
    return { command: Deno.execPath(), args: ["--task-host"] };
  }
  const srcDir = fromFileUrl(new URL("../", import.meta.url));
  const read = [srcDir, ...(options.kindsDir ? [options.kindsDir] : [])];
  return {
    command: Deno.execPath(),
    args: [
      "run",
      "--quiet",
      "--no-prompt",
      // Task code never makes its process fetch a module: only what ships with Klym loads.
      "--cached-only",
      "--no-remote",
      `--config=${fromFileUrl(new URL("../../deno.json", import.meta.url))}`,
      `--import-map=${importMapUrl()}`,
      "--unstable-worker-options",
      `--allow-read=${read.join(",")}`,
      `--allow-net=${netAllowance(options.grynyaUrl)}`,
      `--v8-flags=${v8Flags(options)}`,
      fromFileUrl(new URL("../host/host.ts", import.meta.url)),
    ],
  };
}

/**
 * The heap cap, and young generations of 1 MB (V8 lets them grow to 16 MB each, in two isolates):
 * a task waiting on I/O then holds about 7 MB less (2 MB of it from 2 MB to 1 MB, measured by
 * `bench/peers/isolate_split.ts`); code that allocates much pays with more frequent minor GCs.
 */
function v8Flags(options: SandboxOptions): string {
  return `--max-old-space-size=${options.memoryMb},--max-semi-space-size=1`;
}

/**
 * Only what Deno itself needs to find its cache (and where a coverage run collects its figures);
 * never the server's secrets.
 */
function childEnv(options: SandboxOptions): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (
    const name of [
      "HOME",
      "DENO_DIR",
      "XDG_CACHE_HOME",
      "PATH",
      "SYSTEMROOT",
      "LOCALAPPDATA",
      "DENO_COVERAGE_DIR",
    ]
  ) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  if (Deno.build.standalone) env.DENO_V8_FLAGS = v8Flags(options);
  const denoDir = taskDenoDir();
  if (denoDir) env.DENO_DIR = denoDir;
  return env;
}

let taskDenoDirPath: string | undefined;

/**
 * The DENO_DIR task processes see: Klym's own module cache, linked entry by entry, except
 * `location_data`, where the Cache API and localStorage keep their files, which is a plain file:
 * nothing a task reaches (even through the runtime's internals) can store anything there, so no
 * task fills the disk or leaves a message for the next. Built once, removed by `removeTaskDenoDir`.
 */
function taskDenoDir(): string | undefined {
  if (taskDenoDirPath || Deno.build.os === "windows") return taskDenoDirPath;
  const dir = Deno.makeTempDirSync({ prefix: "klym-task-deno-" });
  if (!Deno.build.standalone) {
    const info = new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stderr: "null" })
      .outputSync();
    const real = (JSON.parse(new TextDecoder().decode(info.stdout)) as { denoDir: string }).denoDir;
    for (const entry of Deno.readDirSync(real)) {
      if (entry.name !== "location_data") {
        Deno.symlinkSync(`${real}/${entry.name}`, `${dir}/${entry.name}`);
      }
    }
  }
  Deno.writeTextFileSync(`${dir}/location_data`, "Task processes keep no web storage.\n");
  return taskDenoDirPath = dir;
}

export function removeTaskDenoDir(): void {
  if (!taskDenoDirPath) return;
  try {
    Deno.removeSync(taskDenoDirPath, { recursive: true });
  } catch {
    // Already gone, or another Klym's: nothing to do.
  }
  taskDenoDirPath = undefined;
}
