/**
 * What a custom kind's modules may import, checked before its task starts and again when it is
 * launched: only other modules in the tasks folder (by relative path) and Node's computation-only
 * built-ins. The module loader resolves static imports for the task's Worker outside its
 * permissions, so this rule is enforced here, on the source, and the task process's import map
 * refuses the other built-ins again to `import()` at run time. A kind that names anything else is
 * refused with the file (relative to the tasks folder), line and specifier, so its author sees what
 * to change. Relative imports are resolved as the module loader resolves them, by URL from the
 * importing file's path (not its real path), so the files found here are the files the kind loads.
 */
import { dirname, extname, join, normalize, sep } from "node:path";
import { KlymError } from "../errors.ts";
import { identityOf, MAX_KIND_BYTES, shown, withKindFile } from "./kind_files.ts";
import { TASK_NODE_MODULES } from "./sandbox_policy.ts";

/** How large a kind's module graph may be: its bytes and its modules, all together. */
export interface KindLimits {
  /** `KLYM_MAX_KIND_BYTES` */
  readonly maxKindBytes: number;
  /** `KLYM_MAX_KIND_MODULES` */
  readonly maxKindModules: number;
}

/** Modules of one kind checked at most (its own and those it imports, transitively). */
export const MAX_KIND_MODULES = 1000;

export const DEFAULT_KIND_LIMITS: KindLimits = {
  maxKindBytes: MAX_KIND_BYTES,
  maxKindModules: MAX_KIND_MODULES,
};

/** Files whose imports are read; others (JSON) are data. */
const SOURCE_EXTENSIONS = new Set([".ts", ".mts", ".tsx", ".js", ".mjs", ".jsx"]);

/** Where an `import`/`export` clause may begin; the clause itself is read by `scan`. */
const KEYWORD = /\b(?:import|export)\b/g;
/** Characters that end the clause before `from` (a string, a template, a statement's end). */
const CLAUSE_END = new Set(["'", '"', "`", ";"]);

type Imports = readonly { specifier: string; line: number }[];

/** A file of the graph to check, and the import that first led to it (none for the entry). */
interface Pending {
  readonly file: string;
  readonly from?: { readonly file: string; readonly specifier: string; readonly line: number };
}

interface Scanned {
  /** `identityOf` the file whose source was scanned. */
  readonly identity: string;
  readonly imports: Imports;
}

/** One file of a kind's module graph, as found by a check. */
export interface KindGraphFile {
  /** `identityOf` the opened file; `undefined` while it cannot stand for the file's bytes. */
  readonly identity: string | undefined;
  /** Its bytes, read from the checked file (when the check keeps them). */
  readonly data?: Uint8Array;
}

export class KindImports {
  /** Imports of each file already scanned, by real path, while it keeps its identity. */
  readonly #cache = new Map<string, Scanned>();

  readonly #limits: KindLimits;
  readonly #now: () => number;

  constructor(limits: KindLimits = DEFAULT_KIND_LIMITS, now: () => number = Date.now) {
    this.#limits = limits;
    this.#now = now;
  }

  /**
   * Checks a kind's module graph, from `entry` (relative to `root`, the tasks folder's real path),
   * and returns every file of it by relative path with its identity; with `keep`, each is read and
   * its bytes kept, else only sources not scanned since their last change are read. Throws a
   * `KlymError` naming the first import a kind may not make or the first file that leads outside.
   */
  check(kind: string, entry: string, root: string, keep = false): Map<string, KindGraphFile> {
    const since = this.#now();
    const files = new Map<string, KindGraphFile>();
    const seen = new Set<string>([normalize(entry)]);
    const pending: Pending[] = [{ file: normalize(entry) }];
    let bytes = 0;
    while (pending.length > 0) {
      const { file, from } = pending.pop()!;
      const source = SOURCE_EXTENSIONS.has(extname(file));
      const read = withKindFile(kind, root, file, (opened) => {
        bytes += opened.info.size;
        if (bytes > this.#limits.maxKindBytes) throw tooLarge(kind, this.#limits.maxKindBytes);
        const identity = identityOf(opened, since);
        if (!source && !keep) return { identity, imports: [] as Imports };
        const cached = identity === undefined ? undefined : this.#cache.get(opened.real);
        if (!keep && cached && cached.identity === identity) {
          return { identity, imports: cached.imports };
        }
        const data = opened.read(this.#limits.maxKindBytes);
        if (data.length > opened.info.size) bytes += data.length - opened.info.size;
        if (bytes > this.#limits.maxKindBytes) throw tooLarge(kind, this.#limits.maxKindBytes);
        const imports = source ? scan(new TextDecoder().decode(data)) : [];
        if (source && identity !== undefined) this.#cache.set(opened.real, { identity, imports });
        return { identity, imports, data };
      });
      // Each file is opened once, here: an import of a file that is missing (or is not a plain
      // file) is refused as that import.
      if (read === undefined && from) {
        throw refusal(kind, from.file, from.line, from.specifier, "which does not exist");
      }
      if (read === undefined) {
        throw new KlymError(
          "UNKNOWN_KIND",
          `Cannot start task: kind "${kind}": ${shown(file)} does not exist any more`,
        );
      }
      const { identity } = read;
      files.set(file, keep && "data" in read ? { identity, data: read.data } : { identity });
      // Each specifier is judged once per file, however often the file repeats it.
      const judged = new Set<string>();
      for (const { specifier, line } of read.imports) {
        if (judged.has(specifier)) continue;
        judged.add(specifier);
        const problem = this.#judge(specifier, file);
        if (problem && "refused" in problem) {
          throw refusal(kind, file, line, specifier, problem.refused);
        }
        if (problem && !seen.has(problem.follow)) {
          if (seen.size >= this.#limits.maxKindModules) {
            throw new KlymError(
              "KIND_IMPORT_REFUSED",
              `Cannot start task: kind "${kind}" imports more than ${this.#limits.maxKindModules} modules (KLYM_MAX_KIND_MODULES)`,
            );
          }
          seen.add(problem.follow);
          pending.push({ file: problem.follow, from: { file, specifier, line } });
        }
      }
    }
    return files;
  }

  /**
   * A file to follow (relative to the tasks folder), `undefined` for an allowed built-in, or why it
   * is refused. Whether the file exists is seen when it is followed (`check` opens it).
   */
  #judge(specifier: string, file: string): { follow: string } | { refused: string } | undefined {
    const refused = (why: string) => ({ refused: why });
    if (/[\\\n\r%]/.test(specifier)) return refused("which is written with escapes");
    if (/[?#]/.test(specifier)) return refused("which has a query or a fragment");
    if (specifier.startsWith("node:")) {
      return TASK_NODE_MODULES.has(specifier.slice(5))
        ? undefined
        : refused("which is not available");
    }
    if (!specifier.startsWith("./") && !specifier.startsWith("../")) {
      return refused("which is not a relative path");
    }
    const target = normalize(join(dirname(file), specifier));
    if (target === ".." || target.startsWith(`..${sep}`)) {
      return refused("which leads outside the tasks folder");
    }
    return { follow: target };
  }
}

function refusal(
  kind: string,
  file: string,
  line: number,
  specifier: string,
  why: string,
): KlymError {
  return new KlymError(
    "KIND_IMPORT_REFUSED",
    `Cannot start task: kind "${kind}": ${shown(file)}:${line} imports ${
      JSON.stringify(specifier.slice(0, 200))
    }, ${why}; a kind may import only modules in the tasks folder, by relative path, and Node's computation-only built-ins (${
      [...TASK_NODE_MODULES].map((m) => `node:${m}`).join(", ")
    })`,
  );
}

function tooLarge(kind: string, max: number): KlymError {
  return new KlymError(
    "KIND_IMPORT_REFUSED",
    `Cannot start task: kind "${kind}" and the files it imports are more than ${max} bytes (KLYM_MAX_KIND_BYTES)`,
  );
}

/**
 * Every import of a source file with its line: `import … from "x"`, `export … from "x"`,
 * `import "x"` and `import("x")`. One pass: the end of the clause after a keyword (its first quote
 * or `;`) is found once and reused by the keywords before it, so a file of bare `import` words costs
 * linear time, and lines are counted as the scan moves on.
 */
export function scan(source: string): Imports {
  const imports: { specifier: string; line: number }[] = [];
  let line = 1;
  let counted = 0;
  let clauseEnd = -1;
  let resumeAt = 0;
  for (const keyword of source.matchAll(KEYWORD)) {
    if (keyword.index < resumeAt) continue;
    const after = keyword.index + keyword[0].length;
    if (clauseEnd < after) {
      clauseEnd = after;
      while (clauseEnd < source.length && !CLAUSE_END.has(source[clauseEnd]!)) clauseEnd++;
    }
    const found = fromClause(source, after, clauseEnd) ??
      (keyword[0] === "import" ? bareImport(source, after) : undefined);
    if (!found) continue;
    for (let i = source.indexOf("\n", counted); i !== -1 && i < keyword.index;) {
      line++;
      i = source.indexOf("\n", i + 1);
    }
    counted = keyword.index;
    imports.push({ specifier: found.specifier, line });
    resumeAt = found.end;
  }
  return imports;
}

interface Found {
  readonly specifier: string;
  /** Just past the closing quote. */
  readonly end: number;
}

/** `… from "x"`: the clause from `start` ends in `from` and a quote at `end`. */
function fromClause(source: string, start: number, end: number): Found | undefined {
  const quote = source[end];
  if (quote !== '"' && quote !== "'") return undefined;
  let t = end;
  while (t > start && /\s/.test(source[t - 1]!)) t--;
  if (t - 4 < start || source.slice(t - 4, t) !== "from") return undefined;
  if (t - 4 > 0 && /\w/.test(source[t - 5]!)) return undefined;
  return quoted(source, end);
}

/** `import "x"` or `import("x")`, right after the keyword. */
function bareImport(source: string, at: number): Found | undefined {
  while (/\s/.test(source[at] ?? "")) at++;
  if (source[at] === "(") at++;
  while (/\s/.test(source[at] ?? "")) at++;
  const quote = source[at];
  return quote === '"' || quote === "'" ? quoted(source, at) : undefined;
}

/** The string opened by the quote at `at`, up to the same quote (which may be lines away). */
function quoted(source: string, at: number): Found | undefined {
  const close = source.indexOf(source[at]!, at + 1);
  return close === -1 ? undefined : { specifier: source.slice(at + 1, close), end: close + 1 };
}
