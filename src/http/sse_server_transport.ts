/**
 * The legacy HTTP+SSE transport (MCP 2024-11-05), served with web-standard streams: `GET /sse`
 * opens the event stream and names the endpoint, `POST /messages?sessionId=…` carries client
 * messages. The SDK's own version needs Node's `http`; this one needs only `Request`/`Response`.
 */
import type { JSONRPCMessage, Transport } from "@modelcontextprotocol/server";
import { parseJSONRPCMessage } from "@modelcontextprotocol/server";

const KEEPALIVE_MS = 15_000;

export class SseServerTransport implements Transport {
  readonly sessionId: string;
  onclose?: (() => void) | undefined;
  onerror?: ((error: Error) => void) | undefined;
  onmessage?: ((message: JSONRPCMessage) => void) | undefined;
  #controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  #keepalive: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  readonly #encoder = new TextEncoder();

  /** `sessionId`: a node's own (see `session_forward.ts`), default a random UUID. */
  constructor(readonly messagesPath: string, sessionId?: string) {
    this.sessionId = sessionId ?? crypto.randomUUID();
  }

  /** The response that carries the event stream; its end (client gone) closes the session. */
  response(): Response {
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
        this.#event("endpoint", `${this.messagesPath}?sessionId=${this.sessionId}`);
        this.#keepalive = setInterval(() => this.#write(": keepalive\n\n"), KEEPALIVE_MS);
      },
      cancel: () => void this.close(),
    });
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-cache, no-transform",
        connection: "keep-alive",
      },
    });
  }

  start(): Promise<void> {
    return Promise.resolve();
  }

  /** Hands a POSTed body to the server; returns false when it is not a JSON-RPC message. */
  receive(body: unknown): boolean {
    let message: JSONRPCMessage;
    try {
      message = parseJSONRPCMessage(body);
    } catch (error) {
      this.onerror?.(error as Error);
      return false;
    }
    this.onmessage?.(message);
    return true;
  }

  send(message: JSONRPCMessage): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("The SSE session is closed"));
    this.#event("message", JSON.stringify(message));
    return Promise.resolve();
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    clearInterval(this.#keepalive);
    try {
      this.#controller?.close();
    } catch {
      // Already closed by the client going away.
    }
    this.onclose?.();
    return Promise.resolve();
  }

  #event(name: string, data: string): void {
    this.#write(`event: ${name}\ndata: ${data}\n\n`);
  }

  #write(text: string): void {
    if (this.#closed) return;
    try {
      this.#controller?.enqueue(this.#encoder.encode(text));
    } catch {
      void this.close();
    }
  }
}
