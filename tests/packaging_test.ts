/**
 * How Klym is installed as MCP servers are: the MCP bundle's manifest.json and the MCP registry's
 * server.json describe the Klym this checkout builds, and server.json is valid against the
 * registry's released schema. (`mcpb validate manifest.json` runs in .ci/run and the workflows.)
 */
import assert from "node:assert/strict";
import { VERSION } from "../src/version.ts";
import { ENV_NAMES, loadConfig } from "../src/config.ts";

const ROOT = new URL("../", import.meta.url);
const read = (name: string) => JSON.parse(Deno.readTextFileSync(new URL(name, ROOT)));

Deno.test("server.json is valid against the MCP registry's schema it names", async () => {
  const python = new URL("peers/.venv/bin/python", import.meta.url).pathname;
  const script = new URL("peers/validate_server_json.py", import.meta.url).pathname;
  const check = (path: string) =>
    new Deno.Command(python, { args: [script, path], stdout: "piped", stderr: "piped" }).output();
  const out = await check(new URL("server.json", ROOT).pathname);
  const answer = JSON.parse(new TextDecoder().decode(out.stdout));
  assert.deepEqual(answer.errors, [], new TextDecoder().decode(out.stderr));
  assert.equal(out.code, 0);
  assert.equal(answer.schema, read("server.json").$schema);
  // The check can fail: a description past the registry's 100 characters is refused.
  const bad = await Deno.makeTempFile({ suffix: ".json" });
  try {
    Deno.writeTextFileSync(
      bad,
      JSON.stringify({ ...read("server.json"), description: "x".repeat(101) }),
    );
    const refused = await check(bad);
    assert.equal(refused.code, 1);
    assert.match(new TextDecoder().decode(refused.stdout), /description/);
  } finally {
    await Deno.remove(bad);
  }
});

Deno.test("manifest.json and server.json carry this Klym's version and its variables", () => {
  const manifest = read("manifest.json");
  const server = read("server.json");
  assert.equal(manifest.version, VERSION);
  assert.equal(server.version, VERSION);
  assert.equal(manifest.server.type, "binary");
  assert.deepEqual(manifest.server.mcp_config.args, ["--stdio"]);
  const known = new Set(Object.values(ENV_NAMES));
  for (const name of Object.keys(manifest.server.mcp_config.env)) assert.ok(known.has(name), name);
  for (const pkg of server.packages) {
    assert.ok(pkg.identifier.includes(`/v${VERSION}/`), pkg.identifier);
    for (const v of pkg.environmentVariables) assert.ok(known.has(v.name), v.name);
  }
  // What the bundle's host passes for an optional setting left empty counts as unset.
  const config = loadConfig(manifest.server.mcp_config.env, manifest.server.mcp_config.args);
  assert.equal(config.model, undefined);
  assert.equal(config.tasksDir, undefined);
  assert.equal(config.stdio, true);
});
