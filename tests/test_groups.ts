/**
 * Runs the suite's two groups: `unit` (in-process, run with `--parallel`) and `e2e` (real Klym
 * servers, task processes and peers, `KLYM_TEST_JOBS` files at a time); `all` runs both and fails
 * if either failed. Which file is in which group: tests/helpers/test_files.ts. (`--deny-run` cannot hold
 * the unit group to in-process: any denial also denies reading /proc, which the server panel's
 * figures need.) Extra arguments go to `deno test`.
 *
 *   deno run --allow-read --allow-run tests/test_groups.ts unit|e2e|all [deno test args…]
 */
import { type Group, ROOT, testFiles } from "./helpers/test_files.ts";
import { e2eJobs } from "./helpers/test_jobs.ts";

/** Runs one group with `deno test`; resolves to its exit code. */
async function run(group: Group, jobs: number, extra: string[]): Promise<number> {
  const files = testFiles().filter((f) => f.group === group).map((f) => f.path);
  const flags = group === "unit"
    ? ["--allow-all", "--parallel"]
    : ["--allow-all", "--unstable-worker-options", ...(jobs > 1 ? ["--parallel"] : [])];
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: ["test", ...flags, ...extra, ...files],
    cwd: ROOT,
    stdin: "null",
    // Unit files are in-process: as many at once as there are cores (Deno's default).
    env: group === "e2e" ? { DENO_JOBS: String(jobs) } : {},
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
  const jobs = e2eJobs(Deno.env.get("KLYM_TEST_JOBS"));
  if (typeof jobs === "string") {
    // deno-lint-ignore no-console
    console.error(jobs);
    Deno.exit(2);
  }
  const groups: Group[] = which === "all" ? ["unit", "e2e"] : [which];
  let failed = false;
  for (const group of groups) failed = (await run(group, jobs, extra)) !== 0 || failed;
  Deno.exit(failed ? 1 : 0);
}
