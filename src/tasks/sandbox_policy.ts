/**
 * The sandbox of a task's process.
 */
import { builtinModules } from "node:module";
import { fileURLToPath as fromFileUrl } from "node:url";
import { netAllowance } from "../net_allowance.ts";
import { TASK_NODE_MODULES } from "./kind_imports.ts";
import type { ProcessOptions } from "./task_process.ts";

/** Lower CPU priority for task processes keeps the server's own latency flat under load. */
export const TASK_NICENESS = 19;

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
export function hostCommand(options: ProcessOptions): { command: string; args: string[] } {
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
 * The heap cap, and young generations of 2 MB (V8 lets them grow to 16 MB each, in two isolates):
 * a task waiting on I/O then holds about 5 MB less.
 */
function v8Flags(options: ProcessOptions): string {
  return `--max-old-space-size=${options.memoryMb},--max-semi-space-size=2`;
}

/**
 * Only what Deno itself needs to find its cache (and where a coverage run collects its figures);
 * never the server's secrets.
 */
export function childEnv(options: ProcessOptions): Record<string, string> {
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
export function taskDenoDir(): string | undefined {
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
