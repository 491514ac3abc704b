/**
 * What a custom kind's modules may import, checked before its task starts: only other modules in
 * the tasks folder (by relative path) and Node's computation-only built-ins. The module loader
 * resolves static imports for the task's Worker outside its permissions, so this rule is enforced
 * here, on the source, and the task process's import map refuses the other built-ins again to
 * `import()` at run time. A kind that names anything else is refused with the file, line and
 * specifier, so its author sees what to change.
 */
import { dirname, extname, isAbsolute, relative, resolve } from "node:path";
import { TaskError } from "../errors.ts";

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

/** Files whose imports are read; others (JSON) are data. */
const SOURCE_EXTENSIONS = new Set([".ts", ".mts", ".tsx", ".js", ".mjs", ".jsx"]);
/** Modules of one kind checked at most (its own and those it imports, transitively). */
export const MAX_KIND_MODULES = 1000;

/** `import … from "x"`, `export … from "x"`, `import "x"`, `import("x")`. */
const SPECIFIER =
  /\b(?:import|export)\b[^'"`;]*?\bfrom\s*(["'])(.*?)\1|\bimport\s*\(?\s*(["'])(.*?)\3/gs;

interface Scanned {
  readonly mtime: number | null;
  readonly size: number;
  readonly imports: readonly { specifier: string; line: number }[];
}

export class KindImports {
  readonly #cache = new Map<string, Scanned>();

  /** Throws a `TaskError` naming the first import a kind may not make. */
  check(kind: string, entry: string, root: string): void {
    const seen = new Set<string>([entry]);
    const pending = [entry];
    while (pending.length > 0) {
      const file = pending.pop()!;
      for (const { specifier, line } of this.#imports(file)) {
        const problem = this.#judge(specifier, file, root);
        if (problem && "refused" in problem) {
          throw new TaskError(
            "KIND_IMPORT_REFUSED",
            `Cannot start task: kind "${kind}": ${file}:${line} imports ${
              JSON.stringify(specifier.slice(0, 200))
            }, ${problem.refused}; a kind may import only modules in the tasks folder, by relative path, and Node's computation-only built-ins (${
              [...TASK_NODE_MODULES].map((m) => `node:${m}`).join(", ")
            })`,
          );
        }
        if (problem && !seen.has(problem.follow)) {
          if (seen.size >= MAX_KIND_MODULES) {
            throw new TaskError(
              "KIND_IMPORT_REFUSED",
              `Cannot start task: kind "${kind}" imports more than ${MAX_KIND_MODULES} modules (MAX_KIND_MODULES)`,
            );
          }
          seen.add(problem.follow);
          if (SOURCE_EXTENSIONS.has(extname(problem.follow))) pending.push(problem.follow);
        }
      }
    }
  }

  /** A module's real path to follow, `undefined` for an allowed built-in, or why it is refused. */
  #judge(
    specifier: string,
    file: string,
    root: string,
  ): { follow: string } | { refused: string } | undefined {
    const refused = (why: string) => ({ refused: why });
    if (/[\\\n\r]/.test(specifier)) return refused("which is written with escapes");
    if (specifier.startsWith("node:")) {
      return TASK_NODE_MODULES.has(specifier.slice(5))
        ? undefined
        : refused("which is not available");
    }
    if (!specifier.startsWith("./") && !specifier.startsWith("../")) {
      return refused("which is not a relative path");
    }
    const target = resolve(dirname(file), specifier);
    let real: string;
    try {
      real = Deno.realPathSync(target);
    } catch {
      return refused("which does not exist");
    }
    const rel = relative(root, real);
    if (rel === "" || rel.startsWith("..") || isAbsolute(rel)) {
      return refused(`which leads to ${real}, outside the tasks folder`);
    }
    return { follow: real };
  }

  #imports(file: string): Scanned["imports"] {
    const info = Deno.statSync(file);
    const mtime = info.mtime?.getTime() ?? null;
    const cached = this.#cache.get(file);
    if (cached && cached.mtime === mtime && cached.size === info.size) return cached.imports;
    const source = Deno.readTextFileSync(file);
    const imports: { specifier: string; line: number }[] = [];
    for (const match of source.matchAll(SPECIFIER)) {
      const specifier = match[2] ?? match[4] ?? "";
      const line = source.slice(0, match.index).split("\n").length;
      imports.push({ specifier, line });
    }
    this.#cache.set(file, { mtime, size: info.size, imports });
    return imports;
  }
}
