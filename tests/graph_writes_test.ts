/**
 * Writes that are safe and really land, against real third-party servers that hold data, each read
 * back from its own store: the reference SQLite server (`mcp-server-sqlite`, whose only writes take
 * a whole SQL statement) and a notes bank of files (`@allpepper/memory-bank-mcp`, which never
 * overwrites a file), over SSE and Streamable HTTP; and a grynya stopped just before a save.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { Client, SSEClientTransport } from "@modelcontextprotocol/client";
import {
  call,
  type KlymProcess,
  refusedStart,
  startKlym,
  type Status,
  waitFinal,
  waitLogged,
} from "./helpers/klym_process.ts";
import { PATIENCE_MS } from "./helpers/patience.ts";
import { startScriptedModel } from "./helpers/scripted_openai.ts";
import type { SaveRecord } from "../src/protocol.ts";
import { freePort, type Peer, startMemoryBankPeer, startSqlitePeer } from "./peers/peers.ts";

type Save = SaveRecord;

async function runTask(klym: KlymProcess, kind: string, params: Record<string, unknown> = {}) {
  const client = await klym.connect();
  const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
    kind,
    params,
  });
  return { taskId: task_id, final: await waitFinal(client, task_id, 60_000) };
}

/** The template a `report`'s hint suggests, exactly as a user would paste it. */
function suggested(hint: string | undefined): string {
  const json = /a template such as (\{.*\}) \(edit the names to taste\)/.exec(hint ?? "")?.[1];
  assert.ok(json, `no template in the hint: ${hint}`);
  return json;
}

async function reportHint(url: string): Promise<Save> {
  await using klym = await startKlym({ KLYM_GRYNYA_URL: url });
  const { final } = await runTask(klym, "report");
  assert.equal(final.status, "succeeded", JSON.stringify(final.error));
  const saved = (final.result as { saved: Save }).saved;
  assert.equal(saved.ok, false);
  assert.equal(saved.error?.code, "grynya_no_write_strategy");
  return saved;
}

/** Text that is SQL: run as a query, it would destroy the table the test made. */
const SQL_TEXTS = [
  "DELETE FROM keep_me",
  "DROP TABLE keep_me",
  "x'); DROP TABLE keep_me; --",
];

for (const transport of ["sse", "http"] as const) {
  Deno.test(`a SQL-only server over ${transport}: saved SQL is refused as a query and stored as text, never run`, async () => {
    const dbFile = `${Deno.makeTempDirSync()}/data.db`;
    {
      const db = new DatabaseSync(dbFile);
      db.exec("CREATE TABLE keep_me (id INTEGER PRIMARY KEY, note TEXT)");
      db.exec("INSERT INTO keep_me (note) VALUES ('still here')");
      db.close();
    }
    await using peer = await startSqlitePeer({ transport, dbFile });

    // The template the old hint suggested is refused at start, naming the step and the fix.
    const refused = await refusedStart({
      KLYM_GRYNYA_URL: peer.url,
      KLYM_GRYNYA_WRITE: JSON.stringify({
        create: { tool: "write_query", arguments: { query: "{{text}}" } },
      }),
    });
    assert.equal(refused.code, 2, refused.err);
    assert.match(refused.err, /KLYM_GRYNYA_WRITE/);
    assert.match(
      refused.err,
      /create \(write_query\) at \$\.query: \{\{text\}\} would be the whole/,
    );
    assert.match(refused.err, /unsafe_text_as_code/);

    // The first run suggests the tool that takes text as a value, never a query tool.
    const saved = await reportHint(peer.url);
    const template = suggested(saved.hint);
    assert.deepEqual(JSON.parse(template), {
      create: { tool: "append_insight", arguments: { insight: "{{text}}" } },
    });

    await using klym = await startKlym({ KLYM_GRYNYA_URL: peer.url, KLYM_GRYNYA_WRITE: template });
    const loop = await runTask(klym, "save_loop", { texts: SQL_TEXTS });
    assert.equal(loop.final.status, "succeeded", JSON.stringify(loop.final.error));
    const saves = (loop.final.result as { saves: Save[] }).saves;
    assert.deepEqual(saves.map((s) => [s.seq, s.ok]), [[1, true], [2, true], [3, true]]);

    // The database is untouched, and the texts are in the server's memo, byte for byte.
    const db = new DatabaseSync(dbFile, { readOnly: true });
    try {
      assert.deepEqual(
        db.prepare("SELECT note FROM keep_me").all().map((r) => r.note),
        ["still here"],
      );
    } finally {
      db.close();
    }
    const memo = await readResource(peer, "memo://insights");
    for (const text of SQL_TEXTS) assert.ok(memo.includes(`- ${text}\n`), memo);
  });

  Deno.test(`a notes bank over ${transport}: the drafted template stores N saves as N files`, async () => {
    const root = Deno.makeTempDirSync();
    await using peer = await startMemoryBankPeer({ transport, root });
    const saved = await reportHint(peer.url);
    const template = suggested(saved.hint);
    assert.deepEqual(JSON.parse(template), BANK_TEMPLATE);
    await using klym = await startKlym({ KLYM_GRYNYA_URL: peer.url, KLYM_GRYNYA_WRITE: template });
    const texts = ["first finding", "second finding", "third: with 'quotes' and\nlines"];
    const loop = await runTask(klym, "save_loop", { texts });
    assert.equal(loop.final.status, "succeeded", JSON.stringify(loop.final.error));
    const saves = (loop.final.result as { saves: Save[] }).saves;
    assert.deepEqual(saves.map((s) => s.ok), [true, true, true]);
    assert.deepEqual(storedFiles(`${root}/klym`, loop.taskId), texts);
  });
}

interface Restartable {
  name: string;
  start(port: number): Promise<Peer>;
  template: Record<string, unknown>;
  /** The texts of the task's saves, read back from the store (or from the replies). */
  stored(taskId: string, saves: Save[]): string[];
  /** Klym learns grynya went only from a refused call (no standing stream tells it). */
  refusedCall?: true;
  dispose?(): Promise<void>;
}

const BANK_ROOT = Deno.makeTempDirSync();
const BANK_TEMPLATE = {
  create: {
    tool: "memory_bank_write",
    arguments: { projectName: "klym", fileName: "klym-{{task_id}}-{{seq}}", content: "{{text}}" },
  },
};
const RESTARTABLE: Restartable[] = [
  ...(["sse", "http"] as const).map((transport) => ({
    name: `a notes bank over ${transport}`,
    start: (port: number) => startMemoryBankPeer({ transport, root: BANK_ROOT, port }),
    template: BANK_TEMPLATE,
    stored: (taskId: string) => storedFiles(`${BANK_ROOT}/klym`, taskId),
  })),
  {
    name: "a notes bank over Streamable HTTP with no standing stream",
    start: async (port: number) => noStreamFront(await bankBehindFront(), port),
    template: BANK_TEMPLATE,
    stored: (taskId: string) => storedFiles(`${BANK_ROOT}/klym`, taskId),
    refusedCall: true,
    dispose: async () => await (await bankBehindFront()).stop(),
  },
];

for (const shape of RESTARTABLE) {
  Deno.test(`grynya stopped just before a save (${shape.name}), back within the budget: every save lands`, async () => {
    const port = freePort();
    let peer = await shape.start(port);
    await using model = gatedModel();
    try {
      await using klym = await startKlym({
        KLYM_GRYNYA_URL: peer.url,
        KLYM_GRYNYA_WRITE: JSON.stringify(shape.template),
        KLYM_MODEL: "openai-compatible:scripted",
        KLYM_OPENAI_COMPATIBLE_URL: model.baseUrl,
      });
      const client = await klym.connect();
      const texts = ["save one", "save two", "save three"];
      const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
        kind: "save_after_gate",
        params: { texts },
      });
      // The task is connected and has its strategy; grynya goes, and its port refuses.
      await model.asked(client, task_id);
      await peer.stop();
      await assertRefused(port);
      model.answer();
      // grynya comes back once the task has found it gone and failed to reconnect.
      await waitLogged(client, task_id, /grynya: reconnect attempt \d+ .* failed after/);
      peer = await shape.start(port);
      const final = await waitFinal(client, task_id, 60_000);
      assert.equal(final.status, "succeeded", JSON.stringify(final.error));
      const saves = (final.result as { saves: Save[] }).saves;
      const lines = final.allLogs.map((l) => l.text);
      assert.deepEqual(
        saves.map((s) => [s.seq, s.ok]),
        [[1, true], [2, true], [3, true]],
        lines.join("\n"),
      );
      assert.deepEqual(shape.stored(task_id, saves), texts);
      const reconnected = lines.findIndex((l) =>
        /^grynya: reconnected to .* on attempt \d+/.test(l)
      );
      const failed = lines.findIndex((l) => /^grynya: reconnect attempt \d+ .* failed/.test(l));
      assert.ok(failed >= 0 && reconnected > failed, lines.join("\n"));
      assert.ok(!lines.some((l) => /call_interrupted|may have reached/.test(l)), lines.join("\n"));
      if (shape.refusedCall) {
        assert.ok(
          lines.some((l) =>
            /^grynya: tools\/call memory_bank_write was not sent \(.*Connection refused.*\); it cannot have landed/
              .test(l)
          ),
          lines.join("\n"),
        );
      }
    } finally {
      await peer.stop();
      await shape.dispose?.();
    }
  });
}

Deno.test("grynya stopped just before a save and never back: the save fails as grynya_unreachable within the budget", async () => {
  const root = Deno.makeTempDirSync();
  await using backend = await startMemoryBankPeer({ transport: "http", root });
  const port = freePort();
  const front = noStreamFront(backend, port);
  await using model = gatedModel();
  try {
    await using klym = await startKlym({
      KLYM_GRYNYA_URL: front.url,
      KLYM_GRYNYA_WRITE: JSON.stringify(BANK_TEMPLATE),
      KLYM_GRYNYA_RECONNECT_S: "2",
      KLYM_MODEL: "openai-compatible:scripted",
      KLYM_OPENAI_COMPATIBLE_URL: model.baseUrl,
    });
    const client = await klym.connect();
    const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
      kind: "save_after_gate",
      params: { texts: ["never lands"] },
    });
    await model.asked(client, task_id);
    await front.stop();
    await assertRefused(port);
    model.answer();
    const final = await waitFinal(client, task_id);
    const lines = final.allLogs.map((l) => l.text);
    assert.equal(final.status, "failed", lines.join("\n"));
    assert.equal(final.error?.code, "grynya_unreachable");
    assert.match(
      final.error!.message,
      /^tools\/call memory_bank_write was never sent, so it did not land: Cannot reach grynya at .* of 2000 ms \(KLYM_GRYNYA_RECONNECT_S\)/,
    );
    assert.ok(
      lines.some((l) => /^grynya: reconnect attempt \d+ .* giving up$/.test(l)),
      lines.join("\n"),
    );
    // By the server's clock: from the refused call to the task's end, within the reconnect budget
    // and the call timeout (60 s by default), never a hang.
    const refused = final.allLogs.find((l) => /was not sent .* it cannot have landed/.test(l.text));
    assert.ok(refused, lines.join("\n"));
    const took = Date.parse(final.finished_at!) - Date.parse(refused.time);
    assert.ok(took < 2_000 + 60_000, `${took} ms`);
    assert.deepEqual(storedFiles(`${root}/klym`, task_id), []);
  } finally {
    await front.stop();
  }
});

for (const idempotent of [false, true]) {
  Deno.test(
    `a write cut after it reached grynya is ${
      idempotent ? "sent again after a real reconnect, being idempotent" : "not sent again"
    }`,
    async () => {
      const root = Deno.makeTempDirSync();
      await using backend = await startMemoryBankPeer({ transport: "http", root });
      const port = freePort();
      const cut = Promise.withResolvers<void>();
      let front = noStreamFront(backend, port, () => cut.resolve());
      const template = {
        create: { ...BANK_TEMPLATE.create, ...(idempotent ? { idempotent: true } : {}) },
      };
      try {
        await using klym = await startKlym({
          KLYM_GRYNYA_URL: front.url,
          KLYM_GRYNYA_WRITE: JSON.stringify(template),
        });
        const client = await klym.connect();
        const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
          kind: "save_loop",
          params: { texts: ["cut mid-reply"] },
        });
        await cut.promise;
        await front.stop();
        if (idempotent) {
          await waitLogged(client, task_id, /grynya: reconnect attempt \d+ .* failed after/);
          front = noStreamFront(backend, port);
        }
        const final = await waitFinal(client, task_id, 60_000);
        assert.equal(final.status, "succeeded", JSON.stringify(final.error));
        const [save] = (final.result as { saves: Save[] }).saves;
        const lines = final.allLogs.map((l) => l.text);
        // Either way the write reached the store once: memory_bank_write never overwrites a file.
        assert.deepEqual(storedFiles(`${root}/klym`, task_id), ["cut mid-reply"]);
        if (idempotent) {
          assert.equal(save?.ok, true, JSON.stringify(save));
          const resend = lines.findIndex((l) => /may run twice, so it is sent again/.test(l));
          const back = lines.findIndex((l) => /^grynya: reconnected to .* on attempt \d+/.test(l));
          assert.ok(resend >= 0 && back > resend, lines.join("\n"));
        } else {
          assert.equal(save?.ok, false);
          assert.equal(save?.error?.code, "grynya_call_interrupted");
          assert.match(
            save!.error!.message,
            /it may have reached grynya, so it was not sent again \(a write template step can say "idempotent": true\)/,
          );
        }
      } finally {
        await front.stop();
      }
    },
  );
}

let bankBackend: Promise<Peer> | undefined;
/** One notes bank (Streamable HTTP) that the front below forwards to; it stays up throughout. */
const bankBehindFront = () =>
  bankBackend ??= startMemoryBankPeer({ transport: "http", root: BANK_ROOT });

/**
 * A Streamable HTTP front for a peer that keeps no standing stream (its GET answers 405, as many
 * servers' do): nothing tells Klym that grynya went until a call is refused. Stopping it closes
 * its port.
 */
function noStreamFront(
  backend: Peer,
  port: number,
  /** Called when the first tools/call has reached the backend and its answer is being cut. */
  cutFirstCall?: () => void,
): Peer {
  const upstream = new URL(backend.url);
  let cut = cutFirstCall;
  // Stopping ends what is in flight, as a server's going does: a shutdown waits for every answer.
  const going = new AbortController();
  const server = serveOn(port, async (req) => {
    if (req.method === "GET") {
      return new Response(null, { status: 405, headers: { allow: "POST, DELETE" } });
    }
    const url = new URL(req.url);
    url.port = upstream.port;
    const body = req.method === "POST" ? await req.text() : null;
    let answer: Response;
    try {
      answer = await fetch(url, {
        method: req.method,
        headers: req.headers,
        body,
        signal: going.signal,
      });
    } catch (error) {
      if (!going.signal.aborted) throw error;
      return new Response(null, { status: 503 });
    }
    if (!cut || !body?.includes('"tools/call"')) return answer;
    // The call landed; its answer ends halfway, as when grynya dies mid-reply.
    const text = await answer.text();
    const onCut = cut;
    cut = undefined;
    onCut();
    return new Response(
      new ReadableStream({
        start(controller) {
          controller.enqueue(new TextEncoder().encode(text.slice(0, text.length >> 1)));
          controller.close();
        },
      }),
      { headers: { "content-type": "application/json" } },
    );
  });
  const stop = async () => {
    going.abort();
    await server.shutdown();
  };
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    port,
    pid: 0,
    output: () => "",
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * Serves on `port` again after a stop: another process may have taken the port once it was free
 * (freePort's ports are anyone's once freed), and then this fails at once, saying so.
 */
function serveOn(port: number, handler: Deno.ServeHandler): Deno.HttpServer {
  try {
    return Deno.serve({ hostname: "127.0.0.1", port, onListen: () => {} }, handler);
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    throw new Error(`Port ${port} was taken by another process while grynya was down`, {
      cause: error,
    });
  }
}

/** grynya's port refuses connections: nothing else took it once grynya stopped. */
async function assertRefused(port: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port }).catch((error) => {
    if (error instanceof Deno.errors.ConnectionRefused) return undefined;
    throw error;
  });
  conn?.close();
  assert.ok(!conn, `Port ${port} answers although grynya stopped: another process took it`);
}

/**
 * A scripted model that holds its answer to the task's question until the test gives it. Waiting
 * for the question fails clearly when the task ends without asking (or after PATIENCE_MS); going
 * away gives the answer, since the model's server waits for every answer it holds before it stops.
 */
function gatedModel() {
  const asked = Promise.withResolvers<void>();
  const gate = Promise.withResolvers<void>();
  const model = startScriptedModel(async () => {
    asked.resolve();
    await gate.promise;
    return { text: "yes" };
  });
  let seen = false;
  void asked.promise.then(() => seen = true);
  return {
    baseUrl: model.baseUrl,
    answer: () => gate.resolve(),
    async asked(client: Client, taskId: string): Promise<void> {
      for (const deadline = Date.now() + PATIENCE_MS; !seen;) {
        const status = await call<Status>(client, "check_task_status", { task_id: taskId });
        if (seen) return;
        if (status.finished_at || Date.now() > deadline) {
          throw new Error(`Task ${taskId} has not asked the model: ${JSON.stringify(status)}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async [Symbol.asyncDispose]() {
      gate.resolve();
      await model[Symbol.asyncDispose]();
    },
  };
}

/** The files of one task's saves, in save order (none when the task's folder was never made). */
function storedFiles(dir: string, taskId: string): string[] {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  const names = entries.map((e) => e.name)
    .filter((n) => n.startsWith(`klym-${taskId}-`))
    .sort((a, b) => Number(a.split("-").at(-1)) - Number(b.split("-").at(-1)));
  return names.map((n) => Deno.readTextFileSync(`${dir}/${n}`));
}

async function readResource(peer: Peer, uri: string): Promise<string> {
  const client = new Client({ name: "store-reader", version: "1" });
  await client.connect(new SSEClientTransport(new URL(peer.url.replace(/\/mcp$/, "/sse"))));
  try {
    const { contents } = await client.readResource({ uri });
    return contents.map((c) => ("text" in c ? c.text : "")).join("");
  } finally {
    await client.close();
  }
}
