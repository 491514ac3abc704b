/**
 * A bridge and a service of different Klym versions: the bridge uses the service when their
 * bridge protocol is the same, and otherwise answers its client with what to do. The "service"
 * here is this test listening on the socket, so it can be any version.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../../src/config.ts";
import { BRIDGE_ERROR_CODE, runBridge } from "../../src/service/bridge.ts";
import { BRIDGE_PROTOCOL, BridgeHello, helloLine, readHello } from "../../src/service/handshake.ts";
import { servicePaths } from "../../src/service/service_paths.ts";
import { readLines } from "../../src/lines.ts";
import { INITIALIZE } from "../helpers/raw_mcp.ts";
import { VERSION } from "../../src/version.ts";

/** A private state folder with a fake service of `protocol` and `version` on its socket. */
async function fakeService(protocol: number, version: string) {
  const folder = await Deno.makeTempDir({ prefix: "klym-bridge-" });
  const paths = servicePaths(`${folder}/klym.db`)!;
  const listener = Deno.listen({ transport: "unix", path: paths.socket });
  const hello = { klym: "service", protocol, version, pid: 424242, url: null };
  const session = (async () => {
    const conn = await listener.accept();
    await conn.write(helloLine(hello as never));
    const { hello: bridge, rest } = await readHello(conn.readable, BridgeHello);
    // What the bridge carries after its hello: the client's first request, answered here.
    let request: { id: number } | undefined;
    for await (const { line } of readLines(rest, 1 << 20)) {
      request = JSON.parse(line);
      await conn.write(new TextEncoder().encode(
        JSON.stringify({ jsonrpc: "2.0", id: request!.id, result: { from: "service" } }) + "\n",
      ));
      // Leaving the loop cancels the stream, which closes the connection: the session ends.
      break;
    }
    return { bridge, request };
  })();
  return {
    paths,
    session,
    async [Symbol.asyncDispose]() {
      listener.close();
      await Deno.remove(folder, { recursive: true });
    },
  };
}

/** Runs a bridge whose client sends `INITIALIZE`; its exit code and what the client read. */
async function bridge(paths: NonNullable<ReturnType<typeof servicePaths>>) {
  const config = loadConfig({ KLYM_STATE: paths.journal, KLYM_SERVICE_START_S: "1" }, ["--stdio"]);
  const { promise: answered, resolve: answer } = Promise.withResolvers<void>();
  const stdin = new ReadableStream<Uint8Array>({
    async start(controller) {
      controller.enqueue(new TextEncoder().encode(JSON.stringify(INITIALIZE) + "\n"));
      // The client keeps its stdin open until it has its answer, as a real one does.
      await answered;
      controller.close();
    },
  });
  const lines: unknown[] = [];
  const stdout = new WritableStream<Uint8Array>({
    write(chunk) {
      for (const line of new TextDecoder().decode(chunk).split("\n").filter(Boolean)) {
        lines.push(JSON.parse(line));
      }
      answer();
    },
  });
  const code = await runBridge(config, paths, [], { stdin, stdout });
  answer();
  return { code, lines };
}

Deno.test("a bridge uses a service of another Klym version that speaks its bridge protocol", async () => {
  await using service = await fakeService(BRIDGE_PROTOCOL, "0.0.1-older");
  const { lines } = await bridge(service.paths);
  const { bridge: hello, request } = await service.session;
  assert.equal(hello.version, VERSION);
  assert.equal(hello.protocol, BRIDGE_PROTOCOL);
  assert.equal(request?.id, 1, "the client's request reached the service");
  assert.deepEqual(lines, [{ jsonrpc: "2.0", id: 1, result: { from: "service" } }]);
});

Deno.test("a bridge facing another bridge protocol tells its client exactly what to do", async () => {
  await using service = await fakeService(BRIDGE_PROTOCOL + 1, "9.0.0");
  const { code, lines } = await bridge(service.paths);
  assert.equal(code, 1);
  const [reply] = lines as { id: number; error: { code: number; message: string } }[];
  assert.equal(reply?.id, 1);
  assert.equal(reply?.error.code, BRIDGE_ERROR_CODE);
  assert.match(reply!.error.message, /\(pid 424242, Klym 9\.0\.0\) speaks bridge protocol 2/);
  assert.match(reply!.error.message, /kill 424242/);
  assert.match(reply!.error.message, /--standalone/);
  // The refused service saw no bridge hello and no request.
  await assert.rejects(service.session, /ended before its hello line/);
});
