/**
 * One error class with one code vocabulary: `src/errors.ts` is the only file of src/ that declares
 * an error class, every code src/ reports comes from its `ERROR_CODES`, and docs/errors.md has a
 * row for each code and for nothing else.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ERROR_CODES, type ErrorCode, isKlymError, KlymError } from "../src/errors.ts";
import { sourceFiles } from "./helpers/source_files.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const CODES = Object.keys(ERROR_CODES) as ErrorCode[];

/** Class declarations that extend `Error` or any of its built-in kin (`TypeError`, …). */
const ERROR_CLASS = /\bclass\s+(\w+)\s+extends\s+(\w*Error)\b/g;

/**
 * The code strings a source reports: the literals of a `code:` value, of a `KlymError`'s first
 * argument and of the Worker's `fail`/`failureEvent` first argument (both branches of a `?:`).
 */
function reportedCodes(source: string): string[] {
  const found: string[] = [];
  const sites =
    /(?:\bcode:\s*|\bnew KlymError\(\s*|\bisKlymError\(\s*\w+,\s*|\bfail\(|\bfailureEvent\()([^,;{}\n]*)/g;
  for (const site of source.matchAll(sites)) {
    for (const literal of site[1]!.matchAll(/"([A-Za-z_]+)"/g)) found.push(literal[1]!);
  }
  return found;
}

Deno.test("no file of src/ but src/errors.ts declares an error class", async () => {
  const problems: string[] = [];
  for (const [path, source] of await sourceFiles()) {
    if (path === "src/errors.ts") continue;
    for (const m of source.matchAll(ERROR_CLASS)) {
      const line = source.slice(0, m.index).split("\n").length;
      problems.push(
        `${path}:${line} declares ${m[1]} extends ${
          m[2]
        }: use KlymError with a code of src/errors.ts`,
      );
    }
  }
  assert.deepEqual(problems, []);
});

Deno.test("every code src/ reports is in the vocabulary of src/errors.ts", async () => {
  const problems: string[] = [];
  let seen = 0;
  for (const [path, source] of await sourceFiles()) {
    for (const code of reportedCodes(source)) {
      seen++;
      // zod's own issue code, not one of Klym's.
      if (code === "custom") continue;
      if (!(code in ERROR_CODES)) problems.push(`${path} reports "${code}"`);
    }
  }
  assert.deepEqual(problems, [], "add the code to ERROR_CODES, or use the one that is there");
  assert.ok(seen > 50, `the scan finds the codes src/ reports (found ${seen})`);
});

Deno.test("the code scan reads code fields, KlymError arguments and both branches of a choice", () => {
  const sample = [
    'throw new KlymError("NO_MODEL", "none");',
    'throw new KlymError(\n  "invalid_params",\n  "bad",\n);',
    'return { code: "out_of_memory", message };',
    'fail(started ? "unhandled_rejection" : "load_error", e.reason);',
    'if (isKlymError(error, "JOURNAL_TAKEN", "JOURNAL_UNUSABLE")) throw error;',
    'const other = "not_a_code";',
  ].join("\n");
  assert.deepEqual(reportedCodes(sample), [
    "NO_MODEL",
    "invalid_params",
    "out_of_memory",
    "unhandled_rejection",
    "load_error",
    "JOURNAL_TAKEN",
  ]);
});

Deno.test("docs/errors.md has one row per code of src/errors.ts, and no other", async () => {
  const page = await Deno.readTextFile(join(ROOT, "docs/errors.md"));
  const rows = [...page.matchAll(/^\|\s*`([^`]+)`\s*\|/gm)].map((m) => m[1]!);
  const counts = new Map<string, number>();
  for (const row of rows) counts.set(row, (counts.get(row) ?? 0) + 1);
  assert.deepEqual(CODES.filter((code) => !counts.has(code)), [], "codes with no row");
  assert.deepEqual(rows.filter((row) => !(row in ERROR_CODES)), [], "rows naming no code");
  assert.deepEqual([...counts].filter(([, n]) => n > 1), [], "codes with more than one row");
});

Deno.test("one spelling per cause: each code is UPPER_SNAKE or lower_snake and has a meaning", () => {
  for (const code of CODES) {
    assert.match(code, /^([A-Z]+(_[A-Z]+)*|[a-z]+(_[a-z]+)*)$/, code);
    assert.ok(ERROR_CODES[code].length > 10, `${code} says what it means`);
    const other = code === code.toUpperCase() ? code.toLowerCase() : code.toUpperCase();
    assert.ok(!(other in ERROR_CODES), `${code} and ${other} are one cause spelled twice`);
  }
});

Deno.test("isKlymError matches a KlymError by code, and nothing else", () => {
  const error = new KlymError("JOURNAL_TAKEN", "taken", { cause: new Error("locked") });
  assert.equal(error.name, "KlymError");
  assert.equal((error.cause as Error).message, "locked");
  assert.ok(isKlymError(error));
  assert.ok(isKlymError(error, "JOURNAL_UNUSABLE", "JOURNAL_TAKEN"));
  assert.ok(!isKlymError(error, "JOURNAL_UNUSABLE"));
  const plain = Object.assign(new Error("taken"), { code: "JOURNAL_TAKEN" });
  assert.ok(!isKlymError(plain, "JOURNAL_TAKEN"), "a look-alike with the same code is not one");
});
