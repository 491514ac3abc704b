// deno-lint-ignore-file no-console -- a CI script prints its verdict
/**
 * Line coverage of Klym's own code (src/ and main.ts) from a run with DENO_COVERAGE_DIR set, which
 * the test process, the Klym servers it starts and their task processes (Workers included) all
 * write to. Files cut short by a SIGKILL are left out. Exits 1 below the floor.
 * Run: deno run -A .ci/coverage.ts <dir> <floor percent>
 */
const [dir = "coverage", floorText = "85"] = Deno.args;
const floor = Number(floorText);
let dropped = 0;
for (const entry of Deno.readDirSync(dir)) {
  try {
    JSON.parse(Deno.readTextFileSync(`${dir}/${entry.name}`));
  } catch {
    Deno.removeSync(`${dir}/${entry.name}`);
    dropped++;
  }
}
const root = new URL("../", import.meta.url).href.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const report = new Deno.Command(Deno.execPath(), {
  args: ["coverage", dir, `--include=^${root}(src/|main\\.ts)`],
  env: { NO_COLOR: "1" },
}).outputSync();
const text = new TextDecoder().decode(report.stdout);
const total = text.split("\n").find((line) => line.includes("All files"));
const line = Number(total?.split("|").map((cell) => cell.trim()).filter(Boolean).at(-1));
if (!report.success || !Number.isFinite(line)) {
  console.log(new TextDecoder().decode(report.stderr));
  console.log("coverage: no figure (see above)");
  Deno.exit(1);
}
console.log(text.trim());
console.log(
  `coverage: ${line}% of lines in src/ and main.ts (floor ${floor}%)${
    dropped ? `; ${dropped} files cut short by a kill left out` : ""
  }`,
);
if (line < floor) Deno.exit(1);
