/**
 * Checks the peer harness in tests/peers/: each third-party MCP server starts on loopback, answers
 * a real MCP client, and leaves no process behind. Needs `deno run -A tests/peers/setup.ts` first.
 */
import {
  Client,
  SSEClientTransport,
  StreamableHTTPClientTransport,
} from "@modelcontextprotocol/client";
import {
  type Peer,
  type PeerTransport,
  startEverythingPeer,
  startFastMcpPeer,
  startMemoryPeer,
} from "./peers/peers.ts";

type Graph = { entities: { name: string; entityType: string; observations: string[] }[] };

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

async function connect(peer: Peer, transport: PeerTransport, name = "peers-test") {
  const client = new Client({ name, version: "1.0.0" });
  const url = new URL(peer.url);
  await client.connect(
    transport === "sse" ? new SSEClientTransport(url) : new StreamableHTTPClientTransport(url),
  );
  return client;
}

/** Calls a tool and returns its first text block, failing on a tool error. */
async function callText(client: Client, name: string, args: Record<string, unknown> = {}) {
  const result = await client.callTool({ name, arguments: args });
  const first = (result.content as { type: string; text?: string }[] | undefined)?.[0];
  assert(!result.isError && first?.type === "text", `${name}: ${JSON.stringify(result)}`);
  return first.text!;
}

async function toolNames(client: Client): Promise<string[]> {
  return (await client.listTools()).tools.map((t) => t.name);
}

/** Fails unless the peer's port listens on 127.0.0.1 and nowhere else (read from /proc). */
async function assertLoopbackOnly(peer: Peer) {
  const hexPort = peer.port.toString(16).toUpperCase().padStart(4, "0");
  const addrs: string[] = [];
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of (await Deno.readTextFile(file)).split("\n").slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      if (state === "0A" /* LISTEN */ && local?.endsWith(`:${hexPort}`)) {
        addrs.push(local.split(":")[0]!);
      }
    }
  }
  assert(
    addrs.length > 0 && addrs.every((a) => a === "0100007F" /* 127.0.0.1 */),
    `port ${peer.port} listens on [${addrs}], not only on 127.0.0.1`,
  );
}

/** Live (non-zombie) processes of a process group, as `ps` lines. */
async function liveInGroup(pgid: number): Promise<string[]> {
  const ps = new Deno.Command("ps", { args: ["-e", "-o", "pgid=,stat=,args="] });
  const lines = new TextDecoder().decode((await ps.output()).stdout).split("\n");
  return lines.filter((line) => {
    const [group, stat] = line.trim().split(/\s+/);
    return group === String(pgid) && !stat?.startsWith("Z");
  });
}

async function withTempDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "klym-peers-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** create_entities, then read_graph must show the entity. */
async function createAndRead(client: Client, name: string) {
  const created = await callText(client, "create_entities", {
    entities: [{ name, entityType: "test", observations: ["made by peers_test"] }],
  });
  assert(created.includes(name), `create_entities answered ${created}`);
  const graph: Graph = JSON.parse(await callText(client, "read_graph"));
  const entity = graph.entities.find((e) => e.name === name);
  assert(entity?.observations.join() === "made by peers_test", `read_graph lacks ${name}`);
}

for (const transport of ["sse", "http"] as const) {
  Deno.test(`memory peer over ${transport}: create_entities then read_graph`, async () => {
    await withTempDir(async (dir) => {
      const memoryFile = `${dir}/memory.jsonl`;
      await using peer = await startMemoryPeer({ transport, memoryFile });
      await assertLoopbackOnly(peer);
      const client = await connect(peer, transport);
      try {
        const tools = await toolNames(client);
        assert(tools.includes("create_entities") && tools.includes("read_graph"), `${tools}`);
        await createAndRead(client, `alice-${transport}`);
      } finally {
        await client.close();
      }
      // MEMORY_FILE_PATH made it through mcp-proxy to the stdio server.
      const saved = await Deno.readTextFile(memoryFile);
      assert(saved.includes(`alice-${transport}`), `memory file holds ${saved}`);
    });
  });

  Deno.test(`everything peer over ${transport}: lists tools and echoes`, async () => {
    await using peer = await startEverythingPeer({ transport });
    await assertLoopbackOnly(peer);
    const client = await connect(peer, transport);
    try {
      assert((await toolNames(client)).includes("echo"), "no echo tool");
      assert((await callText(client, "echo", { message: "hi" })).includes("hi"), "echo");
    } finally {
      await client.close();
    }
  });
}

Deno.test("FastMCP peer: graph tools work, slow answers late, hang never", async () => {
  await using peer = await startFastMcpPeer();
  await assertLoopbackOnly(peer);
  const client = await connect(peer, "sse");
  try {
    const tools = await toolNames(client);
    for (const tool of ["create_entities", "add_observations", "read_graph", "slow", "hang"]) {
      assert(tools.includes(tool), `no ${tool} in ${tools}`);
    }
    await createAndRead(client, "bob");
    await callText(client, "add_observations", {
      observations: [{ entityName: "bob", contents: ["second"] }],
    });
    const graph: Graph = JSON.parse(await callText(client, "read_graph"));
    assert(graph.entities[0]?.observations.join() === "made by peers_test,second", "observed");

    const started = performance.now();
    assert((await callText(client, "slow", { seconds: 0.2 })).includes("slept"), "slow");
    assert(performance.now() - started >= 200, "slow answered early");
    // Only the client's own timeout ends a call to hang.
    const hang = client.callTool({ name: "hang", arguments: {} }, { timeout: 200 });
    assert(await hang.then(() => false, () => true), "hang answered");
  } finally {
    await client.close();
  }
});

Deno.test("memory peer over sse: 5 concurrent clients each get their own answers", async () => {
  await withTempDir(async (dir) => {
    const n = 5;
    const memoryFile = `${dir}/memory.jsonl`;
    // One seeded entity per client, to read back concurrently. (Concurrent create_entities
    // would not do for that: server-memory rewrites the whole file on each write, so they
    // lose each other's entities. That is its race, not the proxy's.)
    const seeds = Array.from({ length: n }, (_, i) => ({
      type: "entity",
      name: `seed-${i}`,
      entityType: "t",
      observations: [`o${i}`],
    }));
    await Deno.writeTextFile(memoryFile, seeds.map((s) => JSON.stringify(s)).join("\n"));
    await using peer = await startMemoryPeer({ transport: "sse", memoryFile });
    const clients = await Promise.all(
      seeds.map((_, i) => connect(peer, "sse", `client-${i}`)),
    );
    try {
      for (let round = 0; round < 3; round++) {
        await Promise.all(clients.map(async (client, i) => {
          const name = `c${i}-r${round}`;
          const [created, opened] = await Promise.all([
            callText(client, "create_entities", {
              entities: [{ name, entityType: "t", observations: [] }],
            }),
            callText(client, "open_nodes", { names: [`seed-${i}`] }),
          ]);
          const createdNames = (JSON.parse(created) as { name: string }[]).map((e) => e.name);
          assert(createdNames.join() === name, `client ${i} got create answer ${created}`);
          const observed = (JSON.parse(opened) as Graph).entities.map((e) => e.observations);
          assert(observed.join() === `o${i}`, `client ${i} got open_nodes answer ${opened}`);
        }));
      }
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});

Deno.test("stop() ends mcp-proxy and the stdio server it spawned", async () => {
  await withTempDir(async (dir) => {
    const peer = await startMemoryPeer({ transport: "http", memoryFile: `${dir}/m.jsonl` });
    const before = await liveInGroup(peer.pid);
    assert(before.some((p) => p.includes("mcp-proxy")), `no proxy in ${before}`);
    assert(before.some((p) => p.includes("server-memory")), `no stdio server in ${before}`);
    await peer.stop();
    assert((await liveInGroup(peer.pid)).length === 0, "the peer's process group lives on");
    await peer.stop(); // a second stop is a no-op
  });
});
