/**
 * Creates a task's Worker with no permission at all. A custom kind's module is part of the
 * Worker's entry, so the module graph is loaded by Deno's loader under the host process's read
 * allowance (Klym's `src/` and the kinds' snapshots, see `KindCatalog.snapshot`), before and
 * outside anything task code can do. The module path is the kind's entry in its snapshot, which
 * holds every file of its graph as checked at launch.
 */
import { pathToFileURL } from "node:url";

const RUNTIME = new URL("../worker/task_worker.ts", import.meta.url);

const NO_PERMISSIONS: Deno.PermissionOptionsObject = {
  read: false,
  write: false,
  net: false,
  env: false,
  run: false,
  ffi: false,
  sys: false,
  import: false,
};

/** The Worker for built-in kinds, or for any kind in a compiled binary (which imports it itself). */
export function createRuntimeWorker(): Worker {
  return new Worker(new URL("../worker/task_worker.ts", import.meta.url), {
    type: "module",
    name: "task",
    deno: { permissions: NO_PERMISSIONS },
  });
}

/** A Worker whose entry loads the runtime first, then the kind's module, then hands it over. */
export function createKindWorker(modulePath: string): Worker {
  const entry = [
    `import { provideKind } from ${JSON.stringify(RUNTIME.href)};`,
    `import kind from ${JSON.stringify(pathToFileURL(modulePath).href)};`,
    `provideKind(kind);`,
  ].join("\n");
  const url = URL.createObjectURL(new Blob([entry], { type: "text/javascript" }));
  return new Worker(url, { type: "module", name: "task", deno: { permissions: NO_PERMISSIONS } });
}

/** The module URL a compiled binary's Worker imports itself. */
export function moduleUrlOf(modulePath: string): string {
  return pathToFileURL(modulePath).href;
}
