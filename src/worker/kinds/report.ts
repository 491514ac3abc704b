// deno-lint-ignore-file no-console -- task code: console is how a task writes its log
/**
 * Kind `report`, the proof of life: connect to grynya, list what it offers, log it, save the
 * report into the graph, and answer with the facts.
 */
import type { TaskContext } from "../task_context.ts";
import { summarizeNames } from "../../text.ts";

export const REPORT_TEXT = "Бачу базу та інструменти, полет нормальний";

export async function report(ctx: TaskContext) {
  const timings: Record<string, number> = {};
  const timed = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      timings[`${name}_ms`] = Math.round((performance.now() - t0) * 10) / 10;
    }
  };
  const grynya = await timed("connect", () => ctx.grynya());
  const info = grynya.info;
  console.log(`connected to grynya ${info.name} ${info.version} over ${info.transport}`);
  ctx.progress(1, 3, "connected");

  const caps = grynya.capabilities() ?? {};
  const { tools } = await timed("list_tools", () => grynya.listTools());
  console.log(`grynya offers ${summarizeNames("tools", tools.map((t) => t.name))}`);
  const resources = caps.resources
    ? (await timed("list_resources", () => grynya.listResources())).resources.map((r) => r.uri)
    : [];
  const prompts = caps.prompts
    ? (await timed("list_prompts", () => grynya.listPrompts())).prompts.map((p) => p.name)
    : [];
  if (resources.length) console.log(`grynya offers ${summarizeNames("resources", resources)}`);
  if (prompts.length) console.log(`grynya offers ${summarizeNames("prompts", prompts)}`);
  ctx.progress(2, 3, "listed");
  const strategy = await timed("write_strategy", () => grynya.writeStrategy());
  if (strategy.ok) {
    console.log(
      `write strategy: ${strategy.name} (${strategy.source}), calling ${
        strategy.tools?.join(", ")
      }`,
    );
  } else {
    console.error(`no write strategy: ${strategy.error?.message}`);
    if (strategy.hint) console.error(`next: ${strategy.hint}`);
  }

  const facts = {
    server: { name: info.name, version: info.version },
    transport: info.transport,
    tools: tools.map((t) => t.name),
    resources,
    prompts,
  };
  const saved = await timed("save", () => ctx.save(`${REPORT_TEXT}: ${JSON.stringify(facts)}`));
  if (saved.ok) console.log(`report saved to the graph with ${saved.tools.join(" + ")}`);
  else console.error(`the report was not saved: ${saved.error?.message}`);
  ctx.progress(3, 3, saved.ok ? "saved" : "not saved");
  console.log(REPORT_TEXT);
  const write_strategy = strategy.ok
    ? { name: strategy.name, source: strategy.source, tools: strategy.tools }
    : { name: null, source: strategy.source };
  // A first run against any graph server succeeds and says what to do next: a save that did not
  // land is in `saved` (ok: false, the error, and a template drafted from grynya's tools).
  return { text: REPORT_TEXT, ...facts, write_strategy, saved, timings };
}
