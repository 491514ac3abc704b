import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../src/config.ts";

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
