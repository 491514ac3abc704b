/**
 * Who is calling: each configured bearer token is one principal, and tasks belong to the principal
 * that started them. `KLYM_AUTH_TOKENS=alice:<token>,bob:<token>` names several; the single
 * `KLYM_AUTH_TOKEN` is the principal `default`; with no token at all (loopback only) every client
 * is the one principal `local`, as is the stdio client. `KLYM_ADMINS` names the operators who see and
 * may cancel every principal's tasks.
 */
import type { Config } from "./config.ts";

export const LOCAL_PRINCIPAL = "local";
export const DEFAULT_PRINCIPAL = "default";

/** Compares two secrets in time that does not depend on where they differ. */
export function sameSecret(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/** Who asks: a principal, and whether it is an admin who sees every principal's tasks. */
export interface Viewer {
  readonly principal: string;
  readonly admin: boolean;
}

/** The viewer `principal` is under `config` (an admin when `KLYM_ADMINS` names it). */
export function viewerOf(config: Partial<Pick<Config, "admins">>, principal: string): Viewer {
  return { principal, admin: config.admins?.includes(principal) ?? false };
}

/** The registry's owner filter for `viewer`: none for an admin (every task), else its own. */
export function scopeOf(viewer: Viewer): string | undefined {
  return viewer.admin ? undefined : viewer.principal;
}

export class Principals {
  readonly #tokens: { name: string; token: string }[];

  constructor(
    readonly config: Pick<Config, "authToken" | "authTokens"> & Partial<Pick<Config, "admins">>,
  ) {
    this.#tokens = [
      ...(config.authToken ? [{ name: DEFAULT_PRINCIPAL, token: config.authToken }] : []),
      ...config.authTokens,
    ];
  }

  viewer(principal: string): Viewer {
    return viewerOf(this.config, principal);
  }

  /** Whether clients must send a bearer token. */
  get required(): boolean {
    return this.#tokens.length > 0;
  }

  /** The principal a token belongs to, `undefined` for an unknown one; every token is compared. */
  ofToken(given: string): string | undefined {
    if (!this.required) return LOCAL_PRINCIPAL;
    let found: string | undefined;
    for (const { name, token } of this.#tokens) {
      if (sameSecret(given, token)) found = name;
    }
    return found;
  }

  /** The principal of an HTTP request's `Authorization: Bearer …`, `undefined` when refused. */
  ofRequest(req: Request): string | undefined {
    if (!this.required) return LOCAL_PRINCIPAL;
    const header = req.headers.get("authorization") ?? "";
    return header.startsWith("Bearer ") ? this.ofToken(header.slice(7)) : undefined;
  }
}
