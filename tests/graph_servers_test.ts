/**
 * Klym against real third-party graph MCP servers of three shapes, none of them server-memory, each
 * read back from its own store: FalkorDB's MCP server (a Cypher tool with query parameters), Kùzu
 * memory (one "remember this text" tool on an embedded graph), and libSQL memory (a SQLite-backed
 * graph with create_entities but no add_observations).
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import {
  call,
  type KlymProcess,
  OWN_SESSION,
  ranMs,
  startKlym,
  waitFinal,
  waitLogged,
} from "./helpers/klym_process.ts";
import { withSilentPort } from "./helpers/tcp.ts";
import {
  type FalkorDb,
  freePort,
  type Peer,
  type PeerTransport,
  startEverythingPeer,
  startFalkorDb,
  startFalkorPeer,
  startKuzuMemoryPeer,
  startLibsqlPeer,
} from "./peers/peers.ts";

const VENV_PYTHON = new URL("./peers/.venv/bin/python", import.meta.url).pathname;

interface Save {
  seq: number;
  ok: boolean;
  strategy?: string;
  tools: string[];
  reply: string;
  error?: { code: string; message: string };
  hint?: string;
}

async function runTask(
  klym: KlymProcess,
  kind: string,
  params: Record<string, unknown> = {},
  timeoutMs?: number,
) {
  const client = await klym.connect();
  const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
    kind,
    params,
  });
  const final = await waitFinal(client, task_id, timeoutMs);
  const status = await call<{ saves?: { seq: number; ok: boolean; reply: string }[] }>(
    client,
    "check_task_status",
    { task_id },
  );
  return { taskId: task_id, final, saves: status.saves ?? [] };
}

/** Texts that break a query spliced together from strings, and try to write nodes of their own. */
const CRAFTED = [
  "It's O'Brien's \"quoted\" note",
  "x'}) CREATE (:Pwned {by: 'quote'}) //",
  'x"}) CREATE (:Pwned {by: "dquote"}) //',
  "$text }) DETACH DELETE t //",
];

// ---- the three shapes, each with a direct reader of its own store ----

interface Shape {
  name: string;
  preset: string;
  start(transport: PeerTransport, port?: number): Promise<Peer>;
  /** Every saved text in the store, read from the server's own file or database. */
  stored(): Promise<string[]>;
  /** Anything a crafted text could have created beyond Klym's own writes. */
  intruders(): Promise<number>;
  dispose(): Promise<void>;
}

async function falkorShape(): Promise<Shape> {
  const dir = Deno.makeTempDirSync();
  const db: FalkorDb = await startFalkorDb(dir);
  const rows = async (cypher: string) => {
    try {
      return ((await db.query("klym", cypher)) as unknown[][])[1] as unknown[][];
    } catch (error) {
      if (/empty key|Invalid graph operation on empty key/i.test(String(error))) return [];
      throw error;
    }
  };
  return {
    name: "FalkorDB (@falkordb/mcpserver, Cypher with parameters)",
    preset: "cypher",
    start: (transport, port) => startFalkorPeer({ transport, db, ...(port ? { port } : {}) }),
    stored: async () =>
      (await rows("MATCH (:KlymTask)-[:SAVED]->(s:KlymSave) RETURN s.text ORDER BY s.seq")).map((
        r,
      ) => String(r[0])),
    intruders: async () =>
      Number(
        (await rows("MATCH (n) WHERE NOT n:KlymTask AND NOT n:KlymSave RETURN count(n)"))[0]?.[0] ??
          0,
      ),
    dispose: () => db.stop(),
  };
}

function kuzuShape(projectDir = Deno.makeTempDirSync()): Shape {
  const query = async (cypher: string): Promise<unknown[][]> => {
    const script = `
import json, sys, kuzu
db = kuzu.Database(sys.argv[1], read_only=True)
conn = kuzu.Connection(db)
res = conn.execute(sys.argv[2])
out = []
while res.has_next():
    out.append(res.get_next())
print(json.dumps(out, default=str))
`;
    const { code, stdout, stderr } = await new Deno.Command(VENV_PYTHON, {
      args: ["-c", script, `${projectDir}/.kuzu-memory/memories.db`, cypher],
      ...OWN_SESSION,
    }).output();
    const text = new TextDecoder().decode(stdout);
    if (code !== 0) throw new Error(new TextDecoder().decode(stderr).slice(-800));
    return JSON.parse(text);
  };
  return {
    name: "Kùzu memory (kuzu-memory, one remember tool)",
    preset: "remember",
    start: (transport, port) =>
      startKuzuMemoryPeer({ transport, projectDir, ...(port ? { port } : {}) }),
    stored: async () => (await query("MATCH (m:Memory) RETURN m.content")).map((r) => String(r[0])),
    intruders: async () => {
      const tables = await query("CALL show_tables() RETURN name");
      return tables.filter((t) => /pwned/i.test(String(t[0]))).length;
    },
    dispose: () => Promise.resolve(),
  };
}

function libsqlShape(): Shape {
  const file = `${Deno.makeTempDirSync()}/memory.db`;
  const read = <T>(sql: string): T[] => {
    const db = new DatabaseSync(file, { readOnly: true });
    try {
      return db.prepare(sql).all() as T[];
    } finally {
      db.close();
    }
  };
  return {
    name: "libSQL memory (mcp-memory-libsql, no add_observations)",
    preset: "memory-linked",
    start: (transport, port) =>
      startLibsqlPeer({ transport, dbFile: file, ...(port ? { port } : {}) }),
    stored: () =>
      Promise.resolve(
        read<{ content: string }>(
          "SELECT o.content FROM observations o JOIN entities e ON e.name = o.entity_name " +
            "WHERE e.entity_type = 'klym_save' ORDER BY o.id",
        ).map((r) => r.content),
      ),
    intruders: () =>
      Promise.resolve(
        read<{ n: number }>(
          "SELECT count(*) AS n FROM entities WHERE entity_type NOT IN ('klym_task', 'klym_save')",
        )[0]!.n,
      ),
    dispose: () => Promise.resolve(),
  };
}

const SHAPES: [string, () => Promise<Shape> | Shape][] = [
  ["falkordb", falkorShape],
  ["kuzu", () => kuzuShape()],
  ["libsql", libsqlShape],
];

for (const [id, make] of SHAPES) {
  for (const transport of ["sse", "http"] as const) {
    Deno.test(`${id} over ${transport}: the first run needs no template; crafted text lands as text and injects nothing`, async () => {
      const shape = await make();
      try {
        await using peer = await shape.start(transport);
        await using klym = await startKlym({ KLYM_GRYNYA_URL: peer.url });

        // report: what it saw, the strategy it picked, and that its save landed.
        const report = await runTask(klym, "report");
        assert.equal(report.final.status, "succeeded", JSON.stringify(report.final.error));
        const result = report.final.result as {
          transport: string;
          tools: string[];
          write_strategy: { name: string; source: string; tools: string[] };
          saved: Save;
        };
        assert.equal(result.transport, transport);
        assert.deepEqual(
          { name: result.write_strategy.name, source: result.write_strategy.source },
          { name: shape.preset, source: "auto" },
          report.final.allLogs.map((l) => `${l.stream}: ${l.text}`).join("\n"),
        );
        assert.equal(result.saved.ok, true, JSON.stringify(result.saved));
        assert.ok(
          report.final.allLogs.some((l) =>
            l.text.includes(`write strategy "${shape.preset}" (chosen from grynya's tools)`)
          ),
        );
        assert.equal(report.saves.length, 1);
        assert.equal(report.saves[0]!.ok, true);

        // Several saves from one task (the second save must not need a missing tool), crafted text.
        const loop = await runTask(klym, "save_loop", { texts: CRAFTED });
        assert.equal(loop.final.status, "succeeded", JSON.stringify(loop.final.error));
        const saves = (loop.final.result as { saves: Save[] }).saves;
        assert.deepEqual(saves.map((s) => [s.seq, s.ok]), CRAFTED.map((_, i) => [i + 1, true]));
        assert.ok(saves.every((s) => s.strategy === shape.preset && s.reply.length > 0));
        assert.deepEqual(loop.saves.map((s) => s.ok), CRAFTED.map(() => true));

        if (id === "kuzu") await peer.stop(); // Kùzu's files are read with the server gone
        const stored = await shape.stored();
        assert.ok(stored.some((t) => t.startsWith("Бачу базу та інструменти")), stored.join("\n"));
        for (const text of CRAFTED) assert.ok(stored.includes(text), `${text} in ${stored}`);
        assert.equal(await shape.intruders(), 0);
      } finally {
        await shape.dispose();
      }
    });
  }
}

Deno.test("a save whose reply says Error without isError is a failed save, with grynya's reply", async () => {
  const projectDir = Deno.makeTempDirSync();
  Deno.mkdirSync(`${projectDir}/.kuzu-memory`);
  Deno.writeTextFileSync(`${projectDir}/.kuzu-memory/memories.db`, "not a database ".repeat(300));
  await using peer = await startKuzuMemoryPeer({ transport: "sse", projectDir });
  await using klym = await startKlym({ KLYM_GRYNYA_URL: peer.url });
  const write = await runTask(klym, "graph_write", { text: "this must not count as saved" });
  assert.equal(write.final.status, "failed");
  assert.equal(write.final.error?.code, "grynya_write_rejected");
  assert.match(write.final.error!.message, /refused save #1 \(strategy remember, kuzu_remember\)/);
  assert.match(write.final.error!.message, /Error: .*not a valid Kuzu database/);
  assert.equal(write.saves[0]?.ok, false);
  // report still succeeds, and says the save did not land.
  const report = await runTask(klym, "report");
  assert.equal(report.final.status, "succeeded", JSON.stringify(report.final.error));
  const saved = (report.final.result as { saved: Save }).saved;
  assert.equal(saved.ok, false);
  assert.match(saved.reply, /^Error: /);
  assert.ok(report.final.allLogs.some((l) => l.stream === "stderr" && /did not land/.test(l.text)));
});

Deno.test("no preset fits: report succeeds, lists grynya's tools and drafts a template", async () => {
  await using peer = await startEverythingPeer({ transport: "http" });
  await using klym = await startKlym({ KLYM_GRYNYA_URL: peer.url });
  const report = await runTask(klym, "report");
  assert.equal(report.final.status, "succeeded", JSON.stringify(report.final.error));
  const result = report.final.result as { saved: Save; write_strategy: { name: null } };
  assert.equal(result.write_strategy.name, null);
  assert.equal(result.saved.ok, false);
  assert.equal(result.saved.error?.code, "grynya_no_write_strategy");
  assert.match(
    result.saved.error!.message,
    /No write preset fits .*grynya offers \d+ tools: echo, /,
  );
  assert.match(result.saved.hint!, /set KLYM_GRYNYA_WRITE to a template such as \{"create"/);
  const write = await runTask(klym, "graph_write", { text: "x" });
  assert.equal(write.final.error?.code, "grynya_no_write_strategy");
  assert.match(write.final.error!.message, /KLYM_GRYNYA_WRITE/);
});

Deno.test("a template of two calls: the second uses the id the first returned", async () => {
  await using shape = {
    ...(await falkorShape()),
    [Symbol.asyncDispose]() {
      return this.dispose();
    },
  };
  await using peer = await shape.start("http");
  const template = {
    create: [
      {
        tool: "query_graph",
        arguments: {
          graphName: "klym",
          query: "MERGE (t:KlymTask {id: $task}) RETURN id(t) AS id",
          params: { task: "{{task_id}}" },
        },
        idempotent: true,
      },
      {
        tool: "query_graph",
        arguments: {
          graphName: "klym",
          query:
            "MATCH (t) WHERE id(t) = $id CREATE (t)-[:SAVED]->(:KlymSave {seq: $seq, text: $text, value: $json}) RETURN $seq AS seq",
          params: {
            id: "{{steps.0.json.data.0.id}}",
            seq: "{{seq}}",
            text: "{{text}}",
            json: "{{value_json}}",
          },
        },
      },
    ],
    success: '"seq"',
  };
  await using klym = await startKlym({
    KLYM_GRYNYA_URL: peer.url,
    KLYM_GRYNYA_WRITE: JSON.stringify(template),
  });
  const loop = await runTask(klym, "save_loop", { texts: ["first", { n: 2 }] });
  assert.equal(loop.final.status, "succeeded", JSON.stringify(loop.final.error));
  const saves = (loop.final.result as { saves: Save[] }).saves;
  assert.deepEqual(saves.map((s) => [s.ok, s.strategy, s.tools]), [
    [true, "template", ["query_graph", "query_graph"]],
    [true, "template", ["query_graph", "query_graph"]],
  ]);
  assert.deepEqual(await shape.stored(), ["first", '{"n":2}']);
});

const RECONNECT_FAILED = /grynya: reconnect attempt \d+ to .* failed after .*; next attempt in/;

async function restartMidTask(
  transport: PeerTransport,
  shape: Shape,
): Promise<void> {
  const port = freePort();
  let peer = await shape.start(transport, port);
  try {
    await using klym = await startKlym({ KLYM_GRYNYA_URL: peer.url });
    const client = await klym.connect();
    const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
      kind: "save_loop",
      params: { times: 12, pause_ms: 400 },
    });
    await waitLogged(client, task_id, /^save 3: ok$/); // three saves have landed
    await peer.stop();
    // The peer comes back only once the task has found it gone and failed to reconnect.
    await waitLogged(client, task_id, RECONNECT_FAILED);
    peer = await shape.start(transport, port);
    const final = await waitFinal(client, task_id);
    assert.equal(final.status, "succeeded", JSON.stringify(final.error));
    const saves = (final.result as { saves: Save[] }).saves;
    assert.equal(saves.length, 12);
    // A save cut mid-call is reported as not landed (not re-sent); every other one landed.
    const failed = saves.filter((s) => !s.ok);
    assert.ok(failed.length <= 1, JSON.stringify(failed));
    for (const s of failed) assert.equal(s.error?.code, "grynya_call_interrupted");
    const lines = final.allLogs.map((l) => l.text);
    assert.ok(
      lines.some((l) => RECONNECT_FAILED.test(l)),
      lines.join("\n"),
    );
    assert.ok(lines.some((l) => /grynya: reconnected to .* on attempt \d+/.test(l)));
    const stored = await shape.stored();
    for (const s of saves.filter((s) => s.ok)) {
      assert.ok(stored.includes(`note ${s.seq}`), `note ${s.seq} in ${stored}`);
    }
  } finally {
    await peer.stop();
    await shape.dispose();
  }
}

Deno.test("grynya restarting mid-task over SSE: the task reconnects, logs each attempt and keeps saving", async () => {
  await restartMidTask("sse", libsqlShape());
});

Deno.test("grynya restarting mid-task over Streamable HTTP: the task reconnects and keeps saving", async () => {
  await restartMidTask("http", await falkorShape());
});

Deno.test("a grynya that accepts but never answers fails within the connect timeout, not a multiple", async () => {
  await withSilentPort(async (port) => {
    await using klym = await startKlym({
      KLYM_GRYNYA_URL: `http://127.0.0.1:${port}/mcp`,
      KLYM_GRYNYA_CONNECT_TIMEOUT_MS: "2000",
    });
    const { final } = await runTask(klym, "report");
    assert.equal(final.error?.code, "grynya_unreachable");
    assert.match(
      final.error!.message,
      /no answer within \d+ ms \(KLYM_GRYNYA_CONNECT_TIMEOUT_MS\)/,
    );
    const took = ranMs(final);
    assert.ok(took < 2000 + 4000, `${took} ms`);
  });
});

Deno.test("connect errors keep their cause and say what to fix", async (t) => {
  await t.step("refused: the OS error, and the attempts", async () => {
    const url = `http://127.0.0.1:${freePort()}/mcp`;
    await using klym = await startKlym({
      KLYM_GRYNYA_URL: url,
      KLYM_GRYNYA_CONNECT_TIMEOUT_MS: "1500",
    });
    const { final } = await runTask(klym, "report");
    assert.equal(final.error?.code, "grynya_unreachable");
    assert.match(final.error!.message, /Connection refused|ECONNREFUSED/);
    assert.match(final.error!.message, /KLYM_GRYNYA_CONNECT_TIMEOUT_MS/);
    assert.ok(final.error!.message.length < 2048);
  });
  await using peer = await startEverythingPeer({ transport: "http" });
  await t.step("404 is not retried and names the path", async () => {
    await using klym = await startKlym({
      KLYM_GRYNYA_URL: peer.url.replace(/\/mcp$/, "/nothing-here"),
      KLYM_GRYNYA_TRANSPORT: "http",
    });
    const { final } = await runTask(klym, "report");
    assert.equal(final.error?.code, "grynya_unreachable");
    assert.match(final.error!.message, /\(1 attempt in /);
    assert.match(final.error!.message, /check KLYM_GRYNYA_URL/);
    assert.ok(ranMs(final) < 5000, `${ranMs(final)} ms`);
  });
  await t.step("a forced transport the server does not speak hints at the other one", async () => {
    await using klym = await startKlym({ KLYM_GRYNYA_URL: peer.url, KLYM_GRYNYA_TRANSPORT: "sse" });
    const { final } = await runTask(klym, "report");
    assert.equal(final.error?.code, "grynya_unreachable");
    assert.match(final.error!.message, /KLYM_GRYNYA_TRANSPORT/);
    assert.ok(final.error!.message.length < 2048);
  });
});

Deno.test("a rejected long text gives a short error that still carries grynya's reply", async () => {
  await using peer = await startEverythingPeer({ transport: "http" });
  const template = {
    create: { tool: "echo", arguments: { message: "{{text}}" } },
    success: "^ok$",
  };
  await using klym = await startKlym({
    KLYM_GRYNYA_URL: peer.url,
    KLYM_GRYNYA_WRITE: JSON.stringify(template),
  });
  const write = await runTask(klym, "graph_write", { text: "x".repeat(5000) });
  assert.equal(write.final.error?.code, "grynya_write_rejected");
  assert.match(write.final.error!.message, /does not match the success pattern .*: Echo: xxx/);
  assert.ok(write.final.error!.message.length < 2048, `${write.final.error!.message.length}`);
});
