/**
 * Klym over HTTP: Streamable HTTP at `/mcp`, legacy SSE at `/sse` + `/messages`, and `/healthz`.
 * Every MCP route passes the same guards first: Host and Origin against DNS rebinding, the bearer
 * token, and a body cap checked before parsing. The dashboard (`/ui`, when given) passes the Host and
 * Origin guards and does its own login with the same token.
 */
import {
  isInitializeRequest,
  localhostAllowedHostnames,
  localhostAllowedOrigins,
  type McpServer,
  readRequestBody,
  validateHostHeader,
  validateOriginHeader,
  WebStandardStreamableHTTPServerTransport,
} from "@modelcontextprotocol/server";
import { getLogger } from "@logtape/logtape";
import { type Config, isLoopback } from "../config.ts";
import { SseServerTransport } from "./sse_server_transport.ts";

const logger = getLogger(["klym", "http"]);
const MESSAGES_PATH = "/messages";
const SWEEP_MS = 10_000;

type SessionTransport = WebStandardStreamableHTTPServerTransport | SseServerTransport;

interface Session {
  transport: SessionTransport;
  server: McpServer;
  lastSeen: number;
}

export interface HttpAppOptions {
  config: Pick<
    Config,
    | "host"
    | "authToken"
    | "allowedOrigins"
    | "allowedHosts"
    | "maxRequestBodyBytes"
    | "sessionIdleS"
    | "maxSessions"
  >;
  createServer: () => McpServer;
  health: () => Record<string, unknown>;
  /** The dashboard's routes under `/ui`. */
  ui?: (req: Request, url: URL) => Promise<Response>;
}

function jsonRpcError(status: number, message: string, code = -32000): Response {
  return Response.json({ jsonrpc: "2.0", error: { code, message }, id: null }, { status });
}

/** Compares two secrets in time that does not depend on where they differ. */
export function sameSecret(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

export class HttpApp {
  readonly #sessions = new Map<string, Session>();
  /** `undefined`: any Host (a wildcard bind with no list; the bearer token guards it). */
  readonly #allowedHosts: string[] | undefined;
  readonly #allowedOrigins: string[];
  readonly #sweeper: ReturnType<typeof setInterval>;

  constructor(readonly options: HttpAppOptions) {
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

  readonly fetch = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    if (url.pathname === "/healthz" && req.method === "GET") {
      // Without the token (when one is set), only whether Klym is up: no counts to probe.
      const open = !this.options.config.authToken || !this.#guardToken(req);
      return Response.json(open ? { ok: true, ...this.options.health() } : { ok: true });
    }
    const ui = this.options.ui;
    if (ui && (url.pathname === "/ui" || url.pathname.startsWith("/ui/"))) {
      const refused = this.#guardHostOrigin(req);
      if (refused) return refused;
      return await ui(req, url);
    }
    const refused = this.#guardHostOrigin(req) ?? this.#guardToken(req);
    if (refused) return refused;
    try {
      switch (url.pathname) {
        case "/mcp":
          return await this.#streamable(req);
        case "/sse":
          return req.method === "GET"
            ? await this.#openSse()
            : jsonRpcError(405, "Use GET /sse to open an SSE session");
        case MESSAGES_PATH:
          return req.method === "POST"
            ? await this.#sseMessage(req, url)
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

  /** The bearer token, when one is configured; `undefined` lets the request through. */
  #guardToken(req: Request): Response | undefined {
    const token = this.options.config.authToken;
    if (token) {
      const header = req.headers.get("authorization") ?? "";
      const given = header.startsWith("Bearer ") ? header.slice(7) : "";
      if (!sameSecret(given, token)) {
        return new Response(
          JSON.stringify({
            jsonrpc: "2.0",
            error: {
              code: -32001,
              message: "Unauthorized: send Authorization: Bearer <KLYM_AUTH_TOKEN>",
            },
            id: null,
          }),
          {
            status: 401,
            headers: { "content-type": "application/json", "www-authenticate": "Bearer" },
          },
        );
      }
    }
    return undefined;
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

  async #streamable(req: Request): Promise<Response> {
    const sessionId = req.headers.get("mcp-session-id");
    let body: unknown;
    if (req.method === "POST") {
      const read = await this.#readJson(req);
      if (read instanceof Response) return read;
      body = read.body;
    }
    if (sessionId) {
      const session = this.#sessions.get(sessionId);
      if (!session || !(session.transport instanceof WebStandardStreamableHTTPServerTransport)) {
        return jsonRpcError(404, "Session not found; initialize a new one", -32001);
      }
      session.lastSeen = Date.now();
      return await session.transport.handleRequest(req, { parsedBody: body });
    }
    if (req.method !== "POST" || !isInitializeRequest(body)) {
      return jsonRpcError(
        400,
        "Bad Request: no Mcp-Session-Id header; start with an initialize request",
      );
    }
    if (this.#sessions.size >= this.options.config.maxSessions) return this.#tooManySessions();
    const server = this.options.createServer();
    const transport: WebStandardStreamableHTTPServerTransport =
      new WebStandardStreamableHTTPServerTransport({
        sessionIdGenerator: () => crypto.randomUUID(),
        onsessioninitialized: (id) => {
          this.#sessions.set(id, { transport, server, lastSeen: Date.now() });
        },
        onsessionclosed: (id) => void this.#drop(id),
      });
    transport.onclose = () => {
      if (transport.sessionId) void this.#drop(transport.sessionId);
    };
    await server.connect(transport);
    return await transport.handleRequest(req, { parsedBody: body });
  }

  async #openSse(): Promise<Response> {
    if (this.#sessions.size >= this.options.config.maxSessions) return this.#tooManySessions();
    const transport = new SseServerTransport(MESSAGES_PATH);
    const server = this.options.createServer();
    this.#sessions.set(transport.sessionId, { transport, server, lastSeen: Date.now() });
    transport.onclose = () => void this.#drop(transport.sessionId);
    const response = transport.response();
    await server.connect(transport);
    return response;
  }

  async #sseMessage(req: Request, url: URL): Promise<Response> {
    const session = this.#sessions.get(url.searchParams.get("sessionId") ?? "");
    if (!session || !(session.transport instanceof SseServerTransport)) {
      return jsonRpcError(404, "SSE session not found; open a new one with GET /sse");
    }
    const read = await this.#readJson(req);
    if (read instanceof Response) return read;
    session.lastSeen = Date.now();
    if (!session.transport.receive(read.body)) {
      return jsonRpcError(400, "Invalid JSON-RPC message", -32600);
    }
    return new Response("Accepted", { status: 202 });
  }

  #tooManySessions(): Response {
    return jsonRpcError(
      503,
      `Too many open sessions (${this.options.config.maxSessions}, KLYM_MAX_SESSIONS); close idle clients or retry later`,
    );
  }

  async #drop(id: string): Promise<void> {
    const session = this.#sessions.get(id);
    if (!session) return;
    this.#sessions.delete(id);
    await session.server.close().catch(() => {});
  }

  #evictIdle(): void {
    const cutoff = Date.now() - this.options.config.sessionIdleS * 1000;
    for (const [id, session] of this.#sessions) {
      // An open SSE stream is a live client; its keepalives would fail if it had gone.
      if (
        session.lastSeen < cutoff &&
        session.transport instanceof WebStandardStreamableHTTPServerTransport
      ) {
        logger.info("Evicting idle session {id}", { id });
        void this.#drop(id);
      }
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#sweeper);
    await Promise.all([...this.#sessions.keys()].map((id) => this.#drop(id)));
  }
}
