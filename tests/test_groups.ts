/**
 * Runs the suite's two groups: `unit` (in-process, run with `--parallel`) and `e2e` (real Klym
 * servers, task processes and peers, run one file at a time); `all` runs both and fails if either
 * failed. A test file is end-to-end when it starts processes: it imports a helper that starts
 * them (a Klym server, a registry with real task processes, the peers, a browser) or uses
 * `Deno.Command`. Every other file is a unit file. (`--deny-run` cannot hold the unit group to
 * that: any denial also denies reading /proc, which the server panel's figures need.) Extra
 * arguments go to `deno test`.
 *
 *   deno run --allow-read --allow-run tests/test_groups.ts unit|e2e|all [deno test args…]
 */
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const TESTS = join(ROOT, "tests");
/** Folders under tests/ that hold no test files of the suite (task code, installed peers). */
const NOT_TESTS = new Set(["fixtures", "node_modules", ".venv"]);
const STARTS_PROCESSES =
  /helpers\/(klym_process|registry|browser)\.ts|peers\/(peers|setup)\.ts|Deno\.Command\b/;

export type Group = "unit" | "e2e";

/** The suite's test files (paths relative to the repository), each with its group, sorted. */
export function testFiles(): { path: string; group: Group }[] {
  const files: { path: string; group: Group }[] = [];
  const walk = (dir: string) => {
    for (const entry of Deno.readDirSync(dir)) {
      const path = join(dir, entry.name);
      if (entry.isDirectory && !NOT_TESTS.has(entry.name)) walk(path);
      else if (entry.isFile && entry.name.endsWith("_test.ts")) {
        const group = STARTS_PROCESSES.test(Deno.readTextFileSync(path)) ? "e2e" : "unit";
        files.push({ path: relative(ROOT, path), group });
      }
    }
  };
  walk(TESTS);
  return files.sort((a, b) => a.path.localeCompare(b.path));
}

/** Runs one group with `deno test`; resolves to its exit code. */
async function run(group: Group, extra: string[]): Promise<number> {
  const files = testFiles().filter((f) => f.group === group).map((f) => f.path);
  const flags = group === "unit"
    ? ["--allow-all", "--parallel"]
    : ["--allow-all", "--unstable-worker-options"];
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: ["test", ...flags, ...extra, ...files],
    cwd: ROOT,
    stdin: "null",
  }).spawn().status;
  return code;
}

if (import.meta.main) {
  const [which, ...extra] = Deno.args;
  if (which !== "unit" && which !== "e2e" && which !== "all") {
    // deno-lint-ignore no-console
    console.error(`Expected "unit", "e2e" or "all" as the first argument, received "${which}"`);
    Deno.exit(2);
  }
  const groups: Group[] = which === "all" ? ["unit", "e2e"] : [which];
  let failed = false;
  for (const group of groups) failed = (await run(group, extra)) !== 0 || failed;
  Deno.exit(failed ? 1 : 0);
}
