/**
 * The official MCP conformance suites (npm `@modelcontextprotocol/conformance`, 0.1.x and the
 * 0.2.0 line, installed with the Node 22 they need by tests/peers/setup.ts) against a real Klym,
 * for the scenarios of every capability Klym declares (tools, logging, tasks; Streamable HTTP
 * sessions; protocol 2026-07-28 and its Tasks extension). A check the suite itself marks
 * untestable, or one that needs the reference server's test-only tools (`test_logging_tool`,
 * `slow_compute`, …), is not counted against Klym; the same protocol steps run against Klym's own
 * tools in tests/mcp/era_2025_test.ts and tests/mcp/era_2026_test.ts.
 */
import assert from "node:assert/strict";
import { PEERS_DIR } from "./peers/setup.ts";
import { OWN_SESSION, startKlym } from "./helpers/klym_process.ts";

const NODE = `${PEERS_DIR}npm/node_modules/node/bin/node`;
const suite = (name: string) => `${PEERS_DIR}npm/node_modules/${name}/dist/index.js`;

const SUITES: Record<string, string[]> = {
  "conformance-0.1": [
    "server-initialize",
    "logging-set-level",
    "ping",
    "tools-list",
    "server-sse-polling",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
  ],
  "conformance-0.2": [
    "server-initialize",
    "server-session-lifecycle",
    "server-stateless",
    "logging-set-level",
    "ping",
    "tools-list",
    "server-sse-polling",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
    "caching",
    "http-header-validation",
    "tasks-lifecycle",
    "tasks-capability-negotiation",
    "tasks-wire-fields",
    "tasks-request-state-removal",
    "tasks-mrtr-input",
    "tasks-request-headers",
    "tasks-dispatch-and-envelope",
    "tasks-required-task-error",
    "tasks-mrtr-composition",
    // Input-required results as llm_generate uses them (one sampling request, no requestState:
    // Klym keeps no state across rounds, so the requestState and multi-round scenarios and the
    // prompts one have nothing of Klym's to test).
    "input-required-result-basic-sampling",
    "input-required-result-capability-check",
    "input-required-result-result-type",
    "input-required-result-missing-input-response",
    "input-required-result-unsupported-methods",
    "input-required-result-validate-input",
  ],
};

/**
 * The reference server's test-only tools. A check that fails only because Klym has no such tool
 * (or because an earlier step could not create a task with one) is not counted; the same steps
 * run against Klym's own tools in tests/mcp/era_2026_test.ts.
 */
const FIXTURE_TOOLS = [
  "greet",
  "slow_compute",
  "failing_job",
  "protocol_error_job",
  "confirm_delete",
  "multi_input",
  "test_tool_with_task",
  "test_input_required_result_\\w+",
];
const NEEDS_FIXTURE = new RegExp(
  `Tool "?(${FIXTURE_TOOLS.join("|")})"? not found|for (${FIXTURE_TOOLS.join("|")}) returned|` +
    "no task was created by the preceding step|fixture from Check \\d+ unavailable",
);

/** Capabilities Klym does not declare; a check about them is not Klym's to pass. */
const UNDECLARED = /prompts|resources|completion/;

interface Check {
  id: string;
  status: string;
  errorMessage?: string;
  details?: { untestable?: boolean };
}

async function runScenario(name: string, scenario: string, url: string): Promise<Check[]> {
  const out = await Deno.makeTempDir({ prefix: "klym-conformance-" });
  try {
    const { code, stdout, stderr } = await new Deno.Command(NODE, {
      args: [suite(name), "server", "--url", `${url}/mcp`, "--scenario", scenario, "-o", out],
      stdout: "piped",
      stderr: "piped",
      ...OWN_SESSION,
    }).output();
    const checks: Check[] = [];
    for await (const entry of Deno.readDir(out)) {
      const file = `${out}/${entry.name}/checks.json`;
      checks.push(...JSON.parse(await Deno.readTextFile(file)) as Check[]);
    }
    if (checks.length === 0 && code !== 0) {
      const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
      throw new Error(`${name} ${scenario} wrote no results (exit ${code}):\n${text.slice(-2000)}`);
    }
    return checks;
  } finally {
    await Deno.remove(out, { recursive: true });
  }
}

/** How many scenarios run at once against the one server: each is a Node process of its own. */
const SCENARIOS_AT_ONCE = 4;

/** Runs `scenarios` against `url`, `SCENARIOS_AT_ONCE` at a time: each one's checks or error. */
async function runAll(
  name: string,
  scenarios: string[],
  url: string,
): Promise<Map<string, Check[] | Error>> {
  const results = new Map<string, Check[] | Error>();
  const waiting = [...scenarios];
  const lane = async () => {
    for (let scenario = waiting.shift(); scenario; scenario = waiting.shift()) {
      results.set(
        scenario,
        await runScenario(name, scenario, url).catch((e) => e instanceof Error ? e : Error(e)),
      );
    }
  };
  await Promise.all(Array.from({ length: SCENARIOS_AT_ONCE }, lane));
  return results;
}

for (const [name, scenarios] of Object.entries(SUITES)) {
  Deno.test(`${name}: Klym passes the server scenarios of what it declares`, async (t) => {
    await using klym = await startKlym();
    // Every scenario opens sessions of its own: they run side by side, then each step reads its
    // scenario's checks.
    const results = await runAll(name, scenarios, klym.url);
    for (const scenario of scenarios) {
      await t.step(scenario, () => {
        const checks = results.get(scenario)!;
        if (checks instanceof Error) throw checks;
        const failed = checks.filter((c) =>
          c.status === "FAILURE" && !c.details?.untestable &&
          !NEEDS_FIXTURE.test(c.errorMessage ?? "") &&
          !(scenario === "caching" && UNDECLARED.test(c.id))
        );
        assert.deepEqual(
          failed.map((c) => `${c.id}: ${c.errorMessage ?? ""}`),
          [],
          `${name} ${scenario}`,
        );
        if (scenario !== "server-sse-polling") {
          assert.ok(checks.some((c) => c.status === "SUCCESS"), `${scenario} passed some check`);
        }
      });
    }
  });
}
