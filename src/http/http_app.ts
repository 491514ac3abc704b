/**
 * Klym over HTTP: Streamable HTTP at `/mcp`, legacy SSE at `/sse` + `/messages`, and `/healthz`.
 * Every MCP route passes the same guards first: Host and Origin against DNS rebinding, the bearer
 * token (failures throttled per client address: `auth_throttle.ts`), and a body cap checked before
 * parsing. The dashboard (`/ui`, when given) passes the Host and
 * Origin guards and does its own login with the same token.
 */
import {
  type AuthInfo,
  createMcpHandler,
  isInitializeRequest,
  isJsonContentType,
  isLegacyRequest,
  localhostAllowedHostnames,
  localhostAllowedOrigins,
  type McpHttpHandler,
  type McpServer,
  readRequestBody,
  validateHostHeader,
  validateOriginHeader,
  WebStandardStreamableHTTPServerTransport,
} from "@modelcontextprotocol/server";
import { getLogger } from "@logtape/logtape";
import { type Config, isLoopback } from "../config.ts";
import { SseServerTransport } from "./sse_server_transport.ts";
import { BoundedEventStore } from "./event_store.ts";
import { LOCAL_PRINCIPAL, Principals } from "../server/principals.ts";
import { AuthThrottle, clientAddress } from "./auth_throttle.ts";

export { sameSecret } from "../server/principals.ts";

const logger = getLogger(["klym", "http"]);
const MESSAGES_PATH = "/messages";
const SWEEP_MS = 10_000;
/** A session that sent nothing after its handshake is closed after this long. */
export const UNUSED_SESSION_IDLE_MS = 60_000;
/** When the session limit is reached, the least recently used session idle this long gives way. */
export const EVICTABLE_IDLE_MS = 5_000;
/** The `retry` (ms) suggested to clients on SSE streams, which carry event ids for resumption. */
export const SSE_RETRY_MS = 1000;

type SessionTransport = WebStandardStreamableHTTPServerTransport | SseServerTransport;

interface Session {
  transport: SessionTransport;
  server: McpServer;
  /** The principal that opened the session; no other may use it. */
  owner: string;
  lastSeen: number;
  /** Messages received after `initialize` (its `initialized` notification included). */
  messages: number;
  /** Requests being handled now. */
  inFlight: number;
}

export interface HttpAppOptions {
  config: Pick<
    Config,
    | "host"
    | "authToken"
    | "authTokens"
    | "allowedOrigins"
    | "allowedHosts"
    | "maxRequestBodyBytes"
    | "sessionIdleS"
    | "maxSessions"
    | "authFailuresBurst"
    | "authFailuresPerMin"
    | "authFailuresAllPerMin"
    | "maxSessionsPerPrincipal"
  >;
  /** A server for one session (legacy era) or one request (modern era) of the principal `owner`. */
  createServer: (owner: string, era: "legacy" | "modern") => McpServer;
  health: () => Record<string, unknown>;
  /** The dashboard's routes under `/ui`; `client` is the caller's address (see `clientAddress`). */
  ui?: (req: Request, url: URL, client: string) => Promise<Response>;
  /** Failed bearer checks, shared with the dashboard's login (default: one from `config`). */
  throttle?: AuthThrottle;
}

type Id = string | number | null;

function jsonRpcError(status: number, message: string, code = -32000, id: Id = null): Response {
  return Response.json({ jsonrpc: "2.0", error: { code, message }, id }, { status });
}

/** The id of a JSON-RPC request body, `null` when it has none (a notification, or not JSON-RPC). */
function requestId(body: unknown): Id {
  const id = (body as { id?: unknown } | null)?.id;
  return typeof id === "string" || typeof id === "number" ? id : null;
}

/** An error answer the SDK wrote with `"id": null` gets the request's id, when it is known. */
async function withId(response: Response, id: Id): Promise<Response> {
  if (id === null || response.status < 400) return response;
  if (!response.headers.get("content-type")?.includes("application/json")) return response;
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body && typeof body === "object" && body.error && body.id === null) {
      return new Response(JSON.stringify({ ...body, id }), {
        status: response.status,
        headers: response.headers,
      });
    }
  } catch {
    // Not JSON after all: passed on as it was.
  }
  return new Response(text, { status: response.status, headers: response.headers });
}

/** `response`, calling `done` once when its body has been sent or abandoned. */
function untilSent(response: Response, done: () => void): Response {
  let called = false;
  const once = () => {
    if (!called) (called = true, done());
  };
  if (!response.body) {
    once();
    return response;
  }
  const reader = response.body.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          once();
          controller.close();
        } else controller.enqueue(value);
      } catch (error) {
        once();
        controller.error(error);
      }
    },
    cancel(reason) {
      once();
      return reader.cancel(reason);
    },
  });
  return new Response(body, { status: response.status, headers: response.headers });
}

export class HttpApp {
  readonly #sessions = new Map<string, Session>();
  /** Open sessions of each principal (no entry for none). */
  readonly #sessionsOf = new Map<string, number>();
  /** `undefined`: any Host (a wildcard bind with no list; the bearer token guards it). */
  readonly #allowedHosts: string[] | undefined;
  readonly #allowedOrigins: string[];
  readonly #sweeper: ReturnType<typeof setInterval>;
  readonly principals: Principals;
  readonly #throttle: AuthThrottle;
  /** Protocol 2026-07-28 and later: session-less, one server instance per request. */
  readonly #modern: McpHttpHandler;

  constructor(readonly options: HttpAppOptions) {
    this.principals = new Principals(options.config);
    this.#throttle = options.throttle ?? new AuthThrottle(options.config);
    this.#modern = createMcpHandler(
      (ctx) => options.createServer(ctx.authInfo?.clientId ?? LOCAL_PRINCIPAL, ctx.era),
      {
        legacy: "reject",
        maxRequestBodySize: options.config.maxRequestBodyBytes,
        onerror: (error) => logger.debug("Modern MCP request refused: {error}", { error }),
      },
    );
    const { host, allowedOrigins, allowedHosts } = options.config;
    const wildcard = host === "0.0.0.0" || host === "::";
    this.#allowedHosts = wildcard && allowedHosts.length === 0 ? undefined : [
      ...localhostAllowedHostnames(),
      ...(isLoopback(host) || wildcard ? [] : [host]),
      ...allowedHosts,
    ];
    this.#allowedOrigins = [...localhostAllowedOrigins(), ...allowedOrigins];
    const sweepMs = Math.min(SWEEP_MS, options.config.sessionIdleS * 500);
    this.#sweeper = setInterval(() => this.#evictIdle(), sweepMs);
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  readonly fetch = async (req: Request, info?: Deno.ServeHandlerInfo): Promise<Response> => {
    const url = new URL(req.url);
    const client = clientAddress(info);
    if (url.pathname === "/healthz" && req.method === "GET") {
      // Without the token (when one is set), only whether Klym is up: no counts to probe.
      const open = typeof this.#authenticate(req, client) === "string";
      return Response.json(open ? { ok: true, ...this.options.health() } : { ok: true });
    }
    const ui = this.options.ui;
    if (ui && (url.pathname === "/ui" || url.pathname.startsWith("/ui/"))) {
      const refused = this.#guardHostOrigin(req);
      if (refused) return refused;
      return await ui(req, url, client);
    }
    const refused = this.#guardHostOrigin(req);
    if (refused) return refused;
    const owner = this.#authenticate(req, client);
    if (typeof owner !== "string") return owner;
    try {
      switch (url.pathname) {
        case "/mcp":
          return await this.#streamable(req, owner);
        case "/sse":
          return req.method === "GET"
            ? await this.#openSse(owner)
            : jsonRpcError(405, "Use GET /sse to open an SSE session");
        case MESSAGES_PATH:
          return req.method === "POST"
            ? await this.#sseMessage(req, url, owner)
            : jsonRpcError(405, "Use POST /messages?sessionId=…");
        default:
          return jsonRpcError(404, `No route ${url.pathname}; MCP is served at /mcp and /sse`);
      }
    } catch (error) {
      logger.error("HTTP request failed: {error}", { error });
      return jsonRpcError(500, "Internal server error", -32603);
    }
  };

  /** DNS-rebinding protection; `undefined` lets the request through. */
  #guardHostOrigin(req: Request): Response | undefined {
    if (this.#allowedHosts) {
      const host = validateHostHeader(req.headers.get("host"), this.#allowedHosts);
      if (!host.ok) return jsonRpcError(403, `Forbidden: Host header not allowed`);
    }
    const origin = req.headers.get("origin");
    if (origin !== null && !validateOriginHeader(origin, this.#allowedOrigins).ok) {
      return jsonRpcError(403, `Forbidden: Origin ${origin} is not allowed (KLYM_ALLOWED_ORIGINS)`);
    }
    return undefined;
  }

  /**
   * The principal of the request's bearer token, or the answer refusing it: 401, or 429 while
   * `client` is throttled for failed checks (then the token is not even looked at).
   */
  #authenticate(req: Request, client: string): string | Response {
    if (!this.principals.required || !req.headers.has("authorization")) {
      return this.principals.ofRequest(req) ?? this.#unauthorized();
    }
    const attempt = this.#throttle.attempt(client, () => this.principals.ofRequest(req));
    if (attempt.outcome === "passed") return attempt.value;
    if (attempt.outcome === "failed") return this.#unauthorized();
    const response = jsonRpcError(
      429,
      attempt.bucket === "address"
        ? `Too many failed authentications from this address (KLYM_AUTH_FAILURES_BURST, KLYM_AUTH_FAILURES_PER_MIN): retry in ${attempt.retryAfterS} s`
        : `Too many failed authentications from all addresses (KLYM_AUTH_FAILURES_ALL_PER_MIN), this one among them: retry in ${attempt.retryAfterS} s`,
    );
    response.headers.set("retry-after", String(attempt.retryAfterS));
    return response;
  }

  #unauthorized(): Response {
    return new Response(
      JSON.stringify({
        jsonrpc: "2.0",
        error: {
          code: -32001,
          message:
            "Unauthorized: send Authorization: Bearer <token> (KLYM_AUTH_TOKEN or one of KLYM_AUTH_TOKENS)",
        },
        id: null,
      }),
      {
        status: 401,
        headers: { "content-type": "application/json", "www-authenticate": "Bearer" },
      },
    );
  }

  /** Reads a JSON body within the cap: a `Response` on refusal, the parsed value otherwise. */
  async #readJson(req: Request): Promise<{ body: unknown } | Response> {
    const max = this.options.config.maxRequestBodyBytes;
    const declared = Number(req.headers.get("content-length") ?? "0");
    if (declared > max) {
      await req.body?.cancel();
      return jsonRpcError(
        413,
        `Request body of ${declared} bytes exceeds ${max} (KLYM_MAX_REQUEST_BODY_BYTES)`,
      );
    }
    const read = await readRequestBody(req, max);
    if (read.tooLarge) {
      return jsonRpcError(413, `Request body exceeds ${max} bytes (KLYM_MAX_REQUEST_BODY_BYTES)`);
    }
    let body: unknown;
    try {
      body = JSON.parse(read.text);
    } catch {
      return jsonRpcError(400, "Parse error: the body is not valid JSON", -32700);
    }
    // One request can hold one answer's worth of memory, not a batch's (MCP dropped batches in
    // 2025-06-18; no client Klym serves needs them).
    if (Array.isArray(body)) {
      return jsonRpcError(
        400,
        "Invalid Request: JSON-RPC batches are not supported; send one message per request",
        -32600,
      );
    }
    return { body };
  }

  async #streamable(req: Request, owner: string): Promise<Response> {
    const sessionId = req.headers.get("mcp-session-id");
    let body: unknown;
    if (req.method === "POST") {
      const read = await this.#readJson(req);
      if (read instanceof Response) return read;
      body = read.body;
    }
    const id = requestId(body);
    // A request in the 2026-07-28 envelope (or claiming that era) goes to the modern, session-less
    // face; initialize and everything of a 2025 session stays here.
    if (req.method === "POST" && !(await isLegacyRequest(req, body))) {
      if (!isJsonContentType(req.headers.get("content-type"))) {
        return jsonRpcError(415, "Unsupported Media Type: send application/json", -32000, id);
      }
      const authInfo: AuthInfo = { token: "", clientId: owner, scopes: [] };
      return await this.#modern.fetch(req, { parsedBody: body, authInfo });
    }
    if (sessionId) {
      const session = this.#sessions.get(sessionId);
      if (
        !session || session.owner !== owner ||
        !(session.transport instanceof WebStandardStreamableHTTPServerTransport)
      ) {
        return jsonRpcError(404, "Session not found; initialize a new one", -32001, id);
      }
      session.lastSeen = Date.now();
      if (req.method !== "POST") {
        return await withId(await session.transport.handleRequest(req, { parsedBody: body }), id);
      }
      session.messages++;
      // A POST is in flight until its answer (JSON, or an SSE stream) has been sent.
      session.inFlight++;
      let response: Response;
      try {
        response = await withId(
          await session.transport.handleRequest(req, { parsedBody: body }),
          id,
        );
      } catch (error) {
        session.inFlight--;
        throw error;
      }
      return untilSent(response, () => {
        session.inFlight--;
        session.lastSeen = Date.now();
      });
    }
    if (req.method !== "POST" || !isInitializeRequest(body)) {
      return jsonRpcError(
        400,
        "Bad Request: no Mcp-Session-Id header; start with an initialize request",
        -32000,
        id,
      );
    }
    const full = this.#makeRoom(owner, id);
    if (full) return full;
    const server = this.options.createServer(owner, "legacy");
    const transport: WebStandardStreamableHTTPServerTransport =
      new WebStandardStreamableHTTPServerTransport({
        sessionIdGenerator: () => crypto.randomUUID(),
        eventStore: new BoundedEventStore(),
        retryInterval: SSE_RETRY_MS,
        onsessioninitialized: (id) => this.#open(id, transport, server, owner),
        onsessionclosed: (id) => void this.#drop(id),
      });
    transport.onclose = () => {
      if (transport.sessionId) void this.#drop(transport.sessionId);
    };
    await server.connect(transport);
    return await withId(await transport.handleRequest(req, { parsedBody: body }), id);
  }

  /**
   * Room for a session of `owner`, or the 503 that refuses it. A principal at
   * `KLYM_MAX_SESSIONS_PER_PRINCIPAL` may only displace its own least recently used Streamable HTTP
   * session idle for `EVICTABLE_IDLE_MS` (careless clients never `DELETE` theirs). At
   * `KLYM_MAX_SESSIONS`, a principal holding less than its fair share (the limit divided among the
   * principals holding sessions, itself included) takes the place of the least recently used
   * session of the principal holding the most, an open SSE stream included; anyone else may only
   * displace such an idle session of a principal holding at least as many as it does.
   */
  #makeRoom(owner: string, id: Id): Response | undefined {
    const { maxSessions, maxSessionsPerPrincipal } = this.options.config;
    const mine = this.#sessionsOf.get(owner) ?? 0;
    const idle = (s: Session) =>
      s.transport instanceof WebStandardStreamableHTTPServerTransport && s.inFlight === 0 &&
      s.lastSeen <= Date.now() - EVICTABLE_IDLE_MS;
    if (mine >= maxSessionsPerPrincipal) {
      if (this.#evictLru((s) => s.owner === owner && idle(s), "its principal's limit")) return;
      // A limit per principal no lower than the total is the total's (one principal alone).
      return this.#tooManySessions(
        maxSessionsPerPrincipal < maxSessions
          ? `principal "${owner}" has ${mine} open sessions, the limit per principal is ${maxSessionsPerPrincipal} (KLYM_MAX_SESSIONS_PER_PRINCIPAL)`
          : `principal "${owner}" has ${mine} open sessions, the limit is ${maxSessions} (KLYM_MAX_SESSIONS)`,
        id,
      );
    }
    if (this.#sessions.size < maxSessions) return;
    const holders = this.#sessionsOf.size + (mine === 0 ? 1 : 0);
    const fairShare = Math.floor(maxSessions / holders);
    if (mine < fairShare) {
      let busiest = owner;
      for (const [principal, count] of this.#sessionsOf) {
        if (count > (this.#sessionsOf.get(busiest) ?? 0)) busiest = principal;
      }
      const reason = `a fair share for "${owner}"`;
      if (
        this.#evictLru((s) => s.owner === busiest && s.inFlight === 0, reason) ||
        this.#evictLru((s) => s.owner === busiest, reason)
      ) return;
    }
    const atLeastMine = (s: Session) => (this.#sessionsOf.get(s.owner) ?? 0) >= mine;
    if (this.#evictLru((s) => idle(s) && atLeastMine(s), "the session limit")) return;
    return this.#tooManySessions(
      `${this.#sessions.size} sessions are open, the limit is ${maxSessions} (KLYM_MAX_SESSIONS), and principal "${owner}" has ${mine}, its fair share being ${fairShare}`,
      id,
    );
  }

  /** Closes the least recently used session that `may` accepts; `false` when there is none. */
  #evictLru(may: (session: Session) => boolean, reason: string): boolean {
    let lru: [string, Session] | undefined;
    for (const entry of this.#sessions) {
      if ((!lru || entry[1].lastSeen < lru[1].lastSeen) && may(entry[1])) lru = entry;
    }
    if (!lru) return false;
    logger.info("Closing the least recently used session {id} of {owner} to make room: {reason}", {
      id: lru[0],
      owner: lru[1].owner,
      reason,
    });
    void this.#drop(lru[0]);
    return true;
  }

  async #openSse(owner: string): Promise<Response> {
    const full = this.#makeRoom(owner, null);
    if (full) return full;
    const transport = new SseServerTransport(MESSAGES_PATH);
    const server = this.options.createServer(owner, "legacy");
    this.#open(transport.sessionId, transport, server, owner);
    transport.onclose = () => void this.#drop(transport.sessionId);
    const response = transport.response();
    await server.connect(transport);
    return response;
  }

  async #sseMessage(req: Request, url: URL, owner: string): Promise<Response> {
    const session = this.#sessions.get(url.searchParams.get("sessionId") ?? "");
    if (!session || session.owner !== owner || !(session.transport instanceof SseServerTransport)) {
      await req.body?.cancel();
      return jsonRpcError(404, "SSE session not found; open a new one with GET /sse");
    }
    const read = await this.#readJson(req);
    if (read instanceof Response) return read;
    session.lastSeen = Date.now();
    session.messages++;
    if (!session.transport.receive(read.body)) {
      return jsonRpcError(400, "Invalid JSON-RPC message", -32600, requestId(read.body));
    }
    return new Response("Accepted", { status: 202 });
  }

  #tooManySessions(why: string, id: Id): Response {
    return jsonRpcError(
      503,
      `Too many open sessions: ${why}; close idle clients or retry later`,
      -32000,
      id,
    );
  }

  #open(id: string, transport: SessionTransport, server: McpServer, owner: string): void {
    this.#sessions.set(id, {
      transport,
      server,
      owner,
      lastSeen: Date.now(),
      messages: 0,
      inFlight: 0,
    });
    this.#sessionsOf.set(owner, (this.#sessionsOf.get(owner) ?? 0) + 1);
  }

  async #drop(id: string): Promise<void> {
    const session = this.#sessions.get(id);
    if (!session) return;
    this.#sessions.delete(id);
    const left = this.#sessionsOf.get(session.owner)! - 1;
    if (left > 0) this.#sessionsOf.set(session.owner, left);
    else this.#sessionsOf.delete(session.owner);
    await session.server.close().catch(() => {});
  }

  #evictIdle(): void {
    const now = Date.now();
    const cutoff = now - this.options.config.sessionIdleS * 1000;
    const unusedCutoff = now -
      Math.min(UNUSED_SESSION_IDLE_MS, this.options.config.sessionIdleS * 1000);
    for (const [id, session] of this.#sessions) {
      // An open SSE stream is a live client; its keepalives would fail if it had gone.
      if (!(session.transport instanceof WebStandardStreamableHTTPServerTransport)) continue;
      if (session.inFlight > 0) continue;
      // A session that sent nothing beyond its handshake (`initialized`) is let go sooner.
      const unused = session.messages <= 1 && session.lastSeen < unusedCutoff;
      if (session.lastSeen < cutoff || unused) {
        logger.info("Evicting idle session {id}", { id });
        void this.#drop(id);
      }
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    await this.#modern.close();
    await Promise.all([...this.#sessions.keys()].map((id) => this.#drop(id)));
  }
}
