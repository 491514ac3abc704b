/**
 * Throttled guessing: failed authentications (a wrong bearer token, a wrong dashboard login) spend
 * tokens from two buckets, one per client address and one for all addresses together. A check that
 * succeeds spends nothing, nor does a request with no `Authorization` header (it guesses nothing).
 *
 * - An address whose bucket is empty is refused, with the seconds until it has a token again,
 *   before its credential is looked at: a right guess is refused like a wrong one (no oracle).
 * - While the total bucket is empty, every address with a recent failure (its bucket not full) is
 *   refused the same way, and a failure spends the failing address's whole bucket (one strike):
 *   a guesser spread over many addresses gets one guess per address per refill, not a burst each.
 *   An address with no recent failure is still checked, so the right token gets in at once.
 * - Memory is bounded: an address is remembered only while its bucket is not full, at most
 *   `maxAddresses` of them; beyond it the address that failed least recently is forgotten.
 *   IPv6 addresses count per /64 (one host usually holds a whole /64), and IPv4 loopback as one
 *   address: any local process may connect from any of 127.0.0.0/8, one clean address each.
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "../config.ts";

const logger = getLogger(["klym", "auth"]);

/** Addresses with recent failures remembered at once; the least recently failing gives way. */
export const AUTH_THROTTLE_MAX_ADDRESSES = 10_000;

const MS_PER_MIN = 60_000;

export type AuthThrottleLimits = Pick<
  Config,
  "authFailuresBurst" | "authFailuresPerMin" | "authFailuresAllPerMin"
>;

export interface AuthThrottleOptions {
  /** The clock, in milliseconds. */
  now?: () => number;
  maxAddresses?: number;
}

/** What became of one authentication attempt. */
export type AuthAttempt<T> =
  | { readonly outcome: "passed"; readonly value: T }
  | { readonly outcome: "failed" }
  | {
    readonly outcome: "refused";
    /** Whole seconds until the address may try again (`Retry-After`). */
    readonly retryAfterS: number;
    /** The bucket that ran dry: the address's own, or all addresses'. */
    readonly bucket: "address" | "all";
  };

interface Bucket {
  tokens: number;
  /** When `tokens` was last computed. */
  at: number;
  /** Whether running dry was logged (once per address until it is forgotten). */
  warned: boolean;
}

export class AuthThrottle {
  readonly #burst: number;
  readonly #perMs: number;
  readonly #totalBurst: number;
  readonly #totalPerMs: number;
  readonly #now: () => number;
  readonly #maxAddresses: number;
  /** Addresses with a recent failure, least recently failing first. */
  readonly #addresses = new Map<string, Bucket>();
  readonly #total: Bucket;

  constructor(limits: AuthThrottleLimits, options: AuthThrottleOptions = {}) {
    this.#burst = limits.authFailuresBurst;
    this.#perMs = limits.authFailuresPerMin / MS_PER_MIN;
    this.#totalBurst = limits.authFailuresAllPerMin;
    this.#totalPerMs = limits.authFailuresAllPerMin / MS_PER_MIN;
    this.#now = options.now ?? Date.now;
    this.#maxAddresses = options.maxAddresses ?? AUTH_THROTTLE_MAX_ADDRESSES;
    this.#total = { tokens: this.#totalBurst, at: this.#now(), warned: false };
  }

  /** Addresses remembered now (those with a recent failure). */
  get addressCount(): number {
    return this.#addresses.size;
  }

  /**
   * Runs `check` for a credential `address` presented, unless the address is refused; a check
   * that returns `undefined` is a failure and spends tokens. `check` runs synchronously here, so
   * parallel requests cannot all pass before the first failure is counted.
   */
  attempt<T>(address: string, check: () => T | undefined): AuthAttempt<T> {
    const now = this.#now();
    this.#forgetFull(now);
    const total = this.#refill(this.#total, now, this.#totalBurst, this.#totalPerMs);
    if (total >= this.#totalBurst) this.#total.warned = false;
    const entry = this.#addresses.get(address);
    const own = entry ? this.#refill(entry, now, this.#burst, this.#perMs) : this.#burst;
    if (own < 1) {
      return {
        outcome: "refused",
        retryAfterS: seconds((1 - own) / this.#perMs),
        bucket: "address",
      };
    }
    if (own < this.#burst && total < 1) {
      const untilTotal = (1 - total) / this.#totalPerMs;
      const untilClean = (this.#burst - own) / this.#perMs;
      return {
        outcome: "refused",
        retryAfterS: seconds(Math.min(untilTotal, untilClean)),
        bucket: "all",
      };
    }
    const value = check();
    if (value !== undefined) return { outcome: "passed", value };
    this.#fail(address, entry, own, total < 1, now);
    return { outcome: "failed" };
  }

  #fail(address: string, entry: Bucket | undefined, own: number, strike: boolean, now: number) {
    this.#total.tokens = Math.max(0, this.#total.tokens - 1);
    if (this.#total.tokens < 1 && !this.#total.warned) {
      this.#total.warned = true;
      logger.warn(
        "Failed authentications from all addresses reached {limit} a minute (KLYM_AUTH_FAILURES_ALL_PER_MIN): addresses with a recent failure are refused until it refills",
        { limit: this.#totalBurst },
      );
    }
    const bucket = entry ?? { tokens: own, at: now, warned: false };
    // Re-inserted last: the map stays ordered by last failure.
    this.#addresses.delete(address);
    if (this.#addresses.size >= this.#maxAddresses) {
      const oldest = this.#addresses.keys().next().value!;
      this.#addresses.delete(oldest);
    }
    bucket.tokens = strike ? 0 : Math.max(0, own - 1);
    bucket.at = now;
    this.#addresses.set(address, bucket);
    if (bucket.tokens < 1 && !bucket.warned) {
      bucket.warned = true;
      logger.warn(
        "Authentication failures from {address} are throttled: it is refused for {seconds} s (KLYM_AUTH_FAILURES_BURST, KLYM_AUTH_FAILURES_PER_MIN)",
        { address, seconds: seconds((1 - bucket.tokens) / this.#perMs) },
      );
    }
  }

  /** The bucket's tokens now (stored back), never above `burst`. */
  #refill(bucket: Bucket, now: number, burst: number, perMs: number): number {
    bucket.tokens = Math.min(burst, bucket.tokens + Math.max(0, now - bucket.at) * perMs);
    bucket.at = now;
    return bucket.tokens;
  }

  /** Forgets the least recently failing addresses while their buckets are full again. */
  #forgetFull(now: number): void {
    for (const [address, bucket] of this.#addresses) {
      if (this.#refill(bucket, now, this.#burst, this.#perMs) < this.#burst) return;
      this.#addresses.delete(address);
    }
  }
}

function seconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000));
}

/** The key of every IPv4 loopback address: a local guesser would otherwise have 16 million. */
export const IPV4_LOOPBACK_KEY = "127.0.0.0/8";

/**
 * The key a client's failures are counted under: its IP address (IPv4, or an IPv4-mapped IPv6
 * address, whole, but all of 127.0.0.0/8 as one; other IPv6 addresses by their /64), or the
 * transport for a Unix socket.
 */
export function clientAddress(info: Deno.ServeHandlerInfo | undefined): string {
  const addr = info?.remoteAddr;
  if (!addr) return "unknown";
  if (addr.transport !== "tcp" && addr.transport !== "udp") return addr.transport;
  return addressKey(addr.hostname);
}

export function addressKey(host: string): string {
  if (!host.includes(":")) return ipv4Key(host);
  const groups = ipv6Groups(host);
  if (!groups) return host;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const [hi, lo] = [groups[6]!, groups[7]!];
    return ipv4Key(`${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`);
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(":")}::/64`;
}

function ipv4Key(address: string): string {
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(address) ? IPV4_LOOPBACK_KEY : address;
}

/** The eight 16-bit groups of an IPv6 address, `undefined` when it is not one. */
function ipv6Groups(text: string): number[] | undefined {
  let host = text.replace(/^\[|\]$/g, "").split("%")[0]!;
  const v4 = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    host = `${host.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${
      ((c << 8) | d).toString(16)
    }`;
  }
  const halves = host.split("::");
  if (halves.length > 2) return undefined;
  const parse = (part: string | undefined) =>
    part ? part.split(":").map((g) => /^[0-9a-f]{1,4}$/i.test(g) ? parseInt(g, 16) : NaN) : [];
  const head = parse(halves[0]);
  const tail = parse(halves[1]);
  const fill = 8 - head.length - tail.length;
  if (halves.length === 1 ? fill !== 0 : fill < 0) return undefined;
  const groups = [...head, ...new Array<number>(fill).fill(0), ...tail];
  return groups.some(Number.isNaN) ? undefined : groups;
}
