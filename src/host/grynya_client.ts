/**
 * The task's MCP client to grynya. It connects lazily over Streamable HTTP or legacy SSE (`auto`
 * follows the spec's fallback: try Streamable HTTP, fall back to SSE on a 4xx). The first connect
 * is bounded as a whole by the connect timeout; a dropped connection is re-established with backoff
 * within the reconnect budget, each attempt logged to the task's log. Requests are bounded by the
 * call timeout and the task's signal. A request that never reached grynya (refused) is sent again
 * once a reconnect has reached grynya, within the budget; a read, or a tool call declared
 * idempotent, that may have reached it is sent again once; any other is not. Errors are classified
 * by their type and code, keep their root cause and a hint at the fix, and stay short.
 */
import {
  type CallToolResult,
  Client,
  ProtocolError,
  SdkError,
  SdkErrorCode,
  SdkHttpError,
  SSEClientTransport,
  SseError,
  StreamableHTTPClientTransport,
  type Transport,
} from "@modelcontextprotocol/client";
import type { GrynyaActivity, GrynyaInfo, GrynyaSettings } from "../protocol.ts";
import { isKlymError, KlymError } from "../errors.ts";
import { linkedAbort } from "../abort.ts";
import { VERSION } from "../version.ts";

const CLIENT_INFO = { name: "klym-task", version: VERSION };
const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 2000;
/** Error messages are kept under 2 KB: the cause is cut to this. */
const MAX_CAUSE_CHARS = 600;

export interface CallOptions {
  /**
   * The call may run twice safely: re-sent after a reconnect if the connection dropped under it.
   * By default, what grynya's tool list says (`readOnlyHint` or `idempotentHint`).
   */
  readonly idempotent?: boolean | undefined;
}

export class GrynyaClient {
  #client: Client | undefined;
  #connecting: Promise<Client> | undefined;
  #info: GrynyaInfo | undefined;
  #closed = false;
  #everConnected = false;
  /** Tools grynya marks read-only or idempotent (MCP tool annotations) in its tool list. */
  readonly #safeToResend = new Set<string>();

  constructor(
    readonly settings: GrynyaSettings,
    readonly signal: AbortSignal,
    /** A line for the task's log (connect and reconnect attempts). */
    readonly log: (line: string) => void = () => {},
    /** Each connect or reconnect, for the operator's metrics and traces. */
    readonly report: (activity: GrynyaActivity) => void = () => {},
  ) {}

  get info(): GrynyaInfo | undefined {
    return this.#info;
  }

  /** Connects if not connected; a failure is a `grynya_unreachable` KlymError. */
  connect(): Promise<Client> {
    return this.#connect();
  }

  /**
   * Connects if not connected. A reconnect's budget (KLYM_GRYNYA_RECONNECT_S) counts from `since`
   * when given: the moment a request found the connection gone.
   */
  #connect(since?: number): Promise<Client> {
    if (this.#closed) return Promise.reject(new Error("The grynya client is closed"));
    // A client whose transport the SDK closed is gone, whatever its handlers saw.
    if (this.#client && this.#client.transport === undefined) this.#client = undefined;
    if (this.#client) return Promise.resolve(this.#client);
    this.#connecting ??= this.#establish(since).finally(() => this.#connecting = undefined);
    return this.#connecting;
  }

  async listTools() {
    const result = await this.#request("tools/list", (c, o) => c.listTools(undefined, o), true);
    // grynya's own word on its tools: one that only reads, or may run twice, may be re-sent.
    for (const tool of result.tools) {
      const hints = tool.annotations;
      if (hints?.readOnlyHint === true || hints?.idempotentHint === true) {
        this.#safeToResend.add(tool.name);
      }
    }
    return result;
  }

  listResources() {
    return this.#request("resources/list", (c, o) => c.listResources(undefined, o), true);
  }

  readResource(uri: string) {
    return this.#request(`resources/read ${uri}`, (c, o) => c.readResource({ uri }, o), true);
  }

  listPrompts() {
    return this.#request("prompts/list", (c, o) => c.listPrompts(undefined, o), true);
  }

  getPrompt(name: string, args: Record<string, string> = {}) {
    return this.#request(
      `prompts/get ${name}`,
      (c, o) => c.getPrompt({ name, arguments: args }, o),
      true,
    );
  }

  callTool(
    name: string,
    args: Record<string, unknown> = {},
    options: CallOptions = {},
  ): Promise<CallToolResult> {
    return this.#request(
      `tools/call ${name}`,
      (c, o) => c.callTool({ name, arguments: args }, o) as Promise<CallToolResult>,
      options.idempotent ?? this.#safeToResend.has(name),
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

  /**
   * One request, through a connection lost under it. A request that never reached grynya (the
   * connection was refused, or gone before it was sent) cannot have landed: it is sent again once
   * a reconnect has really reached grynya, within KLYM_GRYNYA_RECONNECT_S counted from the moment
   * it was found gone (so a call that cannot land fails within that budget and the call timeout).
   * One that may have reached grynya is sent again once, after such a reconnect, only when it is
   * idempotent.
   */
  async #request<T>(
    what: string,
    run: (client: Client, options: { signal: AbortSignal; timeout: number }) => Promise<T>,
    idempotent: boolean,
  ): Promise<T> {
    const lands = what.startsWith("tools/call");
    let resent = false;
    let lostAt: number | undefined;
    /** The last attempt was refused before it was sent: the request has not landed. */
    let unsent = false;
    for (;;) {
      const client = await this.#connect(lostAt).catch((error) => {
        if (!unsent || !isKlymError(error, "grynya_unreachable")) throw error;
        throw new KlymError(
          "grynya_unreachable",
          `${what} was never sent, so it did not land: ${error.message}`,
          { cause: error },
        );
      });
      try {
        return await run(client, { signal: this.signal, timeout: this.settings.callTimeoutMs });
      } catch (error) {
        this.signal.throwIfAborted();
        if (error instanceof ProtocolError) {
          // grynya answered with a JSON-RPC error: it is up, and said no.
          throw new KlymError(
            "grynya_error",
            `grynya at ${this.settings.url} refused ${what}: ${
              clip(error.message)
            } (JSON-RPC error ${error.code})`,
            { cause: error },
          );
        }
        if (error instanceof SdkError && error.code === SdkErrorCode.RequestTimeout) {
          throw new KlymError(
            "grynya_timeout",
            `grynya at ${this.settings.url} did not answer ${what} within ${this.settings.callTimeoutMs} ms (KLYM_GRYNYA_CALL_TIMEOUT_MS)${
              lands ? "; it was sent, so it may still land in grynya" : ""
            }`,
            { cause: error },
          );
        }
        // The connection failed under the request: drop it, the next attempt reconnects.
        await this.#drop(client);
        lostAt ??= performance.now();
        if (neverDelivered(error)) {
          if (performance.now() - lostAt < this.settings.reconnectMs) {
            this.log(
              `grynya: ${what} was not sent (${
                rootCause(error)
              }); it cannot have landed, so it is sent once grynya is back`,
            );
            unsent = true;
            continue;
          }
          throw new KlymError(
            "grynya_unreachable",
            `Cannot send ${what} to grynya at ${this.settings.url}: it was refused for ${
              seconds(lostAt)
            }, longer than ${this.settings.reconnectMs} ms (KLYM_GRYNYA_RECONNECT_S); it was never sent: ${
              rootCause(error)
            }`,
            { cause: error },
          );
        }
        if (idempotent && !resent) {
          resent = true;
          this.log(
            `grynya: the connection broke during ${what} (${
              rootCause(error)
            }); it may have reached grynya, and may run twice, so it is sent again once grynya is back`,
          );
          unsent = false;
          continue;
        }
        throw new KlymError(
          "grynya_call_interrupted",
          `The connection to grynya at ${this.settings.url} broke during ${what}${
            resent ? ", sent again after a reconnect since it may run twice," : ""
          }: ${rootCause(error)}; it may have reached grynya, so it was not sent again${
            idempotent ? "" : ' (a write template step can say "idempotent": true)'
          }`,
          { cause: error },
        );
      }
    }
  }

  async #drop(client: Client): Promise<void> {
    if (this.#client === client) this.#client = undefined;
    await client.close().catch(() => {});
  }

  /**
   * The first connect is bounded by the connect timeout as a whole; a reconnect by the reconnect
   * budget (counted from `since`, when a request found the connection gone), each attempt by the
   * connect timeout. Backoff doubles from 250 ms up to 2 s.
   */
  async #establish(since?: number): Promise<Client> {
    const reconnect = this.#everConnected;
    const budget = reconnect ? this.settings.reconnectMs : this.settings.connectTimeoutMs;
    const knob = reconnect ? "KLYM_GRYNYA_RECONNECT_S" : "KLYM_GRYNYA_CONNECT_TIMEOUT_MS";
    const started = performance.now();
    const budgetFrom = reconnect && since !== undefined ? Math.min(since, started) : started;
    let lastError: unknown;
    for (let attempt = 1;; attempt++) {
      this.signal.throwIfAborted();
      // The first attempt of the first connect has the whole connect timeout: none of it has
      // been spent on an attempt yet, whatever a loaded machine took to get here.
      const left = attempt === 1 && !reconnect ? budget : budget - (performance.now() - budgetFrom);
      try {
        const client = await this.#connectOnce(
          Math.max(1, Math.min(this.settings.connectTimeoutMs, left)),
        );
        // Closed while connecting (its task ended): this connection must not outlive it.
        if (this.#closed) {
          await client.close().catch(() => {});
          throw new Error("grynya's client was closed while it connected");
        }
        if (reconnect || attempt > 1) {
          this.log(
            `grynya: ${
              reconnect ? "reconnected" : "connected"
            } to ${this.settings.url} on attempt ${attempt} after ${seconds(started)}`,
          );
        }
        this.#client = client;
        this.#everConnected = true;
        this.report({
          what: reconnect ? "reconnect" : "connect",
          outcome: "ok",
          ms: performance.now() - started,
        });
        return client;
      } catch (error) {
        this.signal.throwIfAborted();
        lastError = error;
        const { retry, hint } = classify(error, this.settings.transport);
        const wait = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (attempt - 1));
        const elapsed = performance.now() - budgetFrom;
        const last = !retry || attempt > this.settings.reconnects || elapsed + wait >= budget;
        this.log(
          `grynya: ${
            reconnect ? "reconnect" : "connect"
          } attempt ${attempt} to ${this.settings.url} failed after ${seconds(started)}: ${
            rootCause(error)
          }${last ? "; giving up" : `; next attempt in ${wait} ms`}`,
        );
        if (last) {
          this.report({
            what: reconnect ? "reconnect" : "connect",
            outcome: "grynya_unreachable",
            ms: performance.now() - started,
          });
          const why = !retry
            ? ""
            : attempt > this.settings.reconnects
            ? `, the most KLYM_GRYNYA_RECONNECTS allows`
            : ` of ${budget} ms (${knob})`;
          throw new KlymError(
            "grynya_unreachable",
            `Cannot reach grynya at ${this.settings.url} (${attempt} attempt${
              attempt > 1 ? "s" : ""
            } in ${seconds(started)}${why}, transport ${this.settings.transport}): ${
              rootCause(lastError)
            }${hint ? `; ${hint}` : ""}`,
            { cause: lastError },
          );
        }
        await delay(wait, this.signal);
      }
    }
  }

  async #connectOnce(timeoutMs: number): Promise<Client> {
    const { transport } = this.settings;
    if (transport === "sse") return await this.#open("sse", timeoutMs);
    if (transport === "http") return await this.#open("http", timeoutMs);
    const started = performance.now();
    try {
      return await this.#open("http", timeoutMs);
    } catch (error) {
      // The spec's backwards-compatibility rule: a 4xx to the POST means an SSE-only server.
      if (
        httpStatus(error) !== undefined && httpStatus(error)! >= 400 && httpStatus(error)! < 500
      ) {
        const left = Math.max(1, timeoutMs - (performance.now() - started));
        try {
          return await this.#open("sse", left);
        } catch (sseError) {
          throw bothTransportsFailed(httpStatus(error)!, sseError);
        }
      }
      throw error;
    }
  }

  async #open(kind: "sse" | "http", timeoutMs: number): Promise<Client> {
    const url = new URL(this.settings.url);
    const requestInit = { headers: this.settings.headers };
    const transport: Transport = kind === "http"
      ? new StreamableHTTPClientTransport(url, { requestInit })
      : new SSEClientTransport(url, { requestInit });
    const client = new Client(CLIENT_INFO);
    using attempt = linkedAbort([this.signal], timeoutMs);
    // The SDK bounds the initialize request by the signal, but not the rest of a connect (SSE's
    // wait for the endpoint event, Streamable HTTP's initialized notification): a server that
    // stalls there would hold the attempt, and every call waiting on it, for good. The deadline
    // ends the whole attempt; closing the client then aborts what it still has in flight.
    const ended = Promise.withResolvers<never>();
    ended.promise.catch(() => {});
    const end = () => ended.reject(attempt.signal.reason);
    if (attempt.signal.aborted) end();
    else attempt.signal.addEventListener("abort", end, { once: true });
    try {
      await Promise.race([
        client.connect(transport, { signal: attempt.signal, timeout: timeoutMs }),
        ended.promise,
      ]);
    } catch (error) {
      await client.close().catch(() => {});
      if (attempt.timedOut && !this.signal.aborted) throw attemptTimeout(timeoutMs);
      if (error instanceof SdkError && error.code === SdkErrorCode.RequestTimeout) {
        throw attemptTimeout(timeoutMs);
      }
      throw error;
    } finally {
      attempt.signal.removeEventListener("abort", end);
    }
    // A stream cut by grynya closes the transport: forget the client so the next call reconnects.
    const onclose = transport.onclose;
    transport.onclose = () => {
      onclose?.();
      if (this.#client === client) this.#client = undefined;
    };
    // The SSE client would silently retry a cut stream while calls wait for answers that cannot
    // come: a transport error ends this connection, failing pending calls now so they reconnect.
    // A refused send (not the SSE stream) is the exception: its own request fails with the refusal
    // (so it is known not to have landed) and drops the connection itself; dropping here first
    // would fail it as "Connection closed", which may have landed.
    const onerror = transport.onerror;
    transport.onerror = (error) => {
      onerror?.(error);
      if (error instanceof SseError || !neverSent(error)) void this.#drop(client);
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

/** One connect attempt got no answer in time. */
function attemptTimeout(ms: number): KlymError {
  return new KlymError(
    "grynya_unreachable",
    `no answer within ${Math.round(ms)} ms (KLYM_GRYNYA_CONNECT_TIMEOUT_MS)`,
  );
}

/** `auto`: Streamable HTTP answered a 4xx, and SSE failed too; classified by SSE's failure. */
function bothTransportsFailed(httpStatus: number, cause: unknown): KlymError {
  return new KlymError(
    "grynya_unreachable",
    `Streamable HTTP answered ${httpStatus}, and SSE failed`,
    { cause },
  );
}

/** The HTTP status of a failed attempt: an attempt's own failure is classified by its cause. */
function httpStatus(error: unknown): number | undefined {
  if (error instanceof KlymError) return httpStatus(error.cause);
  if (error instanceof SdkHttpError) return error.status;
  if (error instanceof SseError && typeof error.code === "number") return error.code;
  return undefined;
}

/** Whether another attempt may help, and what the user can do about it. */
function classify(
  error: unknown,
  transport: GrynyaSettings["transport"],
): { retry: boolean; hint?: string } {
  const status = httpStatus(error);
  if (status === 401 || status === 403) {
    return {
      retry: false,
      hint: "grynya refused Klym's credentials: check KLYM_GRYNYA_TOKEN and KLYM_GRYNYA_HEADERS",
    };
  }
  if (status === 404) {
    return {
      retry: false,
      hint:
        "nothing is served at that path: check KLYM_GRYNYA_URL (SSE servers usually serve /sse, Streamable HTTP ones /mcp)",
    };
  }
  if (status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429) {
    return {
      retry: false,
      hint: transport === "auto"
        ? "check KLYM_GRYNYA_URL"
        : `grynya may speak the other transport: set KLYM_GRYNYA_TRANSPORT to auto (or ${
          transport === "sse" ? "http" : "sse"
        })`,
    };
  }
  if (isRefused(error)) {
    return { retry: true, hint: "is grynya running and listening there?" };
  }
  return { retry: true };
}

/** Connection refused (ECONNREFUSED, errno 111): the request never reached grynya. */
function isRefused(error: unknown): boolean {
  for (let e = error, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof Deno.errors.ConnectionRefused) return true;
    if ((e as { code?: unknown }).code === "ECONNREFUSED") return true;
    if (e instanceof Error && /\(os error 111\)/.test(e.message)) return true;
  }
  return false;
}

/** Errors that mean the request was never handed to grynya, so re-sending it is safe. */
function neverDelivered(error: unknown): boolean {
  if (error instanceof SdkError) {
    if (error.code === SdkErrorCode.NotConnected) return true;
    // A Streamable HTTP session grynya forgot (it restarted): the request was not processed.
    if (error instanceof SdkHttpError && error.status === 404) return true;
  }
  // The SDK's own check before sending: the client had no transport left.
  if (error instanceof Error && error.message === "Not connected") return true;
  return neverSent(error);
}

/**
 * The connection failed before any byte of the request went out: refused, or the TCP connect
 * itself failed (fetch's "client error (Connect)").
 */
function neverSent(error: unknown): boolean {
  if (isRefused(error)) return true;
  for (let e = error, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof Error && /client error \(Connect\)|tcp connect error/.test(e.message)) {
      return true;
    }
  }
  return false;
}

/** The error and its causes, each message once, cut to a few hundred characters. */
function rootCause(error: unknown): string {
  const parts: string[] = [];
  for (let e = error, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    const message = e instanceof Error ? e.message : String(e);
    if (message && !parts.some((p) => p.includes(message))) parts.push(message);
    e = e instanceof Error ? e.cause : undefined;
  }
  return clip(parts.join(": ") || "unknown error");
}

function clip(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > MAX_CAUSE_CHARS ? `${flat.slice(0, MAX_CAUSE_CHARS)}…` : flat;
}

function seconds(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
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
