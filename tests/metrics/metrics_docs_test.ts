/**
 * The metrics Klym serves, docs/metrics.md, the README's "Monitoring" section and the Grafana
 * dashboard agree: every metric is documented, and the dashboard queries only metrics that exist.
 */
import assert from "node:assert/strict";
import { KlymMetrics } from "../../src/metrics/klym_metrics.ts";
import { IDLE_SOURCES } from "../helpers/metric_sources.ts";
const REPO = new URL("../../", import.meta.url).pathname;

/** Each metric family Klym serves, with its type, read from the text format's TYPE lines. */
async function families(): Promise<Map<string, string>> {
  const metrics = new KlymMetrics({
    maxLabelValues: 10,
    version: "test",
    sources: IDLE_SOURCES,
  });
  const text = (await metrics.text()).body;
  return new Map(
    [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!] as [string, string]),
  );
}

/** A series name as a query uses it: a histogram's `_bucket`, `_sum` and `_count` are its family's. */
function family(name: string, known: Map<string, string>): string {
  const base = name.replace(/_(bucket|sum|count)$/, "");
  return base !== name && known.get(base) === "histogram" ? base : name;
}

Deno.test("docs/metrics.md has one row per metric Klym serves, and no other", async () => {
  const known = await families();
  const page = Deno.readTextFileSync(`${REPO}docs/metrics.md`);
  const rows = new Set([...page.matchAll(/^\| `(klym_[a-z0-9_]+)`/gm)].map((m) => m[1]!));
  assert.deepEqual([...known.keys()].filter((n) => !rows.has(n)), [], "metrics with no row");
  assert.deepEqual([...rows].filter((n) => !known.has(n)), [], "rows of no metric");
});

Deno.test("the README's Monitoring section names every metric", async () => {
  const readme = Deno.readTextFileSync(`${REPO}README.md`);
  const section = readme.split(/^## /m).find((s) => s.startsWith("Monitoring\n"));
  assert.ok(section, "README.md has a Monitoring section");
  const missing = [...(await families()).keys()].filter((n) => !section.includes(`\`${n}\``));
  assert.deepEqual(missing, []);
});

Deno.test("docs/grafana_dashboard.json is a dashboard whose every query names metrics Klym serves", async () => {
  const known = await families();
  const dashboard = JSON.parse(Deno.readTextFileSync(`${REPO}docs/grafana_dashboard.json`));
  assert.equal(typeof dashboard.title, "string");
  assert.ok(Array.isArray(dashboard.panels) && dashboard.panels.length > 0);
  const exprs: string[] = dashboard.panels.flatMap((p: { targets?: { expr: string }[] }) =>
    (p.targets ?? []).map((t) => t.expr)
  );
  assert.ok(exprs.length >= dashboard.panels.length, "every panel queries something");
  const queried = new Set(
    exprs.flatMap((e) => [...e.matchAll(/\bklym_[a-z0-9_]+/g)].map((m) => m[0])),
  );
  const unknown = [...queried].filter((n) => !known.has(family(n, known)));
  assert.deepEqual(unknown, [], "queried metrics Klym does not serve");
  // The dashboard covers the topics of the issue: tasks, grynya, the model, the journal.
  for (const topic of ["klym_tasks_", "klym_grynya_", "klym_model_", "klym_journal_"]) {
    assert.ok([...queried].some((n) => n.startsWith(topic)), `a panel on ${topic}*`);
  }
});
