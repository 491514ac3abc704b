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
