/** How many end-to-end test files run at once (`KLYM_TEST_JOBS`), read by tests/test_groups.ts. */

/**
 * How many end-to-end files run at once. Their tests mostly wait on processes (servers, peers,
 * task processes, a browser), so more files than cores keeps the cores busy; every e2e file keeps
 * to its own state, ports, temporary folders and child processes, so files may run side by side.
 */
export const DEFAULT_E2E_JOBS = 4;

/** `KLYM_TEST_JOBS`: a whole number from 1 (one file at a time) to 64; else why not. */
export function e2eJobs(value: string | undefined): number | string {
  if (value === undefined || value === "") return DEFAULT_E2E_JOBS;
  const jobs = /^\d+$/.test(value) ? Number(value) : NaN;
  if (jobs >= 1 && jobs <= 64) return jobs;
  return `KLYM_TEST_JOBS must be a whole number from 1 to 64, received "${value}"`;
}
