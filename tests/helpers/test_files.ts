/**
 * Sorts the suite's test files into its two groups. A test file is end-to-end when it starts
 * processes: it, or a file of tests/ it imports at any depth (the helpers for a Klym server, the
 * CLI, the peers), spawns a command, or it imports the helper of a registry with real task
 * processes or of a browser. Every other file is a unit file: in-process, run in parallel.
 */
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const TESTS = join(ROOT, "tests");
/** Folders under tests/ that hold no test files of the suite (task code, installed peers). */
const NOT_TESTS = new Set([
  "fixtures",
  "node_modules",
  ".venv",
  ".venv-fastmcp",
  ".venv-fastmcp-tasks",
]);
/** Code that starts processes, and helpers that start them by other means (src/, a browser). */
const STARTS_PROCESSES = /\bDeno\.Command\b/;
const HELPERS_STARTING = new Set(["helpers/registry.ts", "helpers/browser.ts"]);
const LOCAL_IMPORT = /^(?:import|export)\s[^;"]*?from\s+"(\.{1,2}\/[^"]+\.ts)"/gm;

export type Group = "unit" | "e2e";

/**
 * End-to-end files that take minutes: their group starts them first, so that they run beside the
 * others rather than alone after them.
 */
export const LONG_FILES: readonly string[] = ["tests/nodes/cluster_acceptance_test.ts"];

/** Whether `path` or a file of tests/ it imports (at any depth) starts processes. */
export function startsProcesses(path: string, seen = new Set<string>()): boolean {
  if (seen.has(path)) return false;
  seen.add(path);
  const text = Deno.readTextFileSync(path);
  if (STARTS_PROCESSES.test(text)) return true;
  const imports = [...text.matchAll(LOCAL_IMPORT)].map((m) => join(dirname(path), m[1]!))
    .filter((dep) => dep.startsWith(TESTS + "/"));
  return imports.some((dep) => HELPERS_STARTING.has(relative(TESTS, dep))) ||
    imports.some((dep) => startsProcesses(dep, seen));
}

/**
 * The suite's test files (paths relative to the repository), each with its group, sorted: the
 * `LONG_FILES` first, then by path.
 */
export function testFiles(): { path: string; group: Group }[] {
  const files: { path: string; group: Group }[] = [];
  const walk = (dir: string) => {
    for (const entry of Deno.readDirSync(dir)) {
      const path = join(dir, entry.name);
      if (entry.isDirectory && !NOT_TESTS.has(entry.name)) walk(path);
      else if (entry.isFile && entry.name.endsWith("_test.ts")) {
        const group = startsProcesses(path) ? "e2e" : "unit";
        files.push({ path: relative(ROOT, path), group });
      }
    }
  };
  walk(TESTS);
  const long = (path: string) => LONG_FILES.includes(path) ? 0 : 1;
  return files.sort((a, b) => long(a.path) - long(b.path) || a.path.localeCompare(b.path));
}
