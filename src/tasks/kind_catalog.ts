/**
 * Which task kinds exist: the built-in ones, and custom kinds in the tasks folder, each either one
 * module `<kind>.ts` or a folder `<kind>/` whose entry is `main.ts` (with helper modules beside
 * it). Paths are resolved to real paths: a kind whose module, or any link in the tasks folder,
 * leads outside the folder is refused, because the module loader follows links and reads what
 * they point at.
 */
import { isAbsolute, join, relative } from "node:path";
import { TaskError } from "../errors.ts";
import { BUILTIN_KIND_NAMES } from "../protocol.ts";
import { KindImports } from "./kind_imports.ts";

const KIND_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
/** A folder kind's entry module. */
export const FOLDER_ENTRY = "main.ts";
/** Entries of the tasks folder checked for links at each start; a larger folder is refused. */
export const MAX_TASKS_DIR_ENTRIES = 10_000;

export class KindCatalog {
  /** The tasks folder as given, and its real path (links resolved), if it exists. */
  readonly tasksDir: string | undefined;
  readonly #imports = new KindImports();

  constructor(tasksDir: string | undefined) {
    this.tasksDir = tasksDir;
  }

  /** The folder's real path, which the task processes may read; `undefined` if there is none. */
  realTasksDir(): string | undefined {
    if (!this.tasksDir) return undefined;
    try {
      return Deno.realPathSync(this.tasksDir);
    } catch {
      return undefined;
    }
  }

  /** The real path of a custom kind's module, `undefined` for a built-in kind; throws a `TaskError`. */
  resolve(kind: string): string | undefined {
    if (!KIND_NAME.test(kind)) {
      throw new TaskError(
        "UNKNOWN_KIND",
        `Cannot start task: "kind" must be a name of letters, digits, "_" or "-" starting with a letter (at most 64), received ${
          JSON.stringify(kind.slice(0, 80))
        }`,
      );
    }
    if (BUILTIN_KIND_NAMES.includes(kind)) return undefined;
    const root = this.realTasksDir();
    const entry = root === undefined ? undefined : this.#entry(kind);
    if (root === undefined || entry === undefined) {
      throw new TaskError(
        "UNKNOWN_KIND",
        `Cannot start task: unknown "kind" ${JSON.stringify(kind)}; known kinds: ${
          this.list().join(", ") || "none"
        }${this.tasksDir ? "" : " (set KLYM_TASKS_DIR to add custom kinds)"}`,
      );
    }
    const real = Deno.realPathSync(entry);
    if (!inside(real, root)) {
      throw new TaskError(
        "KIND_OUTSIDE_TASKS_DIR",
        `Cannot start task: kind "${kind}" is ${entry}, which leads to ${real}, outside the tasks folder ${root} (KLYM_TASKS_DIR); copy the module into the folder instead of linking it`,
      );
    }
    const escapes = linksLeaving(root);
    if (escapes.length > 0) {
      throw new TaskError(
        "KIND_OUTSIDE_TASKS_DIR",
        `Cannot start task: the tasks folder ${root} (KLYM_TASKS_DIR) has links that lead outside it, which any kind could import: ${
          escapes.slice(0, 5).join(", ")
        }${
          escapes.length > 5 ? ` and ${escapes.length - 5} more` : ""
        }; remove them or copy what they point at into the folder`,
      );
    }
    this.#imports.check(kind, real, root);
    return real;
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

  /** `<kind>.ts`, or `<kind>/main.ts`, if either is a file. */
  #entry(kind: string): string | undefined {
    for (
      const path of [join(this.tasksDir!, `${kind}.ts`), join(this.tasksDir!, kind, FOLDER_ENTRY)]
    ) {
      try {
        if (Deno.statSync(path).isFile) return path;
      } catch {
        // Not this shape; try the next.
      }
    }
    return undefined;
  }
}

function inside(path: string, folder: string): boolean {
  const rel = relative(folder, path);
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel);
}

/** Links under `root` whose target is outside it (or missing), as "link → target". */
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
        if (!inside(target, root)) found.push(`${path} → ${target}`);
      } else if (entry.isDirectory) pending.push(path);
    }
  }
  return found;
}
