/**
 * Dashboard logins: random session ids (never the token) held in memory with an expiry, sent to the
 * browser as an HttpOnly, SameSite=Strict cookie scoped to `/ui`.
 */
import { UI_MAX_SESSIONS, UI_SESSION_TTL_S } from "./ui_limits.ts";

export const SESSION_COOKIE = "klym_ui";

export class UiSessions {
  /** Session id → expiry time (ms); insertion order is age order. */
  readonly #sessions = new Map<string, number>();

  constructor(
    readonly ttlS = UI_SESSION_TTL_S,
    readonly max = UI_MAX_SESSIONS,
    readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.#sessions.size;
  }

  create(): string {
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    const id = btoa(String.fromCharCode(...bytes)).replace(
      /[+/=]/g,
      (c) => c === "+" ? "-" : c === "/" ? "_" : "",
    );
    this.#sessions.set(id, this.now() + this.ttlS * 1000);
    while (this.#sessions.size > this.max) {
      this.#sessions.delete(this.#sessions.keys().next().value!);
    }
    return id;
  }

  /** Whether the request carries a live session cookie. */
  has(req: Request): boolean {
    const id = sessionIdOf(req);
    if (id === undefined) return false;
    const expires = this.#sessions.get(id);
    if (expires === undefined) return false;
    if (expires <= this.now()) {
      this.#sessions.delete(id);
      return false;
    }
    return true;
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
}

export const CLEARED_COOKIE = `${SESSION_COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0`;

function sessionIdOf(req: Request): string | undefined {
  for (const part of (req.headers.get("cookie") ?? "").split(";")) {
    const [name, ...value] = part.trim().split("=");
    if (name === SESSION_COOKIE) return value.join("=") || undefined;
  }
  return undefined;
}
