/**
 * `klym --stdio`: the assistant's stdio session, carried to the user's Klym service over its
 * socket. The bridge connects (starting the service in the background when nothing answers: a
 * socket left by a killed service refuses the connection, and the new service replaces it), checks
 * the service's hello, answers with its own, and then copies bytes both ways until either side
 * ends. It knows nothing of MCP beyond one thing: when the service can be neither reached nor
 * started, it answers the client's first request with a JSON-RPC error naming the cause and the
 * fix, so the assistant shows why, and exits 1.
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "../config.ts";
import { VERSION } from "../version.ts";
import { readLines } from "../lines.ts";
import { BRIDGE_PROTOCOL, ownHelloLine, readHello, ServiceHello } from "./handshake.ts";
import { type ServicePaths, serviceProblem } from "./service_paths.ts";
import { SERVICE_EXIT_TAKEN, spawnService } from "./service_spawner.ts";
import { isKlymError, KlymError } from "../errors.ts";

const logger = getLogger(["klym", "bridge"]);

/**
 * How long a bridge whose service found the journal taken (by the winner of a race, about to
 * listen) waits for that one's socket before it starts another service.
 */
const TAKEN_RETRY_MS = 2000;
/** Longest pause between two connection attempts while the service starts. */
const RETRY_MAX_MS = 200;
/** How long a failing bridge waits for the client's first request, to answer it with the error. */
export const BRIDGE_ERROR_WAIT_MS = 30_000;
/** A JSON-RPC line the failing bridge reads looking for a request id; longer ones are skipped. */
const ERROR_LINE_MAX_BYTES = 1024 ** 2;
/** The JSON-RPC error code of "the service cannot be reached or started". */
export const BRIDGE_ERROR_CODE = -32000;

export interface BridgeIo {
  readonly stdin: ReadableStream<Uint8Array>;
  readonly stdout: WritableStream<Uint8Array>;
}

/** Runs the bridge until the client or the service ends the session; resolves to an exit code. */
export async function runBridge(
  config: Config,
  paths: ServicePaths,
  flags: readonly string[],
  io: BridgeIo = { stdin: Deno.stdin.readable, stdout: Deno.stdout.writable },
): Promise<number> {
  let link: Link;
  try {
    link = await reachService(config, paths, flags);
  } catch (error) {
    if (!isKlymError(error, "SERVICE_UNREACHABLE")) throw error;
    Deno.stderr.writeSync(new TextEncoder().encode(`klym: ${error.message}\n`));
    await answerWithError(io, error.message);
    return 1;
  }
  return await pipe(link, io);
}

interface Link {
  readonly conn: Deno.UnixConn;
  readonly hello: ServiceHello;
  readonly rest: ReadableStream<Uint8Array>;
}

/** Connects to the service, starting it when nothing answers; else `SERVICE_UNREACHABLE`. */
async function reachService(
  config: Config,
  paths: ServicePaths,
  flags: readonly string[],
): Promise<Link> {
  const problem = serviceProblem(paths);
  if (problem) {
    throw new KlymError(
      "SERVICE_UNREACHABLE",
      `Cannot reach the Klym service: ${problem} (or run this Klym alone with --standalone)`,
    );
  }
  const deadline = Date.now() + config.serviceStartS * 1000;
  let child: { process: Deno.ChildProcess; status?: Deno.CommandStatus } | undefined;
  /** When a service this bridge started found the journal taken: another Klym is starting. */
  let takenAt: number | undefined;
  let pause = 10;
  while (true) {
    const link = await connect(paths);
    if (link) return checked(link, paths);
    if (child?.status && child.status.code !== SERVICE_EXIT_TAKEN) {
      throw new KlymError(
        "SERVICE_UNREACHABLE",
        `The Klym service this bridge started exited with code ${child.status.code} before ` +
          `listening; ${logTail(paths.log)}`,
      );
    }
    if (child?.status) takenAt ??= Date.now();
    if (Date.now() > deadline) {
      throw new KlymError(
        "SERVICE_UNREACHABLE",
        takenAt === undefined
          ? `No Klym service answered at "${paths.socket}" within ${config.serviceStartS} s ` +
            `(KLYM_SERVICE_START_S); ${logTail(paths.log)}`
          : `Another Klym holds the journal "${paths.journal}" but no service answered at ` +
            `"${paths.socket}" within ${config.serviceStartS} s (KLYM_SERVICE_START_S): a Klym ` +
            "that serves no bridges (--standalone, an older version, or one whose state folder is " +
            "not private) holds it; stop that Klym, or run this one with --standalone",
      );
    }
    // Nothing answers: start a service, unless one started by this bridge still runs, or lost
    // the journal to another Klym a moment ago (the winner of a race, about to listen: its socket
    // is waited for, and a new service is tried only once it has had TAKEN_RETRY_MS).
    const waiting = takenAt !== undefined && Date.now() - takenAt < TAKEN_RETRY_MS;
    if ((child === undefined || child.status !== undefined) && !waiting) {
      takenAt = undefined;
      const process = spawnService(flags);
      const started = { process } as { process: Deno.ChildProcess; status?: Deno.CommandStatus };
      process.status.then((status) => (started.status = status));
      child = started;
      logger.info("Started the Klym service (pid {pid}); it logs to {log}", {
        pid: process.pid,
        log: paths.log,
      });
    }
    // The service takes a moment to open its journal and listen: wait for it, or for its exit.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      ...(child?.status === undefined ? [child!.process.status] : []),
      new Promise((resolve) => (timer = setTimeout(resolve, pause))),
    ]);
    clearTimeout(timer);
    pause = Math.min(RETRY_MAX_MS, pause * 2);
  }
}

/** A connection with the service's hello read, or `undefined` when nothing listens (yet). */
async function connect(paths: ServicePaths): Promise<Link | undefined> {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: paths.socket });
  } catch (error) {
    // No socket, or one a killed service left (nobody listens): start or wait for the service.
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.ConnectionRefused) {
      return undefined;
    }
    throw new KlymError(
      "SERVICE_UNREACHABLE",
      `Cannot connect to the Klym service at "${paths.socket}": ${(error as Error).message}`,
    );
  }
  try {
    const { hello, rest } = await readHello(conn.readable, ServiceHello);
    return { conn, hello, rest };
  } catch (error) {
    conn.close();
    if (!isKlymError(error, "HANDSHAKE_FAILED")) throw error;
    // A service that is stopping closes at once: the next attempt starts a new one.
    if (/ended before/.test(error.message)) return undefined;
    throw new KlymError(
      "SERVICE_UNREACHABLE",
      `The Klym service at "${paths.socket}" did not say who it is (${error.message}); stop the ` +
        `process listening there, or run this Klym with --standalone`,
    );
  }
}

/** The link when the service speaks this bridge's protocol; else `SERVICE_UNREACHABLE`. */
function checked(link: Link, paths: ServicePaths): Link {
  const { hello } = link;
  if (hello.protocol !== BRIDGE_PROTOCOL) {
    link.conn.close();
    throw new KlymError(
      "SERVICE_UNREACHABLE",
      `The Klym service running for "${paths.journal}" (pid ${hello.pid}, Klym ${hello.version}) ` +
        `speaks bridge protocol ${hello.protocol}, and this Klym (${VERSION}) speaks ` +
        `${BRIDGE_PROTOCOL}: stop that service (kill ${hello.pid}; its tasks become interrupted) ` +
        "and connect again to start this version's, or run this Klym with --standalone",
    );
  }
  const other = hello.version === VERSION
    ? ""
    : ` (Klym ${hello.version}; this bridge is ${VERSION})`;
  logger.info("Bridging to the Klym service (pid {pid}){other} at {socket}; dashboard: {url}", {
    pid: hello.pid,
    other,
    socket: paths.socket,
    url: hello.url ? `${hello.url}/ui` : "none (the service serves no HTTP)",
  });
  return link;
}

/** Copies the client's bytes to the service and back until either side ends. */
async function pipe(link: Link, io: BridgeIo): Promise<number> {
  const { conn } = link;
  const writer = conn.writable.getWriter();
  await writer.write(ownHelloLine({ klym: "bridge" }));
  let clientEnded = false;
  const up = (async () => {
    try {
      for await (const chunk of io.stdin) await writer.write(chunk);
      clientEnded = true;
      // The client closed its stdin: the service ends the session and closes its side.
      await writer.close();
    } catch {
      // The service went away: `down` ends too.
    }
  })();
  let serviceEnded = false;
  try {
    await link.rest.pipeTo(io.stdout, { preventClose: true });
    serviceEnded = true;
  } catch (error) {
    logger.debug("bridge: {error}", { error });
  }
  if (!clientEnded) {
    logger.error(
      "The Klym service (pid {pid}) closed the session{how}; its log may say why",
      { pid: link.hello.pid, how: serviceEnded ? "" : " abruptly" },
    );
  }
  try {
    conn.close();
  } catch {
    // Already closed.
  }
  if (clientEnded) await up;
  return clientEnded ? 0 : 1;
}

/**
 * Answers the client's first request (the first line with an `id`) with a JSON-RPC error holding
 * `message`, waiting for it at most `BRIDGE_ERROR_WAIT_MS`.
 */
async function answerWithError(io: BridgeIo, message: string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), BRIDGE_ERROR_WAIT_MS);
  });
  const lines = readLines(io.stdin, ERROR_LINE_MAX_BYTES);
  const firstId = (async () => {
    for await (const { line, truncated } of lines) {
      if (truncated) continue;
      try {
        const parsed = JSON.parse(line);
        const id = parsed?.id;
        if (
          (typeof id === "string" || typeof id === "number") && typeof parsed.method === "string"
        ) {
          return id;
        }
      } catch {
        // Not JSON-RPC: skip it.
      }
    }
    return undefined;
  })();
  const id = await Promise.race([firstId, timeout]);
  clearTimeout(timer);
  if (id === undefined) return;
  const reply = {
    jsonrpc: "2.0",
    id,
    error: { code: BRIDGE_ERROR_CODE, message, data: { klym: VERSION } },
  };
  const writer = io.stdout.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(reply) + "\n")).catch(() => {});
  writer.releaseLock();
}

/** The last lines of the service's log, to show with a failure. */
function logTail(log: string, lines = 5): string {
  let text: string;
  try {
    text = Deno.readTextFileSync(log);
  } catch {
    return `its log "${log}" is empty or missing`;
  }
  const tail = text.trimEnd().split("\n").slice(-lines).map((line) => {
    try {
      const entry = JSON.parse(line);
      return Array.isArray(entry?.message)
        ? entry.message.join("")
        : String(entry?.message ?? line);
    } catch {
      return line;
    }
  });
  return `its log "${log}" ends: ${tail.join(" | ").slice(-2000)}`;
}
