/**
 * The dashboard at `/ui`: a login step, the page and its assets, a small JSON API over the task
 * registry, cancel, and the live event stream. `HttpApp` has already checked Host and Origin.
 *
 * With `KLYM_AUTH_TOKEN` set, the page asks for the token once (a form POST, so it never appears in
 * a URL or a log) and answers with a session cookie holding a random id. Without a token (loopback
 * only), visiting the page opens a session. Every state-changing request (login, logout, cancel)
 * must come from the dashboard's own origin, and cancel also needs the session cookie.
 *
 * A login is a principal: the token's (`Principals.ofToken`), or `local` without tokens. Everything
 * the dashboard shows or touches is that principal's; another's task is "not found" exactly like a
 * missing one. An admin (`KLYM_ADMINS`) sees and may cancel every task, with its owner.
 */
import { getLogger } from "@logtape/logtape";
import { KlymError } from "../errors.ts";
import { concatBytes } from "../text.ts";
import type { Config } from "../config.ts";
import { LOCAL_PRINCIPAL, type Principals, scopeOf, type Viewer } from "../principals.ts";
import type { TaskRegistry } from "../tasks/task_registry.ts";
import { TASK_STATUSES, type TaskStatus } from "../tasks/task_state.ts";
import { logPageView, summary } from "../tasks/task_summary.ts";
import { APP_CSS, APP_JS, dashboardHtml, loginHtml } from "./assets.ts";
import { type EventStreamOptions, EventStreams } from "./event_stream.ts";
import type { ServerStatsSource } from "./server_stats.ts";
import { CLEARED_COOKIE, UiSessions } from "./ui_sessions.ts";
import { UI_LIST_LIMIT, UI_LOG_LINES_PER_READ, UI_LOGIN_BODY_BYTES } from "./ui_limits.ts";
import type { AuthThrottle } from "../http/auth_throttle.ts";

const logger = getLogger(["klym", "ui"]);

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "object-src 'none'",
    "frame-ancestors 'none'",
  ].join("; "),
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "same-origin",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "cache-control": "no-store",
};

export interface UiAppOptions {
  registry: TaskRegistry;
  /** Who a login's token belongs to, and who is an admin. */
  principals: Pick<Principals, "required" | "ofToken" | "viewer">;
  stats: Pick<ServerStatsSource, "read">;
  /** The dashboard's fair shares of logins and streams. */
  limits: Pick<Config, "uiMaxLogins" | "uiMaxLoginsTotal" | "uiMaxStreams" | "uiMaxStreamsTotal">;
  streams?: Omit<EventStreamOptions, "maxPerPrincipal" | "maxTotal">;
  /** Failed logins, counted per client address with the failed bearer checks. */
  throttle: AuthThrottle;
}

function respond(body: BodyInit | null, status: number, headers: Record<string, string> = {}) {
  return new Response(body, { status, headers: { ...SECURITY_HEADERS, ...headers } });
}

function json(value: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return respond(JSON.stringify(value), status, {
    "content-type": "application/json; charset=utf-8",
    ...headers,
  });
}

function redirect(to: string, headers: Record<string, string> = {}): Response {
  return respond(null, 303, { location: to, ...headers });
}

/** The request's `Origin` names this very server (its `Host`). */
function sameOrigin(req: Request): boolean {
  const origin = req.headers.get("origin");
  const host = req.headers.get("host");
  if (!origin || !host) return false;
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}

export class UiApp {
  readonly sessions: UiSessions;
  readonly streams: EventStreams;

  constructor(readonly options: UiAppOptions) {
    const { registry, stats, limits } = options;
    this.sessions = new UiSessions({
      maxPerPrincipal: limits.uiMaxLogins,
      maxTotal: limits.uiMaxLoginsTotal,
    });
    this.streams = new EventStreams({
      events: registry.events,
      ownerOf: (id) => registry.ownerOf(id),
      stats: (viewer) => stats.read(viewer),
    }, {
      ...options.streams,
      maxPerPrincipal: limits.uiMaxStreams,
      maxTotal: limits.uiMaxStreamsTotal,
    });
  }

  readonly fetch = async (req: Request, url: URL, client: string): Promise<Response> => {
    try {
      return await this.#route(req, url, client);
    } catch (error) {
      logger.error("Dashboard request failed: {error}", { error });
      return json({ error: "Internal server error" }, 500);
    }
  };

  async #route(req: Request, url: URL, client: string): Promise<Response> {
    const path = url.pathname;
    const method = req.method;
    if (path === "/ui/app.js" && method === "GET") {
      return respond(APP_JS, 200, { "content-type": "text/javascript; charset=utf-8" });
    }
    if (path === "/ui/app.css" && method === "GET") {
      return respond(APP_CSS, 200, { "content-type": "text/css; charset=utf-8" });
    }
    if (path === "/ui/login") {
      if (method === "GET") return this.#loginPage(req, undefined, 200);
      if (method === "POST") return await this.#login(req, url, client);
    }
    if (path === "/ui/logout" && method === "POST") {
      if (!sameOrigin(req)) return json({ error: "Cross-origin request refused" }, 403);
      this.sessions.delete(req);
      return redirect("/ui/login", { "set-cookie": CLEARED_COOKIE });
    }
    if ((path === "/ui" || path === "/ui/") && method === "GET") {
      if (this.sessions.has(req)) return this.#page();
      if (this.options.principals.required) return redirect("/ui/login");
      const id = this.sessions.create(LOCAL_PRINCIPAL);
      return this.#page({ "set-cookie": this.sessions.cookie(id, url.protocol === "https:") });
    }
    const principal = this.sessions.principalOf(req);
    if (principal === undefined) {
      return json({ error: "Not logged in; open /ui and log in with KLYM_AUTH_TOKEN" }, 401);
    }
    try {
      return await this.#api(req, url, this.options.principals.viewer(principal));
    } catch (error) {
      if (error instanceof KlymError) {
        return json(
          { error: error.message, code: error.code },
          error.code === "TASK_NOT_FOUND" ? 404 : 400,
        );
      }
      throw error;
    }
  }

  async #api(req: Request, url: URL, viewer: Viewer): Promise<Response> {
    const path = url.pathname;
    const method = req.method;
    const registry = this.options.registry;
    const scope = scopeOf(viewer);
    if (path === "/ui/events" && method === "GET") {
      return this.streams.open(SECURITY_HEADERS, viewer);
    }
    if (path === "/ui/api/server" && method === "GET") {
      return json(await this.options.stats.read(viewer));
    }
    if (path === "/ui/api/tasks" && method === "GET") {
      const status = url.searchParams.get("status") || undefined;
      if (status !== undefined && !(TASK_STATUSES as readonly string[]).includes(status)) {
        return json({ error: `Unknown status "${status}"; use one of ${TASK_STATUSES}` }, 400);
      }
      return json({
        viewer: { principal: viewer.principal, admin: viewer.admin },
        tasks: registry.list(status as TaskStatus | undefined, UI_LIST_LIMIT, scope)
          .map((task) => summary(task, viewer.admin)),
        counts: registry.counts(scope),
      });
    }
    const match = /^\/ui\/api\/tasks\/([A-Za-z0-9_-]{1,128})(\/cancel)?$/.exec(path);
    if (!match) return json({ error: `No dashboard route ${method} ${path}` }, 404);
    const id = match[1]!;
    if (match[2]) {
      if (method !== "POST") return json({ error: "Use POST to cancel" }, 405);
      if (!sameOrigin(req)) return json({ error: "Cross-origin request refused" }, 403);
      const task = registry.cancel(id, "cancelled from the dashboard", scope);
      logger.info("Task {taskId} cancel requested from the dashboard by {principal}", {
        taskId: id,
        principal: viewer.principal,
      });
      return json({ task_id: task.id, status: task.state.status });
    }
    if (method !== "GET") return json({ error: "Use GET" }, 405);
    const task = registry.get(id, scope);
    const cursor = Number(url.searchParams.get("cursor") ?? "0");
    if (!Number.isSafeInteger(cursor) || cursor < 0) {
      return json({ error: '"cursor" must be a whole number, 0 or more' }, 400);
    }
    const page = task.logs.read(Math.min(cursor, task.logs.lastSeq), UI_LOG_LINES_PER_READ);
    return json({
      ...summary(task, viewer.admin),
      prompt: task.prompt ?? null,
      timeout_s: task.timeoutS,
      ...logPageView(task, page),
      ...(task.state.status === "succeeded" ? { result: JSON.parse(task.state.resultJson) } : {}),
    });
  }

  #page(headers: Record<string, string> = {}): Response {
    return respond(dashboardHtml(), 200, {
      "content-type": "text/html; charset=utf-8",
      ...headers,
    });
  }

  #loginPage(
    req: Request,
    error: string | undefined,
    status: number,
    headers: Record<string, string> = {},
  ): Response {
    if (!this.options.principals.required) return redirect("/ui");
    if (this.sessions.has(req)) return redirect("/ui");
    return respond(loginHtml(error), status, {
      "content-type": "text/html; charset=utf-8",
      ...headers,
    });
  }

  async #login(req: Request, url: URL, client: string): Promise<Response> {
    if (!this.options.principals.required) return redirect("/ui");
    if (!sameOrigin(req)) {
      await req.body?.cancel();
      return json({ error: "Cross-origin login refused" }, 403);
    }
    const text = await readCapped(req, UI_LOGIN_BODY_BYTES);
    if (text === undefined) {
      return this.#loginPage(req, `The form is larger than ${UI_LOGIN_BODY_BYTES} bytes`, 413);
    }
    const given = new URLSearchParams(text).get("token") ?? "";
    const attempt = this.options.throttle.attempt(
      client,
      () => this.options.principals.ofToken(given),
    );
    if (attempt.outcome === "refused") {
      const retry = `Too many failed logins: try again in ${attempt.retryAfterS} s`;
      return this.#loginPage(req, retry, 429, { "retry-after": String(attempt.retryAfterS) });
    }
    if (attempt.outcome === "failed") {
      logger.warn("Dashboard login refused: wrong token");
      return this.#loginPage(req, "Wrong token: use the value of KLYM_AUTH_TOKEN", 401);
    }
    const principal = attempt.value;
    const id = this.sessions.create(principal);
    logger.info("Dashboard login of {principal}", { principal });
    return redirect("/ui", { "set-cookie": this.sessions.cookie(id, url.protocol === "https:") });
  }

  close(): void {
    this.streams.close();
  }
}

/** The body as text, or `undefined` when it is longer than `max` bytes. */
async function readCapped(req: Request, max: number): Promise<string | undefined> {
  if (!req.body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of req.body) {
    size += chunk.byteLength;
    if (size > max) return undefined;
    chunks.push(chunk);
  }
  return new TextDecoder().decode(concatBytes(chunks));
}
