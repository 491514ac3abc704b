/**
 * Dashboard logins: random session ids (never the token) held in memory with an expiry and the
 * principal that logged in, sent to the browser as an HttpOnly, SameSite=Strict cookie scoped to
 * `/ui`. Logins are fair shares: one principal holds at most `maxPerPrincipal` (its own oldest gives
 * way), and at `maxTotal` the principal holding the most gives way, never one holding fewer.
 */
import { UI_SESSION_TTL_S } from "./ui_limits.ts";
import { heldBy, whoGivesWay } from "./fair_share.ts";

export const SESSION_COOKIE = "klym_ui";

export interface UiSessionsOptions {
  /** Logins one principal may hold (`KLYM_UI_MAX_LOGINS`). */
  maxPerPrincipal: number;
  /** Logins of all principals (`KLYM_UI_MAX_LOGINS_TOTAL`). */
  maxTotal: number;
  ttlS?: number;
  now?: () => number;
}

interface Login {
  readonly principal: string;
  readonly expires: number;
}

export class UiSessions {
  /** Session id → login; insertion order is age order. */
  readonly #sessions = new Map<string, Login>();
  readonly maxPerPrincipal: number;
  readonly maxTotal: number;
  readonly ttlS: number;
  readonly now: () => number;

  constructor(options: UiSessionsOptions) {
    this.maxPerPrincipal = options.maxPerPrincipal;
    this.maxTotal = options.maxTotal;
    this.ttlS = options.ttlS ?? UI_SESSION_TTL_S;
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.#sessions.size;
  }

  /** Logins `principal` holds now. */
  countOf(principal: string): number {
    return heldBy(this.#principals(), principal);
  }

  /** A new login of `principal`; another login gives way when a cap is reached. */
  create(principal: string): string {
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    const id = btoa(String.fromCharCode(...bytes)).replace(
      /[+/=]/g,
      (c) => c === "+" ? "-" : c === "/" ? "_" : "",
    );
    this.#dropExpired();
    this.#sessions.set(id, { principal, expires: this.now() + this.ttlS * 1000 });
    while (this.countOf(principal) > this.maxPerPrincipal) this.#dropOldestOf(principal);
    while (this.#sessions.size > this.maxTotal) {
      this.#dropOldestOf(whoGivesWay(this.#principals(), principal));
    }
    return id;
  }

  /** The principal of the request's live session cookie, `undefined` without one. */
  principalOf(req: Request): string | undefined {
    const id = sessionIdOf(req);
    if (id === undefined) return undefined;
    const login = this.#sessions.get(id);
    if (login === undefined) return undefined;
    if (login.expires <= this.now()) {
      this.#sessions.delete(id);
      return undefined;
    }
    return login.principal;
  }

  /** Whether the request carries a live session cookie. */
  has(req: Request): boolean {
    return this.principalOf(req) !== undefined;
  }

  delete(req: Request): void {
    const id = sessionIdOf(req);
    if (id !== undefined) this.#sessions.delete(id);
  }

  cookie(id: string, secure: boolean): string {
    return `${SESSION_COOKIE}=${id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=${this.ttlS}${
      secure ? "; Secure" : ""
    }`;
  }

  *#principals(): Iterable<string> {
    for (const login of this.#sessions.values()) yield login.principal;
  }

  #dropOldestOf(principal: string): void {
    for (const [id, login] of this.#sessions) {
      if (login.principal === principal) return void this.#sessions.delete(id);
    }
  }

  #dropExpired(): void {
    const now = this.now();
    for (const [id, login] of this.#sessions) {
      if (login.expires <= now) this.#sessions.delete(id);
    }
  }
}

export const CLEARED_COOKIE = `${SESSION_COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0`;

function sessionIdOf(req: Request): string | undefined {
  for (const part of (req.headers.get("cookie") ?? "").split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === SESSION_COOKIE) return value.join("=") || undefined;
  }
  return undefined;
}
