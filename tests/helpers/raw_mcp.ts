/**
 * MCP over Streamable HTTP by hand, for tests that look at the wire itself: task-augmented calls
 * and `tasks/*` (which the TypeScript client SDK v2 does not send), SSE event ids, error ids, and
 * server requests that must travel on a POST's own stream.
 */
export interface RpcMessage {
  jsonrpc: "2.0";
  id?: string | number | null;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { code: number; message: string };
}

export interface SseEvent {
  id?: string;
  retry?: number;
  data: string;
}

/** Parses an SSE body into events (data lines joined). */
export function parseSse(text: string): SseEvent[] {
  const events: SseEvent[] = [];
  for (const block of text.split(/\n\n/)) {
    if (!block.trim()) continue;
    const event: SseEvent = { data: "" };
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("id: ")) event.id = line.slice(4);
      else if (line.startsWith("retry: ")) event.retry = Number(line.slice(7));
      else if (line.startsWith("data: ")) data.push(line.slice(6));
      else if (line === "data:") data.push("");
    }
    event.data = data.join("\n");
    events.push(event);
  }
  return events;
}

export class RawMcp {
  sessionId = "";
  #next = 1;

  constructor(readonly url: string, readonly token?: string) {}

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      ...(this.sessionId
        ? { "mcp-session-id": this.sessionId, "mcp-protocol-version": "2025-11-25" }
        : {}),
      ...extra,
    };
  }

  /** Posts one message and returns the HTTP response. */
  post(message: Record<string, unknown>): Promise<Response> {
    return fetch(`${this.url}/mcp`, {
      method: "POST",
      headers: this.headers(),
      body: JSON.stringify({ jsonrpc: "2.0", ...message }),
    });
  }

  /** Sends a request and returns every message of its answer (JSON, or the SSE stream's). */
  async exchange(method: string, params: Record<string, unknown> = {}): Promise<RpcMessage[]> {
    const res = await this.post({ id: this.#next++, method, params });
    this.sessionId ||= res.headers.get("mcp-session-id") ?? "";
    const text = await res.text();
    if (res.headers.get("content-type")?.includes("text/event-stream")) {
      return parseSse(text).filter((e) => e.data).map((e) => JSON.parse(e.data));
    }
    return [JSON.parse(text)];
  }

  /** Sends a request and returns its response message. */
  async request(method: string, params: Record<string, unknown> = {}): Promise<RpcMessage> {
    const messages = await this.exchange(method, params);
    const answer = messages.find((m) => m.id !== undefined && m.method === undefined);
    if (!answer) throw new Error(`No answer to ${method}: ${JSON.stringify(messages)}`);
    return answer;
  }

  async notify(method: string, params: Record<string, unknown> = {}): Promise<void> {
    const res = await this.post({ method, params });
    await res.body?.cancel();
  }

  async initialize(capabilities: Record<string, unknown> = {}): Promise<RpcMessage> {
    const answer = await this.request("initialize", {
      protocolVersion: "2025-11-25",
      capabilities,
      clientInfo: { name: "klym-raw-test", version: "1.0.0" },
    });
    await this.notify("notifications/initialized");
    return answer;
  }

  async close(): Promise<void> {
    if (!this.sessionId) return;
    const res = await fetch(`${this.url}/mcp`, { method: "DELETE", headers: this.headers() });
    await res.body?.cancel();
  }
}

export const MODERN_VERSION = "2026-07-28";
export const TASKS_EXTENSION = "io.modelcontextprotocol/tasks";

/** Protocol 2026-07-28 by hand: session-less requests, each with its `_meta` envelope and headers. */
export class ModernMcp {
  #next = 1;

  constructor(
    readonly url: string,
    /** The client capabilities every request declares (its envelope's). */
    readonly capabilities: Record<string, unknown> = { extensions: { [TASKS_EXTENSION]: {} } },
    readonly token?: string,
  ) {}

  /**
   * Sends one request; `headers` override the standard ones (`Mcp-Method`, `Mcp-Name`, …; "" leaves
   * one out), and
   * `meta` is added to its `_meta` envelope. `messages` are all it got back (notifications too).
   */
  async send(
    method: string,
    params: Record<string, unknown> = {},
    headers: Record<string, string> = {},
    meta: Record<string, unknown> = {},
  ): Promise<{ status: number; message: RpcMessage; messages: RpcMessage[] }> {
    const id = this.#next++;
    const name = params.name ?? params.taskId;
    const all: Record<string, string> = {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "mcp-protocol-version": MODERN_VERSION,
      "mcp-method": method,
      ...(typeof name === "string" ? { "mcp-name": name } : {}),
      ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
      ...headers,
    };
    const res = await fetch(`${this.url}/mcp`, {
      method: "POST",
      // A header given as "" is left out.
      headers: Object.fromEntries(Object.entries(all).filter(([, value]) => value !== "")),
      body: JSON.stringify({
        jsonrpc: "2.0",
        id,
        method,
        params: {
          ...params,
          _meta: {
            "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
            "io.modelcontextprotocol/clientCapabilities": this.capabilities,
            "io.modelcontextprotocol/clientInfo": { name: "klym-modern-test", version: "1.0.0" },
            ...meta,
          },
        },
      }),
    });
    const text = await res.text();
    const messages: RpcMessage[] = res.headers.get("content-type")?.includes("text/event-stream")
      ? parseSse(text).filter((e) => e.data).map((e) => JSON.parse(e.data))
      : [JSON.parse(text)];
    const message = messages.find((m) => m.id === id);
    if (!message) throw new Error(`No answer to ${method}: ${text.slice(0, 500)}`);
    return { status: res.status, message, messages };
  }

  /** The result of `method`; throws with the error's code and message when it failed. */
  async request(
    method: string,
    params: Record<string, unknown> = {},
  ): Promise<Record<string, unknown>> {
    const { message } = await this.send(method, params);
    if (message.error) {
      throw Object.assign(new Error(`${method}: ${message.error.message}`), {
        code: message.error.code,
      });
    }
    return message.result!;
  }
}

/** A 2025-11-25 `initialize` request, a raw client's first message (over HTTP, or a line over stdio). */
export const INITIALIZE = {
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: {
    protocolVersion: "2025-11-25",
    capabilities: {},
    clientInfo: { name: "klym-raw-test", version: "1.0.0" },
  },
};
