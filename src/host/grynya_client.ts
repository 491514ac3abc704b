/**
 * The task's MCP client to grynya. It connects lazily over Streamable HTTP or legacy SSE (`auto`
 * follows the spec's fallback: try Streamable HTTP, fall back to SSE on a 4xx), bounds every call
 * by a timeout and the task's signal, reconnects with backoff when the connection drops, and
 * names grynya's URL in every error.
 */
import {
  type CallToolResult,
  Client,
  SdkHttpError,
  SSEClientTransport,
  StreamableHTTPClientTransport,
  type Transport,
} from "@modelcontextprotocol/client";
import type { GrynyaSettings } from "../protocol.ts";
import { TaskFailure } from "../task_failure.ts";
import { VERSION } from "../version.ts";

const CLIENT_INFO = { name: "klym-task", version: VERSION };
const BACKOFF_BASE_MS = 250;

export interface GrynyaInfo {
  readonly name: string;
  readonly version: string;
  readonly transport: "sse" | "http";
}

export class GrynyaClient {
  #client: Client | undefined;
  #connecting: Promise<Client> | undefined;
  #info: GrynyaInfo | undefined;
  #closed = false;

  constructor(readonly settings: GrynyaSettings, readonly signal: AbortSignal) {}

  get info(): GrynyaInfo | undefined {
    return this.#info;
  }

  /** Connects if not connected; a failure is a `grynya_unreachable` TaskFailure. */
  connect(): Promise<Client> {
    if (this.#closed) return Promise.reject(new Error("The grynya client is closed"));
    if (this.#client) return Promise.resolve(this.#client);
    this.#connecting ??= this.#connectWithRetry().finally(() => this.#connecting = undefined);
    return this.#connecting;
  }

  listTools() {
    return this.#request("tools/list", (c, o) => c.listTools(undefined, o));
  }

  listResources() {
    return this.#request("resources/list", (c, o) => c.listResources(undefined, o));
  }

  readResource(uri: string) {
    return this.#request(`resources/read ${uri}`, (c, o) => c.readResource({ uri }, o));
  }

  listPrompts() {
    return this.#request("prompts/list", (c, o) => c.listPrompts(undefined, o));
  }

  getPrompt(name: string, args: Record<string, string> = {}) {
    return this.#request(
      `prompts/get ${name}`,
      (c, o) => c.getPrompt({ name, arguments: args }, o),
    );
  }

  callTool(name: string, args: Record<string, unknown> = {}): Promise<CallToolResult> {
    return this.#request(
      `tools/call ${name}`,
      (c, o) => c.callTool({ name, arguments: args }, o) as Promise<CallToolResult>,
    );
  }

  /** What grynya offers, as far as its capabilities say. */
  capabilities() {
    return this.#client?.getServerCapabilities();
  }

  async close(): Promise<void> {
    this.#closed = true;
    const client = this.#client;
    this.#client = undefined;
    await client?.close().catch(() => {});
  }

  async #request<T>(
    what: string,
    run: (client: Client, options: { signal: AbortSignal; timeout: number }) => Promise<T>,
  ): Promise<T> {
    for (let attempt = 0;; attempt++) {
      const client = await this.connect();
      try {
        return await run(client, { signal: this.signal, timeout: this.settings.callTimeoutMs });
      } catch (error) {
        this.signal.throwIfAborted();
        // A dropped connection is retried once after reconnecting; anything else is final.
        if (this.#client === client && !isConnectionLoss(error)) throw this.#describe(what, error);
        if (attempt >= 1) throw this.#describe(what, error);
        await this.#drop(client);
      }
    }
  }

  #describe(what: string, error: unknown): Error {
    const message = error instanceof Error ? error.message : String(error);
    if (/timed? ?out/i.test(message)) {
      return new TaskFailure(
        "grynya_timeout",
        `grynya at ${this.settings.url} did not answer ${what} within ${this.settings.callTimeoutMs} ms (KLYM_GRYNYA_CALL_TIMEOUT_MS)`,
        { cause: error },
      );
    }
    return new TaskFailure(
      "grynya_error",
      `grynya at ${this.settings.url} failed ${what}: ${message}`,
      {
        cause: error,
      },
    );
  }

  async #drop(client: Client): Promise<void> {
    if (this.#client === client) this.#client = undefined;
    await client.close().catch(() => {});
  }

  async #connectWithRetry(): Promise<Client> {
    let lastError: unknown;
    for (let attempt = 0; attempt <= this.settings.reconnects; attempt++) {
      if (attempt > 0) await delay(BACKOFF_BASE_MS * 2 ** (attempt - 1), this.signal);
      this.signal.throwIfAborted();
      try {
        const client = await this.#connectOnce();
        this.#client = client;
        return client;
      } catch (error) {
        this.signal.throwIfAborted();
        lastError = error;
      }
    }
    const reason = lastError instanceof Error ? lastError.message : String(lastError);
    throw new TaskFailure(
      "grynya_unreachable",
      `Cannot reach grynya at ${this.settings.url} (${
        this.settings.reconnects + 1
      } attempts, transport ${this.settings.transport}): ${reason}`,
      { cause: lastError },
    );
  }

  async #connectOnce(): Promise<Client> {
    const { transport } = this.settings;
    if (transport === "sse") return await this.#open("sse");
    if (transport === "http") return await this.#open("http");
    try {
      return await this.#open("http");
    } catch (error) {
      // The spec's backwards-compatibility rule: a 4xx to the POST means an SSE-only server.
      if (error instanceof SdkHttpError && error.status >= 400 && error.status < 500) {
        return await this.#open("sse");
      }
      throw error;
    }
  }

  async #open(kind: "sse" | "http"): Promise<Client> {
    const url = new URL(this.settings.url);
    const requestInit = { headers: this.settings.headers };
    const transport: Transport = kind === "http"
      ? new StreamableHTTPClientTransport(url, { requestInit })
      : new SSEClientTransport(url, { requestInit });
    const client = new Client(CLIENT_INFO);
    const timeout = AbortSignal.timeout(this.settings.connectTimeoutMs);
    try {
      await client.connect(transport, {
        signal: AbortSignal.any([this.signal, timeout]),
        timeout: this.settings.connectTimeoutMs,
      });
    } catch (error) {
      await client.close().catch(() => {});
      if (timeout.aborted && !this.signal.aborted) {
        throw new Error(
          `no answer within ${this.settings.connectTimeoutMs} ms (KLYM_GRYNYA_CONNECT_TIMEOUT_MS)`,
        );
      }
      throw error;
    }
    // A stream cut by grynya closes the transport: forget the client so the next call reconnects.
    const onclose = transport.onclose;
    transport.onclose = () => {
      onclose?.();
      if (this.#client === client) this.#client = undefined;
    };
    // The SSE client would silently retry a cut stream while calls wait for answers that cannot
    // come: a transport error ends this connection, failing pending calls now so they reconnect.
    const onerror = transport.onerror;
    transport.onerror = (error) => {
      onerror?.(error);
      void this.#drop(client);
    };
    const server = client.getServerVersion();
    this.#info = {
      name: server?.name ?? "unknown",
      version: server?.version ?? "unknown",
      transport: kind,
    };
    return client;
  }
}

function isConnectionLoss(error: unknown): boolean {
  const message = error instanceof Error ? `${error.name} ${error.message}` : String(error);
  return /closed|ECONNREFUSED|connection|fetch failed|network|socket|not connected|reset/i.test(
    message,
  );
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}
