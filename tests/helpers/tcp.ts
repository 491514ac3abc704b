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

/**
 * A TCP relay to a local port that a test can cut (every connection dropped, new ones refused:
 * a network partition) and heal, or pause (every byte held, each connection kept: a partition
 * its sockets never see) and resume (the held bytes delivered, late).
 */
export class TcpRelay {
  readonly #listener: Deno.Listener;
  readonly #conns = new Set<Deno.Conn>();
  readonly #accepting: Promise<void>;
  #cut = false;
  /** While paused, a promise that resume settles; bytes wait for it. */
  #paused: PromiseWithResolvers<void> | undefined;
  /** Bytes whose next sender's connection is held from them on (`holdNextSending`). */
  #holdNext: string | undefined;
  /** Connections held by `hold`, by the relay's own port towards the target. */
  readonly #held = new Map<number, PromiseWithResolvers<void>>();

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
    this.#conns.add(client);
    this.#conns.add(server);
    const port = (server.localAddr as Deno.NetAddr).port;
    const close = () => {
      for (const c of [client, server]) {
        if (this.#conns.delete(c)) {
          try {
            c.close();
          } catch {
            // Closed already.
          }
        }
      }
    };
    await Promise.allSettled([
      client.readable.pipeThrough(this.#gate(port, true)).pipeTo(server.writable, {
        preventClose: true,
      }),
      server.readable.pipeThrough(this.#gate(port)).pipeTo(client.writable, {
        preventClose: true,
      }),
    ].map((p) => p.finally(close)));
  }

  /** Passes bytes on, holding each while the relay is paused or this connection is held. */
  #gate(port: number, fromClient = false): TransformStream<Uint8Array, Uint8Array> {
    return new TransformStream({
      transform: async (chunk, controller) => {
        if (
          fromClient && this.#holdNext && new TextDecoder().decode(chunk).includes(this.#holdNext)
        ) {
          this.#holdNext = undefined;
          this.hold(port);
        }
        while (this.#paused || this.#held.has(port)) {
          await (this.#paused ?? this.#held.get(port)!).promise;
        }
        controller.enqueue(chunk);
      },
    });
  }

  /**
   * Holds every byte either way on the one connection the target sees coming from `port` (its
   * `client_port` in PostgreSQL's `pg_stat_activity`), for good: a connection lost without a
   * word, while every other one, and new ones, pass.
   */
  /** Lets every held connection go on, with what it held delivered. */
  release(): void {
    for (const held of this.#held.values()) held.resolve();
    this.#held.clear();
  }

  /** The ports of the connections held now (see `hold`). */
  get held(): number[] {
    return [...this.#held.keys()];
  }

  hold(port: number): void {
    if (!this.#held.has(port)) this.#held.set(port, Promise.withResolvers<void>());
  }

  /**
   * Holds, from the chunk that carries `text` on, the next connection whose client sends it:
   * a request that is neither answered nor failed.
   */
  holdNextSending(text: string): void {
    this.#holdNext = text;
  }

  /** Holds every byte either way, on every connection (new ones too), until `resume`. */
  pause(): void {
    this.#paused ??= Promise.withResolvers<void>();
  }

  /** Delivers what was held, and passes bytes on again. */
  resume(): void {
    const paused = this.#paused;
    this.#paused = undefined;
    paused?.resolve();
  }

  /** Drops every connection and refuses new ones until `heal`. */
  cut(): void {
    this.#cut = true;
    for (const conn of [...this.#conns]) {
      this.#conns.delete(conn);
      try {
        conn.close();
      } catch {
        // Closed already.
      }
    }
  }

  heal(): void {
    this.#cut = false;
  }

  async close(): Promise<void> {
    this.resume();
    for (const held of this.#held.values()) held.resolve();
    this.#held.clear();
    this.cut();
    this.#listener.close();
    await this.#accepting.catch(() => {});
  }
}
