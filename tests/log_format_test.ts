/** Klym's own log: human lines on a terminal, JSON lines elsewhere, and KLYM_LOG_FORMAT. */
import assert from "node:assert/strict";
import type { LogRecord } from "@logtape/logtape";
import { chooseLogFormat, inert, prettyFormatter } from "../src/log_format.ts";
import { loadConfig } from "../src/config.ts";
import { isKlymError } from "../src/errors.ts";
import { OWN_SESSION, servingUrl } from "./helpers/klym_process.ts";

function record(message: unknown[], properties: Record<string, unknown> = {}): LogRecord {
  return {
    category: ["klym", "tasks"],
    level: "info",
    message,
    rawMessage: "",
    timestamp: Date.UTC(2026, 10, 24, 4, 14, 35, 747),
    properties,
  };
}

Deno.test("the pretty format is one readable line, values unquoted and control characters escaped", () => {
  const line = prettyFormatter(false)(
    record(["Task ", "t_1\x1b[2J", " (", "hello", ") ", "succeeded", ""]),
  );
  assert.equal(line, "04:14:35.747 INFO  tasks Task t_1\\x1b[2J (hello) succeeded\n");
  const colored = prettyFormatter(true)(record(["hi"]));
  assert.ok(colored.includes("\x1b[32mINFO "), JSON.stringify(colored));
});

Deno.test("the start banner lists its rows aligned under the line", () => {
  const text = prettyFormatter(false)(
    record(["Serving MCP at ", "http://127.0.0.1:8765", "/mcp"], {
      banner: [["Klym", "0.2.0"], ["Dashboard", "http://127.0.0.1:8765/ui"]],
    }),
  );
  assert.equal(
    text,
    "04:14:35.747 INFO  tasks Serving MCP at http://127.0.0.1:8765/mcp\n" +
      "  Klym       0.2.0\n" +
      "  Dashboard  http://127.0.0.1:8765/ui\n",
  );
  assert.equal(servingUrl(text.split("\n")[0]!), "http://127.0.0.1:8765");
  assert.equal(
    servingUrl(
      '{"message":"Serving MCP at \\"http://[::1]:9\\"/mcp","properties":{"url":"http://[::1]:9"}}',
    ),
    "http://[::1]:9",
  );
});

Deno.test("KLYM_LOG_FORMAT chooses the format; unset, a terminal gets pretty lines", () => {
  assert.equal(chooseLogFormat(undefined, true), "pretty");
  assert.equal(chooseLogFormat(undefined, false), "json");
  assert.equal(chooseLogFormat("json", true), "json");
  assert.equal(loadConfig({ KLYM_LOG_FORMAT: "pretty" }, []).logFormat, "pretty");
  assert.throws(
    () => loadConfig({ KLYM_LOG_FORMAT: "yaml" }, []),
    (e) => isKlymError(e, "CONFIG_INVALID") && /KLYM_LOG_FORMAT/.test(e.message),
  );
  assert.equal(inert("a\tb\u009bc"), "a\tb\\x9bc");
});

Deno.test("an invalid KLYM_LOG_FORMAT stops Klym with exit code 2 naming the variable", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../main.ts", import.meta.url).pathname, "--port", "0"],
    env: { KLYM_LOG_FORMAT: "fancy" },
    stdin: "null",
    stdout: "null",
    ...OWN_SESSION,
  }).output();
  assert.equal(out.code, 2);
  assert.match(new TextDecoder().decode(out.stderr), /KLYM_LOG_FORMAT/);
});
