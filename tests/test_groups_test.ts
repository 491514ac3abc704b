/** The suite's two groups: every test file is in one, and a file that starts processes is e2e. */
import assert from "node:assert/strict";
import { LONG_FILES, startsProcesses, testFiles } from "./helpers/test_files.ts";
import { DEFAULT_E2E_JOBS, e2eJobs } from "./helpers/test_jobs.ts";

const here = (path: string) => new URL(path, import.meta.url).pathname;

Deno.test("a file starts processes when it or a helper it imports at any depth does", () => {
  assert.equal(startsProcesses(here("helpers/klym_process.ts")), true, "it spawns them");
  assert.equal(startsProcesses(here("helpers/registry.ts")), true, "real task processes");
  assert.equal(startsProcesses(here("helpers/raw_mcp.ts")), false);
  assert.equal(startsProcesses(here("cli/cli_test.ts")), true, "through klym_cli.ts");
  assert.equal(startsProcesses(here("tasks/fair_queue_test.ts")), false);
});

Deno.test("every test file is in exactly one group, and the unit group starts no process", () => {
  const files = testFiles();
  assert.equal(new Set(files.map((f) => f.path)).size, files.length);
  const group = Object.fromEntries(files.map((f) => [f.path, f.group]));
  assert.equal(group["tests/test_groups_test.ts"], "unit");
  assert.equal(group["tests/mcp/era_2025_test.ts"], "e2e");
  assert.equal(group["tests/tasks/task_registry_test.ts"], "e2e");
  for (const f of files.filter((f) => f.group === "unit")) {
    assert.equal(startsProcesses(here(`../${f.path}`)), false, f.path);
  }
  assert.ok(files.filter((f) => f.group === "unit").length >= 20, "most files are unit files");
});

Deno.test("the long end-to-end files come first, each in the e2e group; the others by path", () => {
  const files = testFiles();
  assert.deepEqual(
    files.slice(0, LONG_FILES.length).map((f) => [f.path, f.group]),
    LONG_FILES.map((path) => [path, "e2e"]),
  );
  const rest = files.slice(LONG_FILES.length).map((f) => f.path);
  assert.deepEqual(rest, [...rest].sort((a, b) => a.localeCompare(b)));
});

Deno.test("KLYM_TEST_JOBS sets how many e2e files run at once: 1 to 64, else a message naming it", () => {
  assert.equal(e2eJobs(undefined), DEFAULT_E2E_JOBS);
  assert.equal(e2eJobs(""), DEFAULT_E2E_JOBS);
  assert.equal(e2eJobs("1"), 1);
  assert.equal(e2eJobs("64"), 64);
  for (const bad of ["0", "65", "2.5", "-1", "four", " 4"]) {
    assert.match(
      String(e2eJobs(bad)),
      /^KLYM_TEST_JOBS must be a whole number from 1 to 64, received "/,
    );
  }
});
