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
