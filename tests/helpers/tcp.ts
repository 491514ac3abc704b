/** Established TCP connections to a local port, read from /proc (Linux). */
export function establishedTo(port: number): number {
  let count = 0;
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = "";
    try {
      text = Deno.readTextFileSync(table);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 4) continue;
      const localPort = parseInt(fields[1]!.split(":")[1]!, 16);
      if (localPort === port && fields[3] === "01") count++;
    }
  }
  return count;
}

/** Runs `fn` with a local port that accepts connections and never answers, then closes it all. */
export async function withSilentPort<T>(fn: (port: number) => Promise<T>): Promise<T> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) held.push(conn);
  })();
  try {
    return await fn((listener.addr as Deno.NetAddr).port);
  } finally {
    listener.close();
    await accepting.catch(() => {});
    for (const conn of held) conn.close();
  }
}

/** One connection through a `TcpRelay`: the client's side, the target's side, and its switch. */
interface Relayed {
  readonly client: Deno.Conn;
  readonly server: Deno.Conn;
  /** Blackholed: bytes read from either side are dropped, and both sockets stay open. */
  held: boolean;
}

/**
 * A TCP relay to a local port that a test can cut (every connection dropped, new ones refused:
 * a network partition) and heal, or whose open connections it can blackhole (their bytes no longer
 * pass either way while their sockets stay open: a query sent on one never settles).
 */
export class TcpRelay {
  readonly #listener: Deno.Listener;
  readonly #relayed = new Set<Relayed>();
  readonly #accepting: Promise<void>;
  #cut = false;

  constructor(readonly target: number) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accepting = this.#accept();
  }

  get port(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  async #accept(): Promise<void> {
    for await (const conn of this.#listener) {
      if (this.#cut) {
        conn.close();
        continue;
      }
      void this.#relay(conn);
    }
  }

  async #relay(client: Deno.Conn): Promise<void> {
    let server: Deno.Conn;
    try {
      server = await Deno.connect({ hostname: "127.0.0.1", port: this.target });
    } catch {
      client.close();
      return;
    }
    const relayed: Relayed = { client, server, held: false };
    this.#relayed.add(relayed);
    const close = () => this.#close(relayed);
    await Promise.allSettled([
      this.#pass(relayed, client, server),
      this.#pass(relayed, server, client),
    ].map((p) => p.finally(close)));
  }

  /** Passes what `from` sends on to `to`, but drops it while `relayed` is held. */
  async #pass(relayed: Relayed, from: Deno.Conn, to: Deno.Conn): Promise<void> {
    const writer = to.writable.getWriter();
    try {
      for await (const chunk of from.readable) {
        if (!relayed.held) await writer.write(chunk);
      }
    } finally {
      writer.releaseLock();
    }
  }

  #close(relayed: Relayed): void {
    if (!this.#relayed.delete(relayed)) return;
    for (const conn of [relayed.client, relayed.server]) {
      try {
        conn.close();
      } catch {
        // Closed already.
      }
    }
  }

  /** Drops every connection and refuses new ones until `heal`. */
  cut(): void {
    this.#cut = true;
    for (const relayed of [...this.#relayed]) this.#close(relayed);
  }

  heal(): void {
    this.#cut = false;
  }

  /**
   * Blackholes the connections open now whose port towards the target `which` picks (all by
   * default; PostgreSQL shows that port as `client_port`): their bytes stop passing either way and
   * their sockets stay open. Connections made later pass. Returns those ports.
   */
  blackhole(which: (targetSidePort: number) => boolean = () => true): number[] {
    const ports: number[] = [];
    for (const relayed of this.#relayed) {
      const port = (relayed.server.localAddr as Deno.NetAddr).port;
      if (relayed.held || !which(port)) continue;
      relayed.held = true;
      ports.push(port);
    }
    return ports;
  }

  async close(): Promise<void> {
    this.cut();
    this.#listener.close();
    await this.#accepting.catch(() => {});
  }
}
