import assert from "node:assert/strict";
import { ConfigError, grynyaSettings, loadConfig } from "../src/config.ts";
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
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /KLYM_MAX_CONCURRENT: .*>=1/);
    return true;
  });
  assert.throws(() => loadConfig({ KLYM_PORT: "seventy" }, []), /KLYM_PORT/);
  assert.throws(() => loadConfig({ KLYM_GRYNYA_URL: "ftp://x" }, []), /KLYM_GRYNYA_URL/);
  assert.throws(() => loadConfig({}, ["--nope"]), /Unknown option "--nope"/);
  assert.throws(() => loadConfig({}, ["--port"]), /"--port" needs a value/);
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
  assert.deepEqual(loadConfig({ KLYM_GRYNYA_WRITE: file }, []).grynyaWrite, template);
  assert.deepEqual(
    loadConfig({ KLYM_GRYNYA_WRITE: JSON.stringify(template) }, []).grynyaWrite,
    template,
  );
  Deno.removeSync(file);
  assert.throws(
    () => loadConfig({ KLYM_GRYNYA_WRITE: "/nope.json" }, []),
    /KLYM_GRYNYA_WRITE names the file "\/nope.json", which cannot be read/,
  );
  assert.throws(
    () => loadConfig({ KLYM_GRYNYA_WRITE: '{"create": {}}' }, []),
    /KLYM_GRYNYA_WRITE at create.tool/,
  );
  assert.throws(
    () => loadConfig({ KLYM_GRYNYA_HEADERS: "{bad" }, []),
    /KLYM_GRYNYA_HEADERS is not valid JSON/,
  );
  const c = loadConfig({ KLYM_GRYNYA_HEADERS: '{"x-team": "a"}', KLYM_GRYNYA_TOKEN: "t0k" }, []);
  assert.deepEqual(grynyaSettings(c).headers, { "x-team": "a", authorization: "Bearer t0k" });
});
