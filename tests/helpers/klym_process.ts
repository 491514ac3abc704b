/** Starts the real Klym server as a child process on a free port and connects MCP clients to it. */
import {
  Client,
  SSEClientTransport,
  StreamableHTTPClientTransport,
} from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import { readLines } from "../../src/lines.ts";
import { PATIENCE_MS } from "./patience.ts";

export const REPO = new URL("../../", import.meta.url).pathname;
export const FIXTURE_TASKS = new URL("../fixtures/tasks/", import.meta.url).pathname;
export const MAIN = new URL("../../main.ts", import.meta.url).pathname;

export type HttpTransportName = "http" | "sse";

export interface KlymProcess extends AsyncDisposable {
  readonly url: string;
  readonly pid: number;
  /** Everything the server logged to stderr so far. */
  readonly logs: string[];
  connect(transport?: HttpTransportName): Promise<Client>;
  signal(signal: Deno.Signal): void;
  exited: Promise<Deno.CommandStatus>;
}

/** The server's URL from its "Serving MCP at" log line: a JSON line's `url`, or the pretty text. */
export function servingUrl(line: string): string | undefined {
  if (!line.includes("Serving MCP at")) return undefined;
  try {
    const url = JSON.parse(line)?.properties?.url;
    if (typeof url === "string") return url;
  } catch {
    // Not a JSON line: the pretty format.
  }
  return /Serving MCP at "?(https?:\/\/[^\s"]+?)"?\/mcp/.exec(line)?.[1];
}

/**
 * Servers run in a session of their own (setsid), as a service does: the kernel shares the CPU
 * fairly between sessions, so a server's task processes, which run at nice 19, yield only to their
 * own server, not to the busy processes of test files running beside it.
 */
export const OWN_SESSION = { detached: true } as const;

/** Tests run in parallel: each server keeps its tasks in memory unless a test names a file. */
const baseEnv = (env: Record<string, string>) => ({
  KLYM_TASKS_DIR: FIXTURE_TASKS,
  KLYM_STATE: "memory",
  KLYM_LOG_LEVEL: "debug",
  ...env,
});

/** This process's environment with `env` over it, less DENO_COVERAGE_DIR. */
function withoutCoverage(env: Record<string, string>): Record<string, string> {
  const all = { ...Deno.env.toObject(), ...env };
  delete all.DENO_COVERAGE_DIR;
  return all;
}

export interface StartOptions {
  /** The server's umask (e.g. "022"), set by a shell that then runs it. */
  readonly umask?: string;
  /** Listen on this port (a node restarted where its URL says); default a free one. */
  readonly port?: number;
  /** Flags for Deno before the script (e.g. `--inspect=…` for a bench that reads the heap). */
  readonly denoArgs?: readonly string[];
  /**
   * Runs the server (and so its task processes) without the coverage run's DENO_COVERAGE_DIR: a
   * process collecting coverage writes it as it exits, which a bound on how soon a process is
   * gone would count (hundreds of ms each on a loaded machine, seconds at worst).
   */
  readonly withoutCoverage?: boolean;
}

export async function startKlym(
  env: Record<string, string> = {},
  options: StartOptions = {},
): Promise<KlymProcess> {
  const args = [
    "run",
    "-A",
    "--unstable-worker-options",
    ...options.denoArgs ?? [],
    MAIN,
    "--port",
    String(options.port ?? 0),
  ];
  const umask = options.umask;
  const child = new Deno.Command(umask === undefined ? Deno.execPath() : "sh", {
    args: umask === undefined
      ? args
      : ["-c", `umask ${umask} && exec "$0" "$@"`, Deno.execPath(), ...args],
    ...(options.withoutCoverage
      ? { env: withoutCoverage(baseEnv(env)), clearEnv: true }
      : { env: baseEnv(env) }),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    ...OWN_SESSION,
  }).spawn();
  const logs: string[] = [];
  const { promise: listening, resolve, reject } = Promise.withResolvers<string>();
  const pump = (async () => {
    for await (const { line } of readLines(child.stderr, 1 << 20)) {
      logs.push(line);
      const url = servingUrl(line);
      if (url) resolve(url);
    }
    reject(new Error(`Klym exited before listening:\n${logs.join("\n")}`));
  })();
  const exited = child.status.then(async (status) => {
    await pump;
    return status;
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), PATIENCE_MS);
  const url = await listening.finally(() => clearTimeout(timer));
  const clients: Client[] = [];
  return {
    url,
    pid: child.pid,
    logs,
    exited,
    async connect(transport = "http") {
      const client = new Client({ name: "klym-test", version: "1.0.0" });
      const token = env.KLYM_AUTH_TOKEN;
      const requestInit = { headers: token ? { authorization: `Bearer ${token}` } : {} };
      await client.connect(
        transport === "http"
          ? new StreamableHTTPClientTransport(new URL(`${url}/mcp`), { requestInit })
          : new SSEClientTransport(new URL(`${url}/sse`), { requestInit }),
      );
      clients.push(client);
      return client;
    },
    signal(signal) {
      child.kill(signal);
    },
    async [Symbol.asyncDispose]() {
      await Promise.allSettled(clients.map((c) => c.close()));
      try {
        child.kill("SIGTERM");
      } catch {
        // Already exited.
      }
      const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

/** A server a file's tests share; `client` connects one that the test closes (`await using`). */
export interface SharedKlym {
  server(): Promise<KlymProcess>;
  client(): Promise<Client & AsyncDisposable>;
}

/**
 * One server for those tests of a file that need nothing of their own from it (each keeps to its
 * own tasks and clients): started by the first test that asks, stopped (SIGTERM) when the file's
 * tests are done and its module unloads. Saves a server start per test.
 */
export function sharedKlym(env: Record<string, string> = {}): SharedKlym {
  let started: Promise<KlymProcess> | undefined;
  const server = () =>
    started ??= startKlym(env).then((klym) => {
      globalThis.addEventListener("unload", () => klym.signal("SIGTERM"));
      return klym;
    });
  return {
    server,
    async client() {
      const client = await (await server()).connect();
      return Object.assign(client, { [Symbol.asyncDispose]: () => client.close() });
    },
  };
}

/** Runs Klym expecting it to refuse to start: its exit code and stderr. */
export async function refusedStart(
  env: Record<string, string>,
): Promise<{ code: number; err: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-worker-options", MAIN, "--port", "0"],
    env: { KLYM_TASKS_DIR: FIXTURE_TASKS, KLYM_LOG_FORMAT: "json", ...env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    signal: AbortSignal.timeout(PATIENCE_MS),
    ...OWN_SESSION,
  }).output();
  return { code: out.code, err: new TextDecoder().decode(out.stderr) };
}

/** A client speaking to Klym over stdio, Klym being its child process. */
export async function connectStdio(env: Record<string, string> = {}): Promise<Client> {
  const client = new Client({ name: "klym-test", version: "1.0.0" });
  await client.connect(
    new StdioClientTransport({
      // setsid(1) gives the server a session of its own (it execs: its child leads no group).
      command: "setsid",
      args: [Deno.execPath(), "run", "-A", "--unstable-worker-options", MAIN, "--stdio"],
      env: { ...baseEnv(env), PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "" },
      stderr: "ignore",
    }),
  );
  return client;
}

/** Calls a tool and returns its structured content, failing loudly on a tool error. */
export async function call<T = Record<string, unknown>>(
  client: Client,
  name: string,
  args: Record<string, unknown>,
): Promise<T> {
  const result = await client.callTool({ name, arguments: args });
  if (result.isError) {
    throw new Error(`${name} failed: ${JSON.stringify(result.content)}`);
  }
  return result.structuredContent as T;
}

/** Calls a tool that must fail and returns its error text. */
export async function callError(
  client: Client,
  name: string,
  args: Record<string, unknown>,
): Promise<string> {
  const result = await client.callTool({ name, arguments: args });
  if (!result.isError) throw new Error(`${name} succeeded unexpectedly: ${JSON.stringify(result)}`);
  return (result.content as { text: string }[]).map((c) => c.text).join("\n");
}

export interface Status {
  task_id: string;
  status: string;
  logs: { seq: number; stream: string; time: string; text: string }[];
  next_log_cursor: number;
  logs_dropped: number;
  result?: unknown;
  error?: { code: string; message: string };
  progress?: { done: number; total?: number; message?: string };
  created_at?: string;
  started_at?: string;
  code_started_at?: string;
  finished_at?: string;
}

/**
 * How long a final task's code ran, by the server's clock (from its code's start to its end): a
 * bound on a timeout that a loaded machine's slow process starts do not stretch.
 */
export function ranMs(final: Status): number {
  if (!final.code_started_at || !final.finished_at) {
    throw new Error(`Task ${final.task_id} has no code start and end: ${JSON.stringify(final)}`);
  }
  return Date.parse(final.finished_at) - Date.parse(final.code_started_at);
}

const FINAL = new Set(["succeeded", "failed", "cancelled", "timed_out", "interrupted"]);

/** Polls check_task_status as an assistant would until the task is final; gathers every log line. */
export async function waitFinal(
  client: Client,
  taskId: string,
  timeoutMs = PATIENCE_MS,
): Promise<Status & { allLogs: Status["logs"] }> {
  const deadline = Date.now() + timeoutMs;
  const allLogs: Status["logs"] = [];
  let cursor = 0;
  while (true) {
    const status = await call<Status>(client, "check_task_status", {
      task_id: taskId,
      log_cursor: cursor,
    });
    allLogs.push(...status.logs);
    cursor = status.next_log_cursor;
    if (FINAL.has(status.status) && status.logs.length === 0) return { ...status, allLogs };
    if (Date.now() > deadline) {
      throw new Error(`Task ${taskId} not final after ${timeoutMs} ms: ${JSON.stringify(status)}`);
    }
    if (!FINAL.has(status.status)) await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Polls check_task_status as an assistant would until the task has written `seen` log lines (a
 * count: its code runs) or a line matching `seen` (a pattern); returns the status that showed them.
 */
export async function waitLogged(
  client: Client,
  taskId: string,
  seen: number | RegExp = 1,
  timeoutMs = PATIENCE_MS,
): Promise<Status> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const status = await call<Status>(client, "check_task_status", {
      task_id: taskId,
      max_log_lines: 1000,
    });
    const lines = status.logs.map((l) => l.text);
    if (typeof seen === "number" ? lines.length >= seen : lines.some((l) => seen.test(l))) {
      return status;
    }
    if (FINAL.has(status.status) || Date.now() > deadline) {
      throw new Error(`Task ${taskId} has not logged ${seen}: ${JSON.stringify(status)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Child processes of `pid` (Linux), for checking that task processes are gone. */
export function childPids(pid: number): number[] {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim().split(/\s+/)
      .filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * Child processes `serverPid` still has (only those in `among`, when given), once there are none
 * or after `withinMs`: a task process is gone a moment after its task is final.
 */
export async function childrenLeft(
  serverPid: number,
  withinMs: number,
  among?: readonly number[],
): Promise<number[]> {
  const deadline = Date.now() + withinMs;
  const left = () => childPids(serverPid).filter((pid) => !among || among.includes(pid));
  while (left().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return left();
}

/** CPU seconds used so far by a process and its reaped children (Linux). */
export function cpuSeconds(pid: number): number {
  const fields = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1]!.split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / 100;
}
