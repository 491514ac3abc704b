/**
 * The open sessions of the 2025 eras (Streamable HTTP and legacy SSE): who owns each, when it was
 * last used, and who gives way when the limits are reached. A Streamable HTTP session idle past
 * `KLYM_SESSION_IDLE_S` (or unused after its handshake for `UNUSED_SESSION_IDLE_MS`) is closed by a
 * periodic sweep; an open SSE stream is a live client and is never closed as idle, a Streamable
 * HTTP session's standing GET stream included. A session with a request in flight is never closed
 * as idle. The table remembers why it closed each of its latest `REMEMBERED_CLOSES` sessions, so
 * that a client still using one is told. Time comes from a `SessionClock`, which tests inject.
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "../config.ts";

const logger = getLogger(["klym", "http"]);

/** The longest pause between two sweeps for idle sessions. */
export const SWEEP_MS = 10_000;
/** A session that sent nothing after its handshake is closed after this long. */
export const UNUSED_SESSION_IDLE_MS = 60_000;
/** When the session limit is reached, the least recently used session idle this long gives way. */
export const EVICTABLE_IDLE_MS = 5_000;
/** How many closed sessions the table remembers the reason of (for the 404 their clients get). */
export const REMEMBERED_CLOSES = 1024;

export type SessionLimits = Pick<
  Config,
  "sessionIdleS" | "maxSessions" | "maxSessionsPerPrincipal"
>;

/** Streamable HTTP (may be closed when idle) or a legacy SSE stream (a live client while open). */
export type SessionKind = "streamable" | "sse";

/** The table's time: the clock in milliseconds, and a repeating timer that `stop` ends. */
export interface SessionClock {
  now(): number;
  every(ms: number, run: () => void): { stop(): void };
}

export const SYSTEM_CLOCK: SessionClock = {
  now: () => Date.now(),
  every(ms, run) {
    const timer = setInterval(run, ms);
    return { stop: () => clearInterval(timer) };
  },
};

/** What the app keeps for a session (its transport and server), and the session's kind. */
export interface SessionLink {
  readonly kind: SessionKind;
}

export interface Session<T extends SessionLink> {
  readonly id: string;
  /** The principal that opened the session; no other may use it. */
  readonly owner: string;
  readonly link: T;
  /** When it was opened, last received a message, or last finished answering one (clock ms). */
  readonly lastSeen: number;
  /** Messages received after `initialize` (its `initialized` notification included). */
  readonly messages: number;
  /** Requests being answered now, and open GET streams (a client listening). */
  readonly inFlight: number;
}

type Entry<T extends SessionLink> = { -readonly [K in keyof Session<T>]: Session<T>[K] };

/** Whether a new session of a principal has room, and why not when it has none. */
export type Room = { readonly ok: true } | { readonly ok: false; readonly why: string };

export interface SessionTableOptions<T extends SessionLink> {
  /** Closes a session's link when it leaves the table; its failures are ignored. */
  close: (link: T) => Promise<void>;
  /** Default: `SYSTEM_CLOCK`. */
  clock?: SessionClock;
}

export class SessionTable<T extends SessionLink> {
  readonly #sessions = new Map<string, Entry<T>>();
  /** Open sessions of each principal (no entry for none). */
  readonly #sessionsOf = new Map<string, number>();
  readonly #limits: SessionLimits;
  readonly #close: (link: T) => Promise<void>;
  readonly #clock: SessionClock;
  readonly #sweeper: { stop(): void };
  /** Why each of the latest closed sessions was closed, with its owner; oldest first. */
  readonly #closed = new Map<string, { owner: string; why: string }>();

  constructor(limits: SessionLimits, options: SessionTableOptions<T>) {
    this.#limits = limits;
    this.#close = options.close;
    this.#clock = options.clock ?? SYSTEM_CLOCK;
    this.#sweeper = this.#clock.every(
      Math.min(SWEEP_MS, limits.sessionIdleS * 500),
      () => this.sweep(),
    );
  }

  get size(): number {
    return this.#sessions.size;
  }

  /** What the app keeps for each open session. */
  *links(): Iterable<T> {
    for (const session of this.#sessions.values()) yield session.link;
  }

  /** Open sessions of `owner`. */
  countOf(owner: string): number {
    return this.#sessionsOf.get(owner) ?? 0;
  }

  open(id: string, owner: string, link: T): Session<T> {
    const session: Entry<T> = {
      id,
      owner,
      link,
      lastSeen: this.#clock.now(),
      messages: 0,
      inFlight: 0,
    };
    this.#sessions.set(id, session);
    this.#sessionsOf.set(owner, this.countOf(owner) + 1);
    return session;
  }

  /** The principal owning the open session `id`, `undefined` when there is none. */
  ownerOf(id: string): string | undefined {
    return this.#sessions.get(id)?.owner;
  }

  /** The session `id` when it is `owner`'s and of `kind`; `undefined` otherwise. */
  find<K extends SessionKind>(
    id: string,
    owner: string,
    kind: K,
  ): Session<T & { readonly kind: K }> | undefined {
    const session = this.#sessions.get(id);
    if (!session || session.owner !== owner || session.link.kind !== kind) return undefined;
    return session as Session<T & { readonly kind: K }>;
  }

  /** The session is used without sending a message (a GET opening a stream, a DELETE). */
  seen(session: Session<T>): void {
    this.#entry(session).lastSeen = this.#clock.now();
  }

  /** The session received a message answered at once (a legacy SSE POST). */
  received(session: Session<T>): void {
    const entry = this.#entry(session);
    entry.lastSeen = this.#clock.now();
    entry.messages++;
  }

  /**
   * The session received a message whose answer is under way (a Streamable HTTP POST, answered in
   * JSON or an SSE stream): it is in flight, never closed as idle, until `done` is called.
   */
  request(session: Session<T>): { done(): void } {
    this.#entry(session).messages++;
    return this.listening(session);
  }

  /**
   * The session's client opened a stream to hear the server (a Streamable HTTP GET): it is a live
   * client, in flight like a request and never closed as idle, until `done` is called.
   */
  listening(session: Session<T>): { done(): void } {
    const entry = this.#entry(session);
    entry.lastSeen = this.#clock.now();
    entry.inFlight++;
    let ended = false;
    return {
      done: () => {
        if (ended) return;
        ended = true;
        entry.inFlight--;
        entry.lastSeen = this.#clock.now();
      },
    };
  }

  /**
   * Room for a session of `owner`, closing another session to make it when the rules allow. A
   * principal at `KLYM_MAX_SESSIONS_PER_PRINCIPAL` may only displace its own least recently used
   * Streamable HTTP session idle for `EVICTABLE_IDLE_MS` (careless clients never `DELETE` theirs).
   * At `KLYM_MAX_SESSIONS`, a principal holding less than its fair share (the limit divided among
   * the principals holding sessions, itself included) takes the place of the least recently used
   * session of the principal holding the most, an open SSE stream included (one with no request in
   * flight first); anyone else may only displace such an idle session of a principal holding at
   * least as many as it does.
   */
  makeRoom(owner: string): Room {
    const { maxSessions, maxSessionsPerPrincipal } = this.#limits;
    const mine = this.countOf(owner);
    const idleSince = this.#clock.now() - EVICTABLE_IDLE_MS;
    const idle = (s: Entry<T>) =>
      s.link.kind === "streamable" && s.inFlight === 0 && s.lastSeen <= idleSince;
    if (mine >= maxSessionsPerPrincipal) {
      if (
        this.#evictLru(
          (s) => s.owner === owner && idle(s),
          "its principal's limit",
          maxSessionsPerPrincipal < maxSessions
            ? "its principal's limit (KLYM_MAX_SESSIONS_PER_PRINCIPAL)"
            : "the session limit (KLYM_MAX_SESSIONS)",
        )
      ) {
        return { ok: true };
      }
      // A limit per principal no lower than the total is the total's (one principal alone).
      return {
        ok: false,
        why: maxSessionsPerPrincipal < maxSessions
          ? `principal "${owner}" has ${mine} open sessions, the limit per principal is ${maxSessionsPerPrincipal} (KLYM_MAX_SESSIONS_PER_PRINCIPAL)`
          : `principal "${owner}" has ${mine} open sessions, the limit is ${maxSessions} (KLYM_MAX_SESSIONS)`,
      };
    }
    if (this.#sessions.size < maxSessions) return { ok: true };
    const holders = this.#sessionsOf.size + (mine === 0 ? 1 : 0);
    const fairShare = Math.floor(maxSessions / holders);
    if (mine < fairShare) {
      let busiest = owner;
      for (const [principal, count] of this.#sessionsOf) {
        if (count > this.countOf(busiest)) busiest = principal;
      }
      const reason = `a fair share for "${owner}"`;
      const told = "a fair share for another principal (KLYM_MAX_SESSIONS)";
      if (
        this.#evictLru((s) => s.owner === busiest && s.inFlight === 0, reason, told) ||
        this.#evictLru((s) => s.owner === busiest, reason, told)
      ) return { ok: true };
    }
    const atLeastMine = (s: Entry<T>) => this.countOf(s.owner) >= mine;
    const limit = "the session limit (KLYM_MAX_SESSIONS)";
    if (this.#evictLru((s) => idle(s) && atLeastMine(s), "the session limit", limit)) {
      return { ok: true };
    }
    return {
      ok: false,
      why:
        `${this.#sessions.size} sessions are open, the limit is ${maxSessions} (KLYM_MAX_SESSIONS), and principal "${owner}" has ${mine}, its fair share being ${fairShare}`,
    };
  }

  /** Why the session `id` of `owner` was closed, when it is one of the latest closed. */
  whyClosed(id: string, owner: string): string | undefined {
    const closed = this.#closed.get(id);
    return closed?.owner === owner ? closed.why : undefined;
  }

  /** Takes the session out of the table at once and closes its link; `why` is told its client. */
  async drop(id: string, why = "closed"): Promise<void> {
    const session = this.#sessions.get(id);
    if (!session) return;
    this.#sessions.delete(id);
    this.#closed.set(id, { owner: session.owner, why });
    if (this.#closed.size > REMEMBERED_CLOSES) {
      this.#closed.delete(this.#closed.keys().next().value!);
    }
    const left = this.countOf(session.owner) - 1;
    if (left > 0) this.#sessionsOf.set(session.owner, left);
    else this.#sessionsOf.delete(session.owner);
    await this.#close(session.link).catch(() => {});
  }

  /**
   * Closes the Streamable HTTP sessions with no request in flight that were idle past
   * `KLYM_SESSION_IDLE_S`, or unused since their handshake for `UNUSED_SESSION_IDLE_MS` (or
   * `KLYM_SESSION_IDLE_S`, when shorter). The clock's timer calls it; tests may too.
   */
  sweep(): void {
    const now = this.#clock.now();
    const idleMs = this.#limits.sessionIdleS * 1000;
    const cutoff = now - idleMs;
    const unusedCutoff = now - Math.min(UNUSED_SESSION_IDLE_MS, idleMs);
    for (const [id, session] of this.#sessions) {
      // An open SSE stream is a live client; its keepalives would fail if it had gone.
      if (session.link.kind !== "streamable") continue;
      if (session.inFlight > 0) continue;
      // A session that sent nothing beyond its handshake (`initialized`) is let go sooner.
      const unused = session.messages <= 1 && session.lastSeen < unusedCutoff;
      if (session.lastSeen < cutoff) {
        logger.info("Evicting idle session {id}", { id });
        void this.drop(id, `closed after ${idleMs / 1000} s idle (KLYM_SESSION_IDLE_S)`);
      } else if (unused) {
        logger.info("Evicting idle session {id}", { id });
        void this.drop(
          id,
          `closed after ${
            Math.min(UNUSED_SESSION_IDLE_MS, idleMs) / 1000
          } s with nothing sent after its handshake and no stream open`,
        );
      }
    }
  }

  /** Stops the sweeps and closes every session. */
  async close(): Promise<void> {
    this.#sweeper.stop();
    await Promise.all([...this.#sessions.keys()].map((id) => this.drop(id)));
  }

  /**
   * Closes the least recently used session that `may` accepts, logging `reason` and telling its
   * client `told`; `false` when there is none.
   */
  #evictLru(may: (session: Entry<T>) => boolean, reason: string, told: string): boolean {
    let lru: Entry<T> | undefined;
    for (const session of this.#sessions.values()) {
      if ((!lru || session.lastSeen < lru.lastSeen) && may(session)) lru = session;
    }
    if (!lru) return false;
    logger.info("Closing the least recently used session {id} of {owner} to make room: {reason}", {
      id: lru.id,
      owner: lru.owner,
      reason,
    });
    void this.drop(lru.id, `closed to make room for a new session: ${told}`);
    return true;
  }

  /** The table's own record of `session` (handed out read-only). */
  #entry(session: Session<T>): Entry<T> {
    return session as Entry<T>;
  }
}
