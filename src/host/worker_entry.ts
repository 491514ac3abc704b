/**
 * Creates a task's Worker with no permission at all. A custom kind's module is part of the
 * Worker's entry, so the module graph is loaded by Deno's loader under the host process's read
 * allowance (Klym's `src/` and the kinds' snapshots, see `KindCatalog.snapshot`), before and
 * outside anything task code can do. The module path is the kind's entry in its snapshot, which
 * holds every file of its graph as checked at launch.
 *
 * A host prepares its next Worker before the task arrives (`PreparedWorker`): the runtime alone
 * for built-in kinds, or, after a clean end in a host kept for its principal's next task, the
 * Worker of the kind it just ran, module graph loaded. The kind's entry path names its snapshot,
 * which is content-addressed and chosen by the server at launch after checking every file of the
 * graph (`KindCatalog.snapshot`): a task whose kind changed gets another path, and so a Worker
 * built then, never the stale one.
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
    `import * as kind from ${JSON.stringify(pathToFileURL(modulePath).href)};`,
    `provideKind(kind);`,
  ].join("\n");
  const url = URL.createObjectURL(new Blob([entry], { type: "text/javascript" }));
  return new Worker(url, { type: "module", name: "task", deno: { permissions: NO_PERMISSIONS } });
}

/** The module URL a compiled binary's Worker imports itself. */
export function moduleUrlOf(modulePath: string): string {
  return pathToFileURL(modulePath).href;
}

/** What a prepared Worker said (or how it failed) before its task's session listened to it. */
export type EarlyEvent =
  | { readonly type: "message"; readonly data: unknown }
  | { readonly type: "messageerror" }
  | { readonly type: "error" };

/** Early events kept at most; a Worker that says more before its task is thrown away. */
const MAX_EARLY_EVENTS = 256;

/**
 * A task's Worker made ahead of its task, for the kind whose module it loaded (`undefined`: the
 * runtime only). What the kind's top-level code says meanwhile is kept, bounded, and replayed to
 * the task's session, so the task sees what it would have seen with a Worker built at its start.
 */
export class PreparedWorker {
  readonly worker: Worker;
  readonly #early: EarlyEvent[] = [];
  #spoiled = false;

  constructor(readonly modulePath: string | undefined) {
    this.worker = modulePath === undefined ? createRuntimeWorker() : createKindWorker(modulePath);
    this.worker.onmessage = (e: MessageEvent) => this.#keep({ type: "message", data: e.data });
    this.worker.onmessageerror = () => this.#keep({ type: "messageerror" });
    this.worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.#keep({ type: "error" });
    };
  }

  /** Whether it can run a task of the kind whose module is at `modulePath`. */
  fits(modulePath: string | undefined): boolean {
    return !this.#spoiled && this.modulePath === modulePath;
  }

  /** What it said before its task; its handlers are the caller's from now on. */
  take(): readonly EarlyEvent[] {
    this.worker.onmessage = this.worker.onmessageerror = this.worker.onerror = null;
    return this.#early.splice(0);
  }

  /** Ends it; what it would still report (a module that vanished meanwhile) is dropped. */
  terminate(): void {
    this.worker.onmessage = this.worker.onmessageerror = null;
    this.worker.onerror = (e: ErrorEvent) => e.preventDefault();
    this.worker.terminate();
    this.#early.length = 0;
  }

  #keep(event: EarlyEvent): void {
    if (this.#spoiled) return;
    this.#early.push(event);
    if (event.type !== "error" && this.#early.length <= MAX_EARLY_EVENTS) return;
    // Its task will get a Worker of its own, built at its start: its output is seen as it comes,
    // and a failure to load (its snapshot removed meanwhile, say) is the task's own to report.
    this.#spoiled = true;
    this.terminate();
  }
}
