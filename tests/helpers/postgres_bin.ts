/** Where PostgreSQL's server binaries are (no dependency: the test setup reads it too). */
import { join } from "node:path";

const BIN_FOLDERS = [
  "/usr/local/bin",
  "/usr/lib/postgresql/17/bin",
  "/usr/lib/postgresql/16/bin",
  "/usr/lib/postgresql/15/bin",
];

/** The folder holding `initdb`, `postgres` and `pg_ctl`, or `undefined` when none is installed. */
export function postgresBin(): string | undefined {
  const fromEnv = Deno.env.get("KLYM_TEST_PG_BIN");
  for (const folder of [...(fromEnv ? [fromEnv] : []), ...BIN_FOLDERS]) {
    try {
      Deno.statSync(join(folder, "initdb"));
      Deno.statSync(join(folder, "pg_ctl"));
      return folder;
    } catch {
      // Not here.
    }
  }
  return undefined;
}
