/**
 * The official MCP conformance suites (npm `@modelcontextprotocol/conformance`, 0.1.x and the
 * 0.2.0 line, installed with the Node 22 they need by tests/peers/setup.ts) against a real Klym,
 * for the scenarios of every capability Klym declares (tools, logging, tasks; Streamable HTTP
 * sessions; protocol 2026-07-28). A check the suite itself marks untestable, because it needs the
 * reference server's test-only tools (`test_logging_tool`, …), is not counted against Klym; the
 * same protocol steps run against Klym's own tools in tests/server/native_tasks_test.ts.
 */
import assert from "node:assert/strict";
import { PEERS_DIR } from "./peers/setup.ts";
import { startKlym } from "./helpers/klym_process.ts";

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
  ],
};

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

for (const [name, scenarios] of Object.entries(SUITES)) {
  Deno.test(`${name}: Klym passes the server scenarios of what it declares`, async (t) => {
    await using klym = await startKlym();
    for (const scenario of scenarios) {
      await t.step(scenario, async () => {
        const checks = await runScenario(name, scenario, klym.url);
        const failed = checks.filter((c) =>
          c.status === "FAILURE" && !c.details?.untestable &&
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
