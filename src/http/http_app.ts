/**
 * Klym over HTTP, the routes: Streamable HTTP at `/mcp` (a 2025 session, or a session-less
 * 2026-07-28 request), legacy SSE at `/sse` + `/messages`, and `/healthz`. Every MCP route passes
 * the guards first (`guards.ts`: Host and Origin, the bearer token, the body cap); the 2025
 * sessions live in the session table (`session_table.ts`). The dashboard (`/ui`, when given)
 * passes the Host and Origin guard and does its own login with the same token. This side knows
 * nothing of tasks: a server for a session or a request comes from `createServer`.
 */
import {
  type AuthInfo,
  createMcpHandler,
  isInitializeRequest,
  isJsonContentType,
  isLegacyRequest,
  type McpHttpHandler,
  type McpServer,
  WebStandardStreamableHTTPServerTransport,
} from "@modelcontextprotocol/server";
import { getLogger } from "@logtape/logtape";
import type { Config } from "../config.ts";
import { SseServerTransport } from "./sse_server_transport.ts";
import { BoundedEventStore } from "./event_store.ts";
import { LOCAL_PRINCIPAL, Principals } from "../principals.ts";
import { AuthThrottle, clientAddress } from "./auth_throttle.ts";
import { BearerGuard, HostOriginGuard, readJsonBody } from "./guards.ts";
import { type Id, jsonRpcError, requestId, untilSent, withId } from "./responses.ts";
import { type Session, type SessionClock, SessionTable } from "./session_table.ts";
import { retryFieldsError, retryFieldsProblem } from "./retry_fields.ts";
import { answersAtOnce, asJson } from "./instant_answers.ts";
import { type SessionCluster, SessionForwarder } from "./session_forward.ts";

const logger = getLogger(["klym", "http"]);
const MESSAGES_PATH = "/messages";
/** The `retry` (ms) suggested to clients on SSE streams, which carry event ids for resumption. */
export const SSE_RETRY_MS = 1000;

/** The methods whose `Mcp-Name` header mirrors the body's `params.taskId` (SEP-2663). */
const TASK_METHODS = new Set(["tasks/get", "tasks/update", "tasks/cancel"]);

/**
 * `req`, with the `Mcp-Name` header a `tasks/*` request left out filled in from its body's
 * `params.taskId`: the body names the task, so the header adds nothing Klym needs (one process
 * holds every task; `fastmcp-tasks` 4.1 sends none). A header that disagrees with the body is
 * still refused (-32020) by the SDK, as are the headers of every other method.
 */
function withTaskName(req: Request, body: unknown): Request {
  if (req.headers.has("mcp-name")) return req;
  const { method, params } = body as { method?: unknown; params?: { taskId?: unknown } };
  const taskId = params?.taskId;
  if (typeof method !== "string" || !TASK_METHODS.has(method) || typeof taskId !== "string") {
    return req;
  }
  const headers = new Headers(req.headers);
  // Non-ASCII ids travel as the SDK's Base64 sentinel; a task id of Klym's own is plain ASCII.
  headers.set("mcp-name", /^[\x20-\x7e]*$/.test(taskId) ? taskId : encodeSentinel(taskId));
  // The body was read already (the handler takes `parsedBody`): the copy carries none.
  return new Request(req.url, { method: req.method, headers, signal: req.signal });
}

/** A session transport's answer to `body`, as one JSON object when it is answered at once. */
async function answered(
  transport: WebStandardStreamableHTTPServerTransport,
  req: Request,
  body: unknown,
  id: Id,
): Promise<Response> {
  const response = await transport.handleRequest(req, { parsedBody: body });
  return answersAtOnce(body) ? await asJson(response, id, req.signal) : response;
}

function encodeSentinel(value: string): string {
  const bytes = new TextEncoder().encode(value);
  return `=?base64?${btoa(String.fromCharCode(...bytes))}?=`;
}

/** What the app keeps for a 2025 session. */
type Link =
  | {
    readonly kind: "streamable";
    readonly transport: WebStandardStreamableHTTPServerTransport;
    readonly server: McpServer;
  }
  | { readonly kind: "sse"; readonly transport: SseServerTransport; readonly server: McpServer };

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
  /** What `/healthz` tells the principal `owner` beyond `ok` (its own figures, an admin's all). */
  health: (owner: string) => Record<string, unknown>;
  /** `/metrics` (the Prometheus text format) as the principal `owner` may read it. */
  metrics?: (owner: string) => Promise<Response>;
  /** `/usage` (model spend over `?window=`) as the principal `owner` may read it. */
  usage?: (owner: string, url: URL) => Response;
  /** Whether `/healthz` says `ok` (false while the shared store does not answer); default yes. */
  ok?: () => boolean;
  /** Nodes sharing a store: 2025 sessions of other nodes are forwarded there (`session_forward.ts`). */
  cluster?: SessionCluster;
  /** The dashboard's routes under `/ui`; `client` is the caller's address (see `clientAddress`). */
  ui?: (req: Request, url: URL, client: string) => Promise<Response>;
  /** Failed bearer checks, shared with the dashboard's login (default: one from `config`). */
  throttle?: AuthThrottle;
  /** The session table's time (default: the system's). */
  clock?: SessionClock;
}

export class HttpApp {
  readonly #sessions: SessionTable<Link>;
  readonly #hostOrigin: HostOriginGuard;
  readonly #bearer: BearerGuard;
  /** Protocol 2026-07-28 and later: session-less, one server instance per request. */
  readonly #modern: McpHttpHandler;
  readonly #forwarder: SessionForwarder | undefined;

  constructor(readonly options: HttpAppOptions) {
    this.#forwarder = options.cluster ? new SessionForwarder(options.cluster) : undefined;
    this.#hostOrigin = new HostOriginGuard(options.config);
    this.#bearer = new BearerGuard(
      new Principals(options.config),
      options.throttle ?? new AuthThrottle(options.config),
    );
    this.#modern = createMcpHandler(
      (ctx) => options.createServer(ctx.authInfo?.clientId ?? LOCAL_PRINCIPAL, ctx.era),
      {
        legacy: "reject",
        maxRequestBodySize: options.config.maxRequestBodyBytes,
        onerror: (error) => logger.debug("Modern MCP request refused: {error}", { error }),
      },
    );
    this.#sessions = new SessionTable<Link>(options.config, {
      close: (link) => link.server.close(),
      ...(options.clock ? { clock: options.clock } : {}),
    });
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Open 2025 sessions by transport (`streamable` or `sse`). */
  sessionsByTransport(): Record<Link["kind"], number> {
    const counts = { streamable: 0, sse: 0 };
    for (const link of this.#sessions.links()) counts[link.kind]++;
    return counts;
  }

  /** Open sessions of the principal `owner`. */
  sessionCountOf(owner: string): number {
    return this.#sessions.countOf(owner);
  }

  readonly fetch = async (req: Request, info?: Deno.ServeHandlerInfo): Promise<Response> => {
    const url = new URL(req.url);
    const client = clientAddress(info);
    if (url.pathname === "/healthz" && req.method === "GET") {
      // Without the token (when one is set), only whether Klym is up: no counts to probe. With
      // one, the figures its principal may see: another's tasks and sessions are not its to count.
      const owner = this.#bearer.principalOf(req, client);
      const ok = this.options.ok?.() ?? true;
      return Response.json(
        typeof owner === "string" ? { ok, ...this.options.health(owner) } : { ok },
      );
    }
    const ui = this.options.ui;
    if (ui && (url.pathname === "/ui" || url.pathname.startsWith("/ui/"))) {
      const refused = this.#hostOrigin.refusal(req);
      if (refused) return refused;
      return await ui(req, url, client);
    }
    const refused = this.#hostOrigin.refusal(req);
    if (refused) return refused;
    const owner = this.#bearer.principalOf(req, client, this.#sessionOwner(req, url));
    if (typeof owner !== "string") return owner;
    try {
      switch (url.pathname) {
        case "/metrics":
        case "/usage": {
          const face = url.pathname === "/metrics" ? this.options.metrics : this.options.usage;
          if (!face) break;
          if (req.method !== "GET") return jsonRpcError(405, `Use GET ${url.pathname}`);
          return url.pathname === "/metrics"
            ? await this.options.metrics!(owner)
            : this.options.usage!(owner, url);
        }
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
      }
      return jsonRpcError(404, `No route ${url.pathname}; MCP is served at /mcp and /sse`);
    } catch (error) {
      logger.error("HTTP request failed: {error}", { error });
      return jsonRpcError(500, "Internal server error", -32603);
    }
  };

  /** The owner of the open session a request names (`Mcp-Session-Id`, `?sessionId=`), if any. */
  #sessionOwner(req: Request, url: URL): string | undefined {
    const id = url.pathname === "/mcp"
      ? req.headers.get("mcp-session-id")
      : url.pathname === MESSAGES_PATH
      ? url.searchParams.get("sessionId")
      : null;
    return id ? this.#sessions.ownerOf(id) : undefined;
  }

  async #streamable(req: Request, owner: string): Promise<Response> {
    const sessionId = req.headers.get("mcp-session-id");
    let body: unknown;
    if (req.method === "POST") {
      const read = await readJsonBody(req, this.options.config.maxRequestBodyBytes);
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
      const problem = retryFieldsProblem(body);
      if (problem !== undefined) {
        return Response.json(retryFieldsError(body, problem), { status: 400 });
      }
      const authInfo: AuthInfo = { token: "", clientId: owner, scopes: [] };
      return await this.#modern.fetch(withTaskName(req, body), { parsedBody: body, authInfo });
    }
    if (sessionId) {
      const session = this.#sessions.find(sessionId, owner, "streamable");
      const gone = () => this.#gone(sessionId, owner, "initialize a new one", -32001, id);
      if (!session) {
        return await this.#forwarder?.forward(req, new URL(req.url), sessionId, body, gone) ??
          gone();
      }
      return await this.#toSession(session, req, body, id);
    }
    if (req.method !== "POST" || !isInitializeRequest(body)) {
      return jsonRpcError(
        400,
        "Bad Request: no Mcp-Session-Id header; start with an initialize request",
        -32000,
        id,
      );
    }
    const full = this.#noRoom(owner, id);
    if (full) return full;
    const server = this.options.createServer(owner, "legacy");
    const transport: WebStandardStreamableHTTPServerTransport =
      new WebStandardStreamableHTTPServerTransport({
        sessionIdGenerator: () => this.#forwarder?.newId() ?? crypto.randomUUID(),
        eventStore: new BoundedEventStore(),
        retryInterval: SSE_RETRY_MS,
        onsessioninitialized: (id) =>
          void this.#sessions.open(id, owner, { kind: "streamable", transport, server }),
        onsessionclosed: (id) => void this.#sessions.drop(id, "closed by its client (DELETE)"),
      });
    transport.onclose = () => {
      if (transport.sessionId) void this.#sessions.drop(transport.sessionId);
    };
    await server.connect(transport);
    return await withId(await answered(transport, req, body, id), id);
  }

  /** A request of an open Streamable HTTP session; a POST is in flight until its answer is sent. */
  async #toSession(
    session: Session<Extract<Link, { kind: "streamable" }>>,
    req: Request,
    body: unknown,
    id: Id,
  ): Promise<Response> {
    const transport = session.link.transport;
    if (req.method === "GET") {
      // A standing stream to hear the server: a live client until the stream ends.
      const listening = this.#sessions.listening(session);
      let response: Response;
      try {
        response = await transport.handleRequest(req, { parsedBody: body });
      } catch (error) {
        listening.done();
        throw error;
      }
      return untilSent(response, listening.done);
    }
    if (req.method !== "POST") {
      this.#sessions.seen(session);
      return await withId(await transport.handleRequest(req, { parsedBody: body }), id);
    }
    // In flight until its answer (JSON, or an SSE stream) has been sent.
    const request = this.#sessions.request(session);
    let response: Response;
    try {
      response = await withId(await answered(transport, req, body, id), id);
    } catch (error) {
      request.done();
      throw error;
    }
    return untilSent(response, request.done);
  }

  async #openSse(owner: string): Promise<Response> {
    const full = this.#noRoom(owner, null);
    if (full) return full;
    const transport = new SseServerTransport(MESSAGES_PATH, this.#forwarder?.newId());
    const server = this.options.createServer(owner, "legacy");
    this.#sessions.open(transport.sessionId, owner, { kind: "sse", transport, server });
    transport.onclose = () => void this.#sessions.drop(transport.sessionId);
    const response = transport.response();
    await server.connect(transport);
    return response;
  }

  async #sseMessage(req: Request, url: URL, owner: string): Promise<Response> {
    const sessionId = url.searchParams.get("sessionId") ?? "";
    const session = this.#sessions.find(sessionId, owner, "sse");
    const gone = () =>
      this.#gone(sessionId, owner, "open a new one with GET /sse", -32000, null, "SSE ");
    if (!session) {
      if (!this.#forwarder?.otherNode(sessionId)) {
        await req.body?.cancel();
        return gone();
      }
      const read = await readJsonBody(req, this.options.config.maxRequestBodyBytes);
      if (read instanceof Response) return read;
      return await this.#forwarder.forward(req, url, sessionId, read.body, gone) ?? gone();
    }
    const read = await readJsonBody(req, this.options.config.maxRequestBodyBytes);
    if (read instanceof Response) return read;
    this.#sessions.received(session);
    if (!session.link.transport.receive(read.body)) {
      return jsonRpcError(400, "Invalid JSON-RPC message", -32600, requestId(read.body));
    }
    return new Response("Accepted", { status: 202 });
  }

  /**
   * The 404 for a session that is not open here, which makes a client open a new one (`fix`); it
   * says why when the table closed that session of `owner` lately.
   */
  #gone(sessionId: string, owner: string, fix: string, code: number, id: Id, era = ""): Response {
    const why = sessionId ? this.#sessions.whyClosed(sessionId, owner) : undefined;
    return jsonRpcError(
      404,
      why === undefined
        ? `${era}Session not found; ${fix}`
        : `${era}Session ${sessionId} was ${why}; ${fix}`,
      code,
      id,
    );
  }

  /** The 503 refusing a new session of `owner`, `undefined` when the table made room. */
  #noRoom(owner: string, id: Id): Response | undefined {
    const room = this.#sessions.makeRoom(owner);
    if (room.ok) return undefined;
    return jsonRpcError(
      503,
      `Too many open sessions: ${room.why}; close idle clients or retry later`,
      -32000,
      id,
    );
  }

  async close(): Promise<void> {
    await this.#modern.close();
    await this.#sessions.close();
  }
}
