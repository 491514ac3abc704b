/** Speaking to a real Klym as one principal: an MCP client with its token, a dashboard login. */
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { PATIENCE_MS } from "./patience.ts";

/** An MCP client (Streamable HTTP) sending `token`; closed when disposed. */
export async function connectAs(url: string, token: string): Promise<Client & AsyncDisposable> {
  const client = new Client({ name: "klym-test", version: "1.0.0" });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  return Object.assign(client, { [Symbol.asyncDispose]: () => client.close() });
}

/** Logs in to the dashboard with `token`; the session cookie (`klym_ui=…`). */
export async function uiLogin(url: string, token: string): Promise<string> {
  const response = await fetch(`${url}/ui/login`, {
    method: "POST",
    headers: { origin: url },
    body: new URLSearchParams({ token }),
    redirect: "manual",
  });
  await response.body?.cancel();
  if (response.status !== 303) throw new Error(`Login answered ${response.status}`);
  return (response.headers.get("set-cookie") ?? "").split(";")[0]!;
}

export interface StreamEvent {
  event: string;
  data: string;
}

/** Reads server-sent events from `body` until `until` holds, then cancels the body. */
export async function readEvents(
  body: ReadableStream<Uint8Array>,
  until: (events: StreamEvent[]) => boolean,
  timeoutMs = PATIENCE_MS,
): Promise<StreamEvent[]> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const events: StreamEvent[] = [];
  let buffer = "";
  const timer = setTimeout(() => reader.cancel(new Error("timed out")), timeoutMs);
  try {
    while (!until(events)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`stream ended after ${JSON.stringify(events)}`);
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) !== -1) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event && data !== undefined) events.push({ event, data });
      }
    }
    return events;
  } finally {
    clearTimeout(timer);
    await reader.cancel().catch(() => {});
  }
}
