import assert from "node:assert/strict";
import type { McpServer } from "@modelcontextprotocol/server";
import { CLIENT_GONE_MESSAGE, samplerFor } from "../../src/llm/sampling.ts";
import { isKlymError } from "../../src/errors.ts";

/** A server whose client offered sampling, connected while `connected()` says so. */
function server(connected: () => boolean, createMessage: () => Promise<unknown>): McpServer {
  return {
    isConnected: connected,
    server: { getClientCapabilities: () => ({ sampling: {} }), createMessage },
  } as unknown as McpServer;
}

const request = { messages: [{ role: "user" as const, content: "hi" }] };

Deno.test("a task asking the model of a client that has left fails with client_gone", async () => {
  let asked = 0;
  const sample = samplerFor(server(() => false, () => (asked++, Promise.resolve({}))))!;
  await assert.rejects(
    () => sample(request as never, new AbortController().signal, 1000),
    (error: unknown) => {
      assert.ok(isKlymError(error), String(error));
      assert.equal(error.code, "client_gone");
      assert.equal(error.message, CLIENT_GONE_MESSAGE);
      assert.match(error.message, /KLYM_MODEL/);
      return true;
    },
  );
  assert.equal(asked, 0, "nothing is sent to a client that is gone");
});

Deno.test("a client leaving while its model is asked fails the call with client_gone", async () => {
  let connected = true;
  const sample = samplerFor(server(() => connected, () => {
    connected = false;
    return Promise.reject(new Error("Connection closed"));
  }))!;
  await assert.rejects(
    () => sample(request as never, new AbortController().signal, 1000),
    (error: unknown) => isKlymError(error, "client_gone"),
  );
});
