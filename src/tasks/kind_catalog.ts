/**
 * Which task kinds exist: the built-in ones, and custom kinds in the tasks folder, each either one
 * module `<kind>.ts` or a folder `<kind>/` whose entry is `main.ts` (with helper modules beside
 * it). A kind is checked at `start`, and again when its task is launched, when every file of its
 * module graph is opened in the tasks folder (each checked to be the file inside the folder that
 * it was found to be: see `kind_files.ts`), read and copied into a snapshot that only Klym writes.
 * The task's process loads the kind from that snapshot and may read nothing else but Klym's own
 * code: a link swapped into the tasks folder while the task waits fails it, and nothing outside
 * the folder is read or run. A launch whose files all keep the identity they had when the kind's
 * last snapshot was read (`identityOf`) reuses that snapshot without reading them again; a
 * snapshot that is no kind's latest and that no task process holds any more is removed. Errors
 * name files relative to the tasks folder.
 */
import { createHash } from "node:crypto";
import { dirname, join, relative } from "node:path";
import { KlymError } from "../errors.ts";
import { BUILTIN_KIND_NAMES, type Failure } from "../protocol.ts";
import {
  DEFAULT_KIND_LIMITS,
  type KindGraphFile,
  KindImports,
  type KindLimits,
} from "./kind_imports.ts";
import { inside, outsideError, shown, withKindFile } from "./kind_files.ts";

const KIND_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
/** A folder kind's entry module. */
const FOLDER_ENTRY = "main.ts";
/** Entries of the tasks folder checked for links at each start; a larger folder is refused. */
const MAX_TASKS_DIR_ENTRIES = 10_000;

export interface KindCatalogOptions extends KindLimits {
  /** The clock files' change times are compared with (`identityOf`); `Date.now` by default. */
  readonly now?: () => number;
}

/** A launch's snapshot of its kind. */
export interface KindSnapshot {
  /** The kind's entry module in the snapshot. */
  readonly modulePath: string;
  /** Whether the kind's files were found unchanged and not read again. */
  readonly reused: boolean;
  /** Call once the task's process is gone: the snapshot may then be removed. */
  release(): void;
}

/** The snapshot of a kind's files last read, and each file's identity then (if all had one). */
interface Latest {
  readonly hash: string;
  readonly identities: ReadonlyMap<string, string> | undefined;
}

export class KindCatalog {
  /** The tasks folder as given, and its real path (links resolved), if it exists. */
  readonly tasksDir: string | undefined;
  readonly #imports: KindImports;
  #snapshots: string | undefined;
  /** Each kind's latest snapshot, reused while every file of its graph keeps its identity. */
  readonly #latest = new Map<string, Latest>();
  /** Launches holding each snapshot (by hash) whose task process may still read it. */
  readonly #held = new Map<string, number>();

  constructor(tasksDir: string | undefined, options: KindCatalogOptions = DEFAULT_KIND_LIMITS) {
    this.tasksDir = tasksDir;
    this.#imports = new KindImports(options, options.now);
  }

  /** The folder's real path; `undefined` if there is none. */
  realTasksDir(): string | undefined {
    if (!this.tasksDir) return undefined;
    try {
      return Deno.realPathSync(this.tasksDir);
    } catch {
      return undefined;
    }
  }

  /**
   * The folder of snapshots (mode 0700, made on first use), the only place besides Klym's `src/`
   * that task processes may read; `undefined` without a tasks folder. `close` removes it.
   */
  snapshotDir(): string | undefined {
    if (!this.tasksDir) return undefined;
    return this.#snapshots ??= Deno.realPathSync(Deno.makeTempDirSync({ prefix: "klym-kinds-" }));
  }

  /**
   * Checks a kind at `start`: `undefined` for a built-in kind, else its entry module's path
   * relative to the tasks folder. Throws a `KlymError`.
   */
  resolve(kind: string): string | undefined {
    if (!KIND_NAME.test(kind)) {
      throw new KlymError(
        "UNKNOWN_KIND",
        `Cannot start task: "kind" must be a name of letters, digits, "_" or "-" starting with a letter (at most 64), received ${
          JSON.stringify(kind.slice(0, 80))
        }`,
      );
    }
    if (BUILTIN_KIND_NAMES.includes(kind)) return undefined;
    const { entry, root } = this.#located(kind);
    const escapes = linksLeaving(root);
    if (escapes.length > 0) {
      throw new KlymError(
        "KIND_OUTSIDE_TASKS_DIR",
        `Cannot start task: the tasks folder (KLYM_TASKS_DIR) has links that lead outside it, which any kind could import: ${
          escapes.slice(0, 5).join(", ")
        }${
          escapes.length > 5 ? ` and ${escapes.length - 5} more` : ""
        }; remove them or copy what they point at into the folder`,
      );
    }
    this.#imports.check(kind, entry, root);
    return entry;
  }

  /**
   * When a custom kind's task is launched: checks the kind again and copies its files into a
   * snapshot (content-addressed), whose entry module the task's process loads; the kind's latest
   * snapshot is reused while every file of its graph keeps its identity. A kind that no longer
   * passes fails its task with the refusal's code.
   */
  snapshot(kind: string): KindSnapshot | Failure {
    let entry: string;
    let files: Map<string, KindGraphFile>;
    try {
      let root: string;
      ({ entry, root } = this.#located(kind));
      // The check runs in full either way: every file of the graph is opened where it is now, so
      // a link swapped in is caught; only reading the files again is saved.
      const latest = this.#latest.get(kind);
      if (
        latest?.identities &&
        unchanged(this.#imports.check(kind, entry, root), latest.identities) &&
        exists(join(this.snapshotDir()!, latest.hash, entry))
      ) return this.#hold(latest.hash, entry, true);
      files = this.#imports.check(kind, entry, root, true);
    } catch (error) {
      if (error instanceof KlymError) return { code: error.code, message: error.message };
      return notCopied(kind, "read", error);
    }
    const digest = createHash("sha256");
    for (const [rel, { data }] of [...files].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)) {
      digest.update(`${rel}\0${data!.length}\0`).update(data!);
    }
    const hash = digest.digest("hex");
    const snapshots = this.snapshotDir()!;
    const dir = join(snapshots, hash);
    try {
      if (!exists(dir)) {
        const staging = Deno.makeTempDirSync({ dir: snapshots, prefix: ".staging-" });
        for (const [rel, { data }] of files) {
          Deno.mkdirSync(dirname(join(staging, rel)), { recursive: true, mode: 0o700 });
          Deno.writeFileSync(join(staging, rel), data!, { createNew: true, mode: 0o600 });
        }
        Deno.renameSync(staging, dir);
      }
    } catch (error) {
      return notCopied(kind, "copied", error);
    }
    const identities = new Map<string, string>();
    for (const [rel, { identity }] of files) {
      if (identity !== undefined) identities.set(rel, identity);
    }
    const previous = this.#latest.get(kind);
    this.#latest.set(kind, {
      hash,
      identities: identities.size === files.size ? identities : undefined,
    });
    const held = this.#hold(hash, entry, false);
    if (previous && previous.hash !== hash) this.#prune(previous.hash);
    return held;
  }

  /** Removes the snapshots; call once no task process is left. */
  close(): void {
    this.#latest.clear();
    this.#held.clear();
    if (this.#snapshots === undefined) return;
    try {
      Deno.removeSync(this.#snapshots, { recursive: true });
    } catch {
      // Already gone.
    }
    this.#snapshots = undefined;
  }

  /** A launch's hold on the snapshot `hash`, released once. */
  #hold(hash: string, entry: string, reused: boolean): KindSnapshot {
    this.#held.set(hash, (this.#held.get(hash) ?? 0) + 1);
    let released = false;
    return {
      modulePath: join(this.snapshotDir()!, hash, entry),
      reused,
      release: () => {
        if (released) return;
        released = true;
        const held = (this.#held.get(hash) ?? 1) - 1;
        if (held > 0) return void this.#held.set(hash, held);
        this.#held.delete(hash);
        this.#prune(hash);
      },
    };
  }

  /** Removes the snapshot `hash` if no launch holds it and it is no kind's latest. */
  #prune(hash: string): void {
    if (this.#snapshots === undefined || this.#held.has(hash)) return;
    for (const latest of this.#latest.values()) if (latest.hash === hash) return;
    try {
      Deno.removeSync(join(this.#snapshots, hash), { recursive: true });
    } catch {
      // Already gone; a snapshot left behind goes with the rest at `close`.
    }
  }

  /** A custom kind's entry (relative to the tasks folder) and the folder's real path. */
  #located(kind: string): { entry: string; root: string } {
    const root = this.realTasksDir();
    const entry = root === undefined ? undefined : this.#entry(kind);
    if (root === undefined || entry === undefined) {
      throw new KlymError(
        "UNKNOWN_KIND",
        `Cannot start task: unknown "kind" ${JSON.stringify(kind)}; known kinds: ${
          this.list().join(", ") || "none"
        }${this.tasksDir ? "" : " (set KLYM_TASKS_DIR to add custom kinds)"}`,
      );
    }
    if (!withKindFile(kind, root, entry, () => true)) throw outsideError(kind, entry);
    return { entry, root };
  }

  list(): string[] {
    const custom: string[] = [];
    if (this.tasksDir) {
      try {
        for (const entry of Deno.readDirSync(this.tasksDir)) {
          const name = entry.name.replace(/\.ts$/, "");
          if (!KIND_NAME.test(name) || BUILTIN_KIND_NAMES.includes(name)) continue;
          if (this.#entry(name) !== undefined) custom.push(name);
        }
      } catch {
        // A missing folder means no custom kinds; startup already warned about it.
      }
    }
    return [...BUILTIN_KIND_NAMES, ...[...new Set(custom)].sort()];
  }

  /** `<kind>.ts`, or `<kind>/main.ts`, if either is a file (relative to the tasks folder). */
  #entry(kind: string): string | undefined {
    for (const rel of [`${kind}.ts`, join(kind, FOLDER_ENTRY)]) {
      try {
        if (Deno.statSync(join(this.tasksDir!, rel)).isFile) return rel;
      } catch {
        // Not this shape; try the next.
      }
    }
    return undefined;
  }
}

/** The OS error's name only: its message would name paths of the server's machine. */
function notCopied(kind: string, what: "read" | "copied", error: unknown): Failure {
  return {
    code: "spawn_failed",
    message:
      `Cannot start the task's process: the files of kind "${kind}" could not be ${what} for it (${
        error instanceof Error ? error.name : "error"
      })`,
  };
}

/** Whether a check found the same files, each with the identity recorded. */
function unchanged(
  graph: ReadonlyMap<string, KindGraphFile>,
  identities: ReadonlyMap<string, string>,
): boolean {
  if (graph.size !== identities.size) return false;
  for (const [rel, { identity }] of graph) {
    if (identity === undefined || identities.get(rel) !== identity) return false;
  }
  return true;
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Links under `root` whose target is outside it, by their path relative to `root`. */
function linksLeaving(root: string): string[] {
  const found: string[] = [];
  const pending = [root];
  let seen = 0;
  while (pending.length > 0) {
    const dir = pending.pop()!;
    for (const entry of Deno.readDirSync(dir)) {
      if (++seen > MAX_TASKS_DIR_ENTRIES) {
        return [
          `more than ${MAX_TASKS_DIR_ENTRIES} entries (MAX_TASKS_DIR_ENTRIES): too many to check`,
        ];
      }
      const path = join(dir, entry.name);
      if (entry.isSymlink) {
        let target: string;
        try {
          target = Deno.realPathSync(path);
        } catch {
          continue; // A dangling link loads nothing.
        }
        if (!inside(target, root)) found.push(shown(relative(root, path)));
      } else if (entry.isDirectory) pending.push(path);
    }
  }
  return found;
}
