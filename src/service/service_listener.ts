/**
 * The service's door for bridges: a Unix domain socket in the private state folder, each connection
 * one MCP stdio session (the same `serveStdio` entry `--stdio` uses over stdin and stdout, both
 * protocol eras, server-to-client requests such as sampling included), after a hello line each way
 * (see handshake.ts).
 *
 * Only the journal's owner opens it: holding the journal's lock, it knows that any socket file left
 * at the path is a dead service's, removes it, and listens afresh. Anything at the path that is not
 * a socket (a file, a link, a folder) is never removed: Klym names it and serves no bridges.
 *
 * Privacy: the folder is 0700 and the socket 0600, so only this user can connect. Deno has no call
 * for the peer's credentials (SO_PEERCRED), so the permissions are the whole guard.
 */
import { Readable, Writable } from "node:stream";
import { getLogger } from "@logtape/logtape";
import { serveStdio, StdioServerTransport } from "@modelcontextprotocol/server/stdio";
import type { McpServerFactory } from "@modelcontextprotocol/server";
import { closingWith } from "./closing_transport.ts";
import { refusingMalformedRetries } from "../http/retry_fields.ts";
import { BRIDGE_PROTOCOL, BridgeHello, ownHelloLine, readHello } from "./handshake.ts";
import type { ServicePaths } from "./service_paths.ts";
import { KlymError } from "../errors.ts";

const logger = getLogger(["klym", "service"]);

export const SOCKET_MODE = 0o600;

export interface ServiceListenerOptions {
  /** One MCP server per session, as for `--stdio`. */
  readonly createServer: McpServerFactory;
  /** The service's HTTP address, told to bridges in the hello. */
  readonly url: string | undefined;
}

export class ServiceListener {
  readonly #listener: Deno.Listener<Deno.UnixConn, Deno.UnixAddr>;
  readonly #sessions = new Set<() => Promise<void>>();
  readonly #accepting: Promise<void>;
  readonly #options: ServiceListenerOptions;
  readonly path: string;

  /** Listens on `paths.socket`; the caller holds the journal's lock. Throws when it cannot. */
  constructor(paths: ServicePaths, options: ServiceListenerOptions) {
    this.path = paths.socket;
    this.#options = options;
    removeStaleSocket(paths.socket);
    this.#listener = Deno.listen({ transport: "unix", path: paths.socket });
    try {
      Deno.chmodSync(paths.socket, SOCKET_MODE);
    } catch (error) {
      this.#listener.close();
      throw error;
    }
    this.#accepting = this.#accept();
  }

  /** Bridges connected now (an open session, or one still saying hello). */
  get connections(): number {
    return this.#sessions.size;
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) void this.#serve(conn);
    } catch (error) {
      if (!(error instanceof Deno.errors.BadResource)) {
        logger.error("The service socket stopped accepting: {error}", { error });
      }
    }
  }

  async #serve(conn: Deno.UnixConn): Promise<void> {
    let handle: { close(): Promise<void> } | undefined;
    let closed = false;
    const close = async () => {
      if (closed) return;
      closed = true;
      this.#sessions.delete(close);
      await handle?.close().catch(() => {});
      try {
        conn.close();
      } catch {
        // Already closed by the transport.
      }
    };
    this.#sessions.add(close);
    try {
      const writer = conn.writable.getWriter();
      await writer.write(ownHelloLine({ klym: "service", url: this.#options.url ?? null }));
      writer.releaseLock();
      const { hello, rest } = await readHello(conn.readable, BridgeHello);
      if (hello.protocol !== BRIDGE_PROTOCOL) {
        throw new KlymError(
          "HANDSHAKE_FAILED",
          `a bridge of Klym ${hello.version} speaks bridge protocol ${hello.protocol}, this service ${BRIDGE_PROTOCOL}`,
        );
      }
      const transport = new StdioServerTransport(
        Readable.fromWeb(rest as never),
        Writable.fromWeb(conn.writable as never),
      );
      logger.info("A bridge connected (pid {pid}, Klym {version})", {
        pid: hello.pid,
        version: hello.version,
      });
      handle = serveStdio(this.#options.createServer, {
        transport: closingWith(refusingMalformedRetries(transport), () => {
          logger.info("A bridge disconnected (pid {pid})", { pid: hello.pid });
          void close();
        }),
        onerror: (error) => logger.debug("bridge session: {error}", { error }),
      });
      if (closed) await handle.close();
    } catch (error) {
      logger.warning("A connection to the service socket was refused: {error}", {
        error: error instanceof Error ? error.message : String(error),
      });
      await close();
    }
  }

  /** Stops listening (the socket file goes) and ends every bridge's session. */
  async close(): Promise<void> {
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    await this.#accepting;
    await Promise.all([...this.#sessions].map((close) => close()));
  }
}

/** Removes a socket left at `path` by a dead service; refuses anything else found there. */
function removeStaleSocket(path: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  if (!info.isSocket) {
    throw new KlymError(
      "SERVICE_CANNOT_LISTEN",
      `"${path}" is in the way of the service socket and is not a socket; Klym never removes it: ` +
        "move it away and start again",
    );
  }
  Deno.removeSync(path);
  logger.info("Removed the socket {path} a stopped service left", { path });
}
