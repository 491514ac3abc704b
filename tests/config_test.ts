import assert from "node:assert/strict";
import { isKlymError } from "../src/errors.ts";
import { ENV_NAMES, FLAGS, grynyaSettings, loadConfig, OTHER_ENV_NAMES } from "../src/config.ts";
import { OWN_SESSION, startKlym } from "./helpers/klym_process.ts";
import { ModelCatalog } from "../src/llm/model_catalog.ts";

Deno.test("config has the documented defaults", () => {
  const c = loadConfig({}, []);
  assert.equal(c.host, "127.0.0.1");
  assert.equal(c.port, 8765);
  assert.equal(c.grynyaUrl, "http://127.0.0.1:8000/sse");
  assert.equal(c.maxConcurrent, 8);
  assert.equal(c.defaultTimeoutS, 600);
  assert.equal(c.maxTimeoutS, 3600);
  assert.equal(c.logLimitBytes, 1048576);
  assert.equal(c.retentionS, 3600);
  assert.equal(c.taskMemoryMb, 512);
  assert.equal(c.stdio, false);
});

Deno.test("flags win over env, in both --flag value and --flag=value forms", () => {
  const c = loadConfig({ KLYM_PORT: "1000", KLYM_HOST: "localhost" }, [
    "--port",
    "2000",
    "--grynya-url=http://localhost:9000/sse",
    "--stdio",
  ]);
  assert.equal(c.port, 2000);
  assert.equal(c.host, "localhost");
  assert.equal(c.grynyaUrl, "http://localhost:9000/sse");
  assert.equal(c.stdio, true);
});

Deno.test("a bad value names the variable and the rule", () => {
  assert.throws(() => loadConfig({ KLYM_MAX_CONCURRENT: "0" }, []), (e: Error) => {
    assert.ok(isKlymError(e, "CONFIG_INVALID"), String(e));
    assert.match(e.message, /KLYM_MAX_CONCURRENT: must be between 1 and 1024, received 0/);
    return true;
  });
  assert.throws(() => loadConfig({ KLYM_PORT: "seventy" }, []), /KLYM_PORT/);
  assert.throws(() => loadConfig({ KLYM_GRYNYA_URL: "ftp://x" }, []), /KLYM_GRYNYA_URL/);
  assert.throws(() => loadConfig({}, ["--nope"]), /Unknown option "--nope"/);
  assert.throws(() => loadConfig({}, ["--port"]), /"--port" needs a value/);
});

Deno.test("the shared store's knobs accept the values at their edges", () => {
  const config = loadConfig({
    KLYM_STATE: "postgres://klym@db.internal:5432/klym",
    KLYM_NODE_ID: "n".repeat(128),
    KLYM_NODE_URL: "http://node-2.internal:8765",
    KLYM_NODE_LEASE_MS: "1000",
    KLYM_NODE_RENEW_MS: "500",
    KLYM_SHARED_BUFFER_BYTES: "1048576",
    KLYM_SHARED_WAIT_MS: "100",
    KLYM_MAX_ATTEMPTS: "100",
  }, []);
  assert.equal(config.nodeLeaseMs, 1000);
  assert.equal(config.nodeRenewMs, 500);
  assert.equal(config.sharedBufferBytes, 1024 ** 2);
  assert.equal(config.maxAttempts, 100);
  const defaults = loadConfig({}, []);
  assert.deepEqual(
    [defaults.nodeLeaseMs, defaults.nodeRenewMs, defaults.sharedWaitMs, defaults.maxAttempts],
    [10_000, 1000, 5000, 3],
  );
});

Deno.test("every invalid value is a CONFIG_INVALID error naming its variable or flag", () => {
  const cases: [Record<string, string>, string[], RegExp][] = [
    [{}, ["--port="], /Option "--port" needs a value/],
    [{}, ["--port", "--stdio"], /Option "--port" needs a value/],
    [{}, ["--tasks-dir"], /Option "--tasks-dir" needs a value/],
    [{}, ["--port", "-1"], /--port: must be between 0 and 65535, received -1/],
    [{}, ["--port=80x"], /--port: must be a whole number, received "80x"/],
    [{}, ["--max-concurrent=0"], /--max-concurrent: must be between 1 and 1024/],
    [{}, ["--grynya-transport", "ws"], /--grynya-transport: .*"auto"\|"sse"\|"http"/],
    [{}, ["--stdio=yes"], /Option "--stdio" takes no value/],
    [{}, ["--standalone=1"], /Option "--standalone" takes no value/],
    [{ KLYM_STANDALONE: "yes" }, [], /KLYM_STANDALONE: must be 1, true, 0 or false/],
    [{ KLYM_SERVICE_IDLE_S: "-1" }, [], /KLYM_SERVICE_IDLE_S: must be between 0 and 604800/],
    [{ KLYM_SERVICE_IDLE_S: "604801" }, [], /KLYM_SERVICE_IDLE_S: must be between 0 and/],
    [{ KLYM_SERVICE_START_S: "0" }, [], /KLYM_SERVICE_START_S: must be between 1 and 600/],
    [{ KLYM_SERVICE_START_S: "601" }, [], /KLYM_SERVICE_START_S: must be between 1 and 600/],
    [{ KLYM_NODE_ID: "a b" }, [], /KLYM_NODE_ID: must be 1-128 letters/],
    [{ KLYM_NODE_ID: "n".repeat(129) }, [], /KLYM_NODE_ID: must be 1-128 letters/],
    [{ KLYM_NODE_URL: "node-2:8765" }, [], /KLYM_NODE_URL: must be an http:\/\/ or https:\/\/ URL/],
    [{ KLYM_NODE_LEASE_MS: "999" }, [], /KLYM_NODE_LEASE_MS: must be between 1000 and 60000/],
    [{ KLYM_NODE_LEASE_MS: "60001" }, [], /KLYM_NODE_LEASE_MS: must be between 1000 and 60000/],
    [{ KLYM_NODE_RENEW_MS: "99" }, [], /KLYM_NODE_RENEW_MS: must be between 100 and 30000/],
    [
      { KLYM_NODE_LEASE_MS: "2000", KLYM_NODE_RENEW_MS: "1001" },
      [],
      /KLYM_NODE_RENEW_MS: must be at most half of KLYM_NODE_LEASE_MS \(2000\).*received 1001/,
    ],
    [{ KLYM_SHARED_BUFFER_BYTES: "1048575" }, [], /KLYM_SHARED_BUFFER_BYTES: must be between/],
    [{ KLYM_SHARED_WAIT_MS: "99" }, [], /KLYM_SHARED_WAIT_MS: must be between 100 and 60000/],
    [{ KLYM_MAX_ATTEMPTS: "0" }, [], /KLYM_MAX_ATTEMPTS: must be between 1 and 100/],
    [{ KLYM_MAX_ATTEMPTS: "101" }, [], /KLYM_MAX_ATTEMPTS: must be between 1 and 100/],
    [{ KLYM_STATE: "postgres://" }, [], /KLYM_STATE: must be a URL such as postgres:\/\/user@host/],
    [
      { KLYM_METRICS_MAX_LABEL_VALUES: "0" },
      [],
      /KLYM_METRICS_MAX_LABEL_VALUES: must be between 1/,
    ],
    [{ KLYM_METRICS_MAX_LABEL_VALUES: "10001" }, [], /KLYM_METRICS_MAX_LABEL_VALUES: must be betw/],
    [
      { KLYM_SPEND_RETENTION_DAYS: "0" },
      [],
      /KLYM_SPEND_RETENTION_DAYS: must be between 1 and 3660/,
    ],
    [{ KLYM_SPEND_RETENTION_DAYS: "3661" }, [], /KLYM_SPEND_RETENTION_DAYS: must be between 1 and/],
    [{ KLYM_URLS: "http://x" }, [], /KLYM_URLS is not a Klym variable; did you mean KLYM_URL\?/],
    [{}, ["--prot", "80"], /Unknown option "--prot"; did you mean --port\?/],
    [{ KLYM_PORT: "" }, [], /KLYM_PORT is set but empty/],
    [{ KLYM_TASKS_DIR: "" }, [], /KLYM_TASKS_DIR is set but empty/],
    [{ KLYM_PORT: "1e3" }, [], /KLYM_PORT: must be a whole number, received "1e3"/],
    [{ KLYM_PORT: " 80" }, [], /KLYM_PORT: must be a whole number/],
    [{ KLYM_PORT: "0x50" }, [], /KLYM_PORT: must be a whole number/],
    [{ KLYM_MAX_CONCURRENT: "1.5" }, [], /KLYM_MAX_CONCURRENT: must be a whole number/],
    [{ KLYM_RETENTION_S: "0" }, [], /KLYM_RETENTION_S: must be between 1 and/],
    [{ KLYM_CANCEL_ACK_MS: "0" }, [], /KLYM_CANCEL_ACK_MS: must be between 1 and 60000/],
    [{ KLYM_CANCEL_ACK_MS: "60001" }, [], /KLYM_CANCEL_ACK_MS: must be between 1 and 60000/],
    [{ KLYM_TASK_POLL_LEASE_S: "-1" }, [], /KLYM_TASK_POLL_LEASE_S: must be/],
    [{ KLYM_IDLE_HOSTS: "-1" }, [], /KLYM_IDLE_HOSTS: must be between 0 and 1024, received -1/],
    [{ KLYM_IDLE_HOSTS: "1025" }, [], /KLYM_IDLE_HOSTS: must be between 0 and 1024/],
    [{ KLYM_IDLE_HOST_S: "0" }, [], /KLYM_IDLE_HOST_S: must be between 1 and 86400, received 0/],
    [{ KLYM_IDLE_HOST_CPU_MS: "0" }, [], /KLYM_IDLE_HOST_CPU_MS: must be between 1 and 86400000/],
    [{ KLYM_IDLE_HOST_CPU_MS: "86400001" }, [], /KLYM_IDLE_HOST_CPU_MS: must be between 1 and/],
    [{ KLYM_STDIO: "yes" }, [], /KLYM_STDIO: must be 1, true, 0 or false, received "yes"/],
    [{ KLYM_STDIO: "TRUE" }, [], /KLYM_STDIO: must be 1, true, 0 or false/],
    [{ KLYM_LOG_LEVEL: "warn" }, [], /KLYM_LOG_LEVEL: .*"warning"/],
    [{ KLYM_GRYNYA_TRANSPORT: "ws" }, [], /KLYM_GRYNYA_TRANSPORT: /],
    [{ KLYM_GRYNYA_HEADERS: "[]" }, [], /KLYM_GRYNYA_HEADERS: /],
    [{ KLYM_OPENAI_COMPATIBLE_URL: "localhost:11434" }, [], /KLYM_OPENAI_COMPATIBLE_URL: /],
    [{ KLYM_AUTH_TOKEN: "short" }, [], /KLYM_AUTH_TOKEN: must be at least 16 characters/],
    [{ KLYM_AUTH_FAILURES_BURST: "0" }, [], /KLYM_AUTH_FAILURES_BURST: must be between 1 and/],
    [
      { KLYM_AUTH_FAILURES_PER_MIN: "100001" },
      [],
      /KLYM_AUTH_FAILURES_PER_MIN: must be between 1 and 100000, received 100001/,
    ],
    [
      { KLYM_AUTH_FAILURES_ALL_PER_MIN: "0" },
      [],
      /KLYM_AUTH_FAILURES_ALL_PER_MIN: must be between/,
    ],
    [
      { KLYM_MAX_CONCURENT: "3" },
      [],
      /KLYM_MAX_CONCURENT is not a Klym variable; did you mean KLYM_MAX_CONCURRENT\?/,
    ],
    [{ KLYM_LOGLEVEL: "info" }, [], /KLYM_LOGLEVEL .*did you mean KLYM_LOG_LEVEL\?/],
    [
      { KLYM_MAX_QUEUED: "10", KLYM_MAX_QUEUED_TOTAL: "9" },
      [],
      /KLYM_MAX_QUEUED_TOTAL: must be at least KLYM_MAX_QUEUED \(10\), one principal's share, received 9/,
    ],
    [
      { KLYM_MAX_QUEUED_BYTES: "327679" },
      [],
      /KLYM_MAX_QUEUED_BYTES: must be at least KLYM_MAX_PROMPT_BYTES \+ KLYM_MAX_PARAMS_BYTES \(327680\), so that a task with the largest inputs fits, received 327679/,
    ],
    [
      { KLYM_MAX_QUEUED_BYTES: "400000", KLYM_MAX_QUEUED_BYTES_TOTAL: "399999" },
      [],
      /KLYM_MAX_QUEUED_BYTES_TOTAL: must be at least KLYM_MAX_QUEUED_BYTES \(400000\)/,
    ],
    [
      { KLYM_MAX_RUNNING_PER_PRINCIPAL: "0" },
      [],
      /KLYM_MAX_RUNNING_PER_PRINCIPAL: must be between 1/,
    ],
    [
      { KLYM_MAX_SESSIONS_PER_PRINCIPAL: "0" },
      [],
      /KLYM_MAX_SESSIONS_PER_PRINCIPAL: must be between/,
    ],
    [
      { KLYM_ADMINS: "alice" },
      [],
      /KLYM_ADMINS: names "alice", which is not a configured principal; name one of local/,
    ],
    [
      { KLYM_AUTH_TOKENS: "alice:0123456789abcdef", KLYM_ADMINS: "alice,carol" },
      [],
      /KLYM_ADMINS: names "carol", which is not a configured principal; name one of alice \(/,
    ],
    [
      { KLYM_AUTH_TOKEN: "0123456789abcdef", KLYM_ADMINS: "local" },
      [],
      /KLYM_ADMINS: names "local", .*name one of default \(/,
    ],
    [
      { KLYM_AUTH_TOKEN: "0123456789abcdef", KLYM_AUTH_TOKENS: "default:fedcba9876543210" },
      [],
      /KLYM_AUTH_TOKENS: each token and each name must appear once \(KLYM_AUTH_TOKEN included\)/,
    ],
    [{ KLYM_ADMINS: "local,,x" }, [], /KLYM_ADMINS has an empty name/],
    [{ KLYM_ADMINS: " " }, [], /KLYM_ADMINS has an empty name/],
    [{ KLYM_UI_MAX_LOGINS: "0" }, [], /KLYM_UI_MAX_LOGINS: must be between 1 and 100000/],
    [{ KLYM_UI_MAX_LOGINS_TOTAL: "0" }, [], /KLYM_UI_MAX_LOGINS_TOTAL: must be between 1 and/],
    [{ KLYM_UI_MAX_STREAMS: "10001" }, [], /KLYM_UI_MAX_STREAMS: must be between 1 and 10000/],
    [{ KLYM_UI_MAX_STREAMS_TOTAL: "x" }, [], /KLYM_UI_MAX_STREAMS_TOTAL: must be a whole number/],
  ];
  for (const [env, args, pattern] of cases) {
    const what = JSON.stringify({ env, args });
    assert.throws(() => loadConfig(env, args), (e: Error) => {
      assert.ok(isKlymError(e, "CONFIG_INVALID"), `${what}: ${e} is a CONFIG_INVALID error`);
      assert.match(e.message, pattern, what);
      return true;
    }, what);
  }
});

Deno.test("per-principal limits default to a single user's share, totals to several", () => {
  const c = loadConfig({}, []);
  assert.deepEqual(
    [c.maxQueued, c.maxQueuedTotal, c.maxQueuedBytes, c.maxQueuedBytesTotal],
    [1000, 10_000, 32 * 1024 ** 2, 128 * 1024 ** 2],
  );
  assert.deepEqual([c.maxRunningPerPrincipal, c.maxSessionsPerPrincipal], [8, 256]);
  const set = loadConfig({
    KLYM_MAX_QUEUED: "7",
    KLYM_MAX_QUEUED_BYTES: "400000",
    KLYM_MAX_CONCURRENT: "3",
    KLYM_MAX_SESSIONS: "5",
  }, []);
  assert.deepEqual(
    [set.maxQueuedTotal, set.maxQueuedBytesTotal, set.maxRunningPerPrincipal],
    [70, 1_600_000, 3],
  );
  assert.equal(set.maxSessionsPerPrincipal, 5);
});

Deno.test("booleans are exactly 1, true, 0 or false; the log level is one of six", () => {
  for (const [text, value] of [["1", true], ["true", true], ["0", false], ["false", false]]) {
    assert.equal(loadConfig({ KLYM_STDIO: String(text) }, []).stdio, value, String(text));
  }
  assert.equal(loadConfig({}, []).logLevel, "info");
  for (const level of ["trace", "debug", "info", "warning", "error", "fatal"]) {
    assert.equal(loadConfig({ KLYM_LOG_LEVEL: level }, []).logLevel, level);
  }
});

Deno.test("every problem is reported at once", () => {
  assert.throws(
    () => loadConfig({ KLYM_PORT: "x", KLYM_STDIO: "on", KLYM_MAX_QUEUD: "1" }, ["--host="]),
    (e: Error) => {
      for (const name of ["KLYM_PORT", "KLYM_STDIO", "KLYM_MAX_QUEUD", "--host"]) {
        assert.match(e.message, new RegExp(name));
      }
      return true;
    },
  );
});

Deno.test("main.ts exits 2 with a message naming a bad variable, before it logs anything", async () => {
  const main = new URL("../main.ts", import.meta.url).pathname;
  const run = async (env: Record<string, string>, args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--unstable-worker-options", main, ...args],
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      ...OWN_SESSION,
    }).output();
    return {
      code: out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
    };
  };
  const typo = await run({ KLYM_MAX_CONCURENT: "3" }, ["--port", "0"]);
  assert.equal(typo.code, 2, typo.stderr);
  assert.equal(typo.stdout, "");
  assert.equal(
    typo.stderr.trim(),
    "klym: Invalid configuration: KLYM_MAX_CONCURENT is not a Klym variable; " +
      "did you mean KLYM_MAX_CONCURRENT? (docs/configuration.md lists them all)",
  );
  const level = await run({ KLYM_LOG_LEVEL: "warn" }, ["--port", "0"]);
  assert.equal(level.code, 2, level.stderr);
  assert.match(level.stderr, /^klym: Invalid configuration: KLYM_LOG_LEVEL: /);
  const admins = await run(
    { KLYM_AUTH_TOKENS: "alice:0123456789abcdef", KLYM_ADMINS: "mallory" },
    ["--port", "0"],
  );
  assert.equal(admins.code, 2, admins.stderr);
  assert.match(admins.stderr, /^klym: Invalid configuration: KLYM_ADMINS: names "mallory"/);
  const flag = await run({}, ["--port="]);
  assert.equal(flag.code, 2, flag.stderr);
  assert.match(flag.stderr, /^klym: Invalid configuration: Option "--port" needs a value/);
  const version = await run({}, ["--version"]);
  assert.equal(version.code, 0, version.stderr);
  assert.match(version.stdout, /^klym \d+\.\d+\.\d+\S*\n$/);
});

const OTHERS_HEADING = /^## Variables other parts of Klym read$/m;

/** The configuration page the README links to (docs/configuration.md). */
function configurationPage(): string {
  return Deno.readTextFileSync(new URL("../docs/configuration.md", import.meta.url));
}

/** The configuration table: env name → { flag, default } per row. */
function readmeConfigTable(): Map<string, { flag: string; default: string }> {
  const page = configurationPage();
  assert.match(page, /^# Configuration$/m);
  const section = page.split(OTHERS_HEADING)[0]!;
  const rows = new Map<string, { flag: string; default: string }>();
  for (const line of section.split("\n")) {
    const cells = line.split("|").slice(1, -1).map((c) => c.trim());
    const env = cells[0]?.match(/^`(KLYM_[A-Z0-9_]+)`$/)?.[1];
    if (env) rows.set(env, { flag: cells[1] ?? "", default: cells[2] ?? "" });
  }
  return rows;
}

Deno.test("the configuration table (docs/configuration.md) documents every variable, and only those", () => {
  const documented = readmeConfigTable();
  const known = Object.values(ENV_NAMES);
  assert.ok(known.length >= 40);
  assert.deepEqual(
    known.filter((name) => !documented.has(name)),
    [],
    "variables missing from the configuration table",
  );
  assert.deepEqual(
    [...documented.keys()].filter((name) => !known.includes(name)),
    [],
    "configuration table rows naming no variable of the config",
  );
  // Flags: each row's flag is the one the config reads for that variable.
  for (const [flag, key] of Object.entries(FLAGS)) {
    assert.equal(documented.get(ENV_NAMES[key])?.flag, `\`${flag}\``, `${ENV_NAMES[key]} flag`);
  }
  // Defaults written as a plain value must be the config's own.
  const defaults = loadConfig({}, []) as Record<string, unknown>;
  for (const [key, name] of Object.entries(ENV_NAMES)) {
    const text = documented.get(name)!.default.match(/^`([^`]*)`$/)?.[1];
    if (text !== undefined) assert.equal(text, String(defaults[key]), `${name} default`);
  }
});

Deno.test("loading the config loads no model provider package", () => {
  const seen = new Set<string>();
  const external: string[] = [];
  const visit = (url: URL) => {
    if (seen.has(url.href)) return;
    seen.add(url.href);
    const text = Deno.readTextFileSync(url);
    // `from "…"` within the statement, or a bare `import "…"`: not a string in an export's body.
    const imports =
      /^\s*(?:import|export)\b[^"';]*?\bfrom\s*["']([^"']+)["']|^\s*import\s*["']([^"']+)["']/gm;
    for (const [, from, bare] of text.matchAll(imports)) {
      const spec = (from ?? bare)!;
      if (spec.startsWith(".")) visit(new URL(spec, url));
      else external.push(spec);
    }
  };
  visit(new URL("../src/config.ts", import.meta.url));
  assert.ok(seen.size >= 2, "followed the config's local imports");
  assert.deepEqual(external.filter((s) => s === "ai" || s.startsWith("@ai-sdk/")), []);
});

Deno.test("KLYM_ADMINS names configured principals; the dashboard's shares default to one user's", () => {
  const c = loadConfig({
    KLYM_AUTH_TOKEN: "0123456789abcdef",
    KLYM_AUTH_TOKENS: "alice:alice-token-0123456789,bob:bob-token-0123456789",
    KLYM_ADMINS: " alice , default",
  }, []);
  assert.deepEqual(c.admins, ["alice", "default"]);
  assert.deepEqual(loadConfig({ KLYM_ADMINS: "local" }, []).admins, ["local"]);
  const d = loadConfig({}, []);
  assert.deepEqual(d.admins, []);
  assert.deepEqual(
    [d.uiMaxLogins, d.uiMaxLoginsTotal, d.uiMaxStreams, d.uiMaxStreamsTotal],
    [64, 1024, 16, 64],
  );
  const edge = loadConfig({ KLYM_UI_MAX_LOGINS: "1", KLYM_UI_MAX_STREAMS: "10000" }, []);
  assert.deepEqual([edge.uiMaxLogins, edge.uiMaxStreams], [1, 10000]);
});

Deno.test("the default timeout may not exceed the maximum", () => {
  assert.equal(
    loadConfig({ KLYM_DEFAULT_TIMEOUT_S: "60", KLYM_MAX_TIMEOUT_S: "60" }, []).defaultTimeoutS,
    60,
  );
  assert.throws(
    () => loadConfig({ KLYM_DEFAULT_TIMEOUT_S: "61", KLYM_MAX_TIMEOUT_S: "60" }, []),
    /KLYM_DEFAULT_TIMEOUT_S: must not exceed KLYM_MAX_TIMEOUT_S \(60\)/,
  );
});

Deno.test("binding a non-loopback host requires an auth token", () => {
  assert.throws(() => loadConfig({ KLYM_HOST: "0.0.0.0" }, []), /KLYM_AUTH_TOKEN is required/);
  const c = loadConfig({ KLYM_HOST: "0.0.0.0", KLYM_AUTH_TOKEN: "0123456789abcdef" }, []);
  assert.equal(c.host, "0.0.0.0");
  assert.throws(
    () => loadConfig({ KLYM_HOST: "0.0.0.0", KLYM_AUTH_TOKEN: "short" }, []),
    /at least 16 characters/,
  );
  assert.equal(loadConfig({ KLYM_HOST: "127.0.0.2" }, []).host, "127.0.0.2");
});

Deno.test("models are checked at start: provider:model, known providers, a URL where needed", () => {
  assert.throws(
    () => loadConfig({ KLYM_MODEL: "gpt-4o" }, []),
    /KLYM_MODEL: Model "gpt-4o" must be written provider:model/,
  );
  assert.throws(
    () => loadConfig({ KLYM_MODEL: "acme:big" }, []),
    /unknown provider "acme"; known: openai, openai-compatible, ollama, anthropic, google/,
  );
  assert.throws(
    () => loadConfig({ KLYM_MODEL: "openai-compatible:qwen" }, []),
    /needs KLYM_OPENAI_COMPATIBLE_URL/,
  );
  assert.throws(() => loadConfig({ KLYM_MODELS: "openai:a,bad" }, []), /KLYM_MODELS: Model "bad"/);
  const c = loadConfig({
    KLYM_MODEL: "anthropic:claude-sonnet-4-5",
    KLYM_MODELS: "openai:gpt-4o-mini, google:gemini-2.5-flash, ollama:llama3.2",
  }, []);
  const catalog = new ModelCatalog(c, () => undefined);
  assert.deepEqual(catalog.list().map((m) => [m.id, m.provider, m.isDefault]), [
    ["anthropic:claude-sonnet-4-5", "anthropic", true],
    ["openai:gpt-4o-mini", "openai", false],
    ["google:gemini-2.5-flash", "google", false],
    ["ollama:llama3.2", "ollama", false],
  ]);
  assert.throws(
    () => catalog.get("openai:gpt-5"),
    /"openai:gpt-5" is not configured; configured: anthropic/,
  );
  assert.equal(catalog.get(undefined)?.id, "anthropic:claude-sonnet-4-5");
});

Deno.test("the grynya write template and headers are JSON, inline or from a file", () => {
  const template = {
    create: { tool: "write_node", arguments: { id: "{{task_id}}" } },
    append: { tool: "write_node", arguments: { id: "{{task_id}}", body: "{{text}}" } },
  };
  const file = Deno.makeTempFileSync({ suffix: ".json" });
  Deno.writeTextFileSync(file, JSON.stringify(template));
  assert.deepEqual(loadConfig({ KLYM_GRYNYA_WRITE: file }, []).grynyaWrite, {
    kind: "template",
    template,
  });
  assert.deepEqual(
    loadConfig({ KLYM_GRYNYA_WRITE: JSON.stringify(template) }, []).grynyaWrite,
    { kind: "template", template },
  );
  assert.deepEqual(loadConfig({}, []).grynyaWrite, { kind: "auto" });
  assert.deepEqual(loadConfig({ KLYM_GRYNYA_WRITE: "memory-linked" }, []).grynyaWrite, {
    kind: "preset",
    name: "memory-linked",
  });
  assert.throws(
    () => loadConfig({ KLYM_GRYNYA_WRITE: "memroy" }, []),
    /KLYM_GRYNYA_WRITE is "memroy", which is neither a preset \(auto, memory, memory-linked, remember, cypher\)/,
  );
  Deno.removeSync(file);
  assert.throws(
    () => loadConfig({ KLYM_GRYNYA_WRITE: "/nope.json" }, []),
    /KLYM_GRYNYA_WRITE names the file "\/nope.json", which cannot be read/,
  );
  assert.throws(
    () => loadConfig({ KLYM_GRYNYA_WRITE: '{"create": {}}' }, []),
    /KLYM_GRYNYA_WRITE is not a write template: create/,
  );
  assert.throws(
    () => loadConfig({ KLYM_GRYNYA_HEADERS: "{bad" }, []),
    /KLYM_GRYNYA_HEADERS is not valid JSON/,
  );
  const c = loadConfig({ KLYM_GRYNYA_HEADERS: '{"x-team": "a"}', KLYM_GRYNYA_TOKEN: "t0k" }, []);
  assert.deepEqual(grynyaSettings(c).headers, { "x-team": "a", authorization: "Bearer t0k" });
});

Deno.test("KLYM_GRYNYA_WRITE templates are checked at start: placeholders, splicing, step references", () => {
  const bad = (args: unknown, extra: Record<string, unknown> = {}) => () =>
    loadConfig({
      KLYM_GRYNYA_WRITE: JSON.stringify({ create: { tool: "t", arguments: args }, ...extra }),
    }, []);
  assert.throws(
    bad({ id: "{{taskId}}" }),
    /unknown placeholder \{\{taskId\}\}; did you mean \{\{task_id\}\}\?/,
  );
  assert.throws(
    bad({ query: "CREATE (n {text: '{{text}}'})" }),
    /KLYM_GRYNYA_WRITE: create \(t\) at \$.query: \{\{text\}\} must be the whole string/,
  );
  assert.throws(bad({ q: "{{value}} x" }), /\{\{value\}\} must be the whole string/);
  assert.throws(bad({ "{{text}}": 1 }), /not filled in object keys/);
  assert.throws(
    bad({ id: "{{steps.0.json.id}}" }),
    /refers to a step that does not come before it/,
  );
  assert.throws(
    bad({ sql: "{{text}}" }),
    /KLYM_GRYNYA_WRITE: create \(t\) at \$\.sql: \{\{text\}\} would be the whole argument, which grynya runs as code .*"unsafe_text_as_code": true/,
  );
  assert.throws(bad({ statements: ["{{value}}"] }), /at \$\.statements\[0\]: \{\{value\}\}/);
  assert.throws(bad({ a: 1 }, { success: "(" }), /"success" is not a valid regular expression/);
  assert.throws(bad({ a: 1 }, { extra: 1 }), /KLYM_GRYNYA_WRITE is not a write template/);
  // Safe scalars may sit inside longer strings; a whole-string placeholder is a JSON value.
  const ok = loadConfig({
    KLYM_GRYNYA_WRITE: JSON.stringify({
      create: [
        { tool: "a", arguments: { name: "task-{{task_id}}-{{seq}}", body: "{{text}}" } },
        {
          tool: "b",
          arguments: { id: "{{steps.0.structured.id}}", v: "{{value}}" },
          idempotent: true,
        },
        // Text as a query parameter is a value; text as the whole query only on purpose.
        { tool: "c", arguments: { query: "INSERT INTO t VALUES (?)", params: ["{{text}}"] } },
        { tool: "d", arguments: { sql: "{{text}}" }, unsafe_text_as_code: true },
      ],
    }),
  }, []);
  assert.equal(ok.grynyaWrite.kind, "template");
});

/** The variables of the configuration page's second table: the CLI's and the tests'. */
function readmeOtherVariables(): string[] {
  const section = configurationPage().split(OTHERS_HEADING)[1]!.split(/^##/m)[0]!;
  return section.split("\n").map((line) => line.match(/^\| `(KLYM_[A-Z0-9_]+)`/)?.[1])
    .filter((name): name is string => name !== undefined);
}

Deno.test("Klym's other variables (the CLI's, the tests') are documented and accepted by the server", () => {
  assert.deepEqual(readmeOtherVariables().sort(), Object.keys(OTHER_ENV_NAMES).sort());
  const env = { KLYM_URL: "http://127.0.0.1:1", KLYM_CHROMIUM: "/x", KLYM_SCREENSHOTS: "1" };
  assert.equal(loadConfig(env, []).port, 8765);
  // Neither table names a variable twice.
  const main = [...readmeConfigTable().keys()];
  assert.deepEqual(main.filter((name) => Object.hasOwn(OTHER_ENV_NAMES, name)), []);
});

Deno.test("KLYM_URL=… deno task start serves", async () => {
  await using klym = await startKlym({ KLYM_URL: "http://127.0.0.1:9", KLYM_CHROMIUM: "/none" });
  const health = await fetch(`${klym.url}/healthz`);
  assert.equal(health.status, 200);
  assert.equal((await health.json()).ok, true);
});

Deno.test("a setting an MCP bundle's host left as its placeholder counts as unset", () => {
  const c = loadConfig(
    { KLYM_MODEL: "${user_config.model}", KLYM_PORT: "${user_config.port}" },
    [],
  );
  assert.equal(c.model, undefined);
  assert.equal(c.port, 8765);
  // Anything else that is not a value stays an error.
  assert.throws(() => loadConfig({ KLYM_PORT: "${user_config.port} " }, []), /KLYM_PORT/);
});

Deno.test("--standalone and the service's knobs", () => {
  const c = loadConfig({ KLYM_SERVICE_IDLE_S: "0", KLYM_SERVICE_START_S: "5" }, [
    "--stdio",
    "--standalone",
  ]);
  assert.equal(c.standalone, true);
  assert.equal(c.serviceIdleS, 0);
  assert.equal(c.serviceStartS, 5);
  assert.equal(loadConfig({}, []).serviceIdleS, undefined);
  assert.equal(loadConfig({ KLYM_STANDALONE: "1" }, []).standalone, true);
});
