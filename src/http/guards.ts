/**
 * What a request passes before any MCP work: the Host and Origin headers against DNS rebinding, the
 * bearer token (failed checks throttled per client address: `auth_throttle.ts`), and the body cap,
 * checked before parsing. Each answers with the refusal as a `Response`, or lets the request by.
 */
import {
  localhostAllowedHostnames,
  localhostAllowedOrigins,
  readRequestBody,
  validateHostHeader,
  validateOriginHeader,
} from "@modelcontextprotocol/server";
import { type Config, isLoopback } from "../config.ts";
import type { Principals } from "../principals.ts";
import type { AuthThrottle } from "./auth_throttle.ts";
import { jsonRpcError } from "./responses.ts";

/** DNS-rebinding protection: the Host names and Origins a request may carry. */
export class HostOriginGuard {
  /** `undefined`: any Host (a wildcard bind with no list; the bearer token guards it). */
  readonly #allowedHosts: string[] | undefined;
  readonly #allowedOrigins: string[];

  constructor(config: Pick<Config, "host" | "allowedOrigins" | "allowedHosts">) {
    const { host, allowedOrigins, allowedHosts } = config;
    const wildcard = host === "0.0.0.0" || host === "::";
    this.#allowedHosts = wildcard && allowedHosts.length === 0 ? undefined : [
      ...localhostAllowedHostnames(),
      ...(isLoopback(host) || wildcard ? [] : [host]),
      ...allowedHosts,
    ];
    this.#allowedOrigins = [...localhostAllowedOrigins(), ...allowedOrigins];
  }

  /** The 403 refusing `req`, `undefined` to let it through. */
  refusal(req: Request): Response | undefined {
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
}

/** The bearer check: who a request's token names, its failures spending the client's tokens. */
export class BearerGuard {
  readonly #principals: Principals;
  readonly #throttle: AuthThrottle;

  constructor(principals: Principals, throttle: AuthThrottle) {
    this.#principals = principals;
    this.#throttle = throttle;
  }

  /**
   * The principal of the request's bearer token, or the answer refusing it: 401, or 429 while
   * `client` is throttled for failed checks (then the token is not even looked at).
   */
  principalOf(req: Request, client: string): string | Response {
    if (!this.#principals.required || !req.headers.has("authorization")) {
      return this.#principals.ofRequest(req) ?? unauthorized();
    }
    const attempt = this.#throttle.attempt(client, () => this.#principals.ofRequest(req));
    if (attempt.outcome === "passed") return attempt.value;
    if (attempt.outcome === "failed") return unauthorized();
    const response = jsonRpcError(
      429,
      attempt.bucket === "address"
        ? `Too many failed authentications from this address (KLYM_AUTH_FAILURES_BURST, KLYM_AUTH_FAILURES_PER_MIN): retry in ${attempt.retryAfterS} s`
        : `Too many failed authentications from all addresses (KLYM_AUTH_FAILURES_ALL_PER_MIN), this one among them: retry in ${attempt.retryAfterS} s`,
    );
    response.headers.set("retry-after", String(attempt.retryAfterS));
    return response;
  }
}

function unauthorized(): Response {
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

/**
 * Reads a JSON body within `maxBytes` (`KLYM_MAX_REQUEST_BODY_BYTES`): the parsed value, or the
 * `Response` refusing it (413 over the cap, 400 for a body that is not JSON, or a batch).
 */
export async function readJsonBody(
  req: Request,
  maxBytes: number,
): Promise<{ body: unknown } | Response> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > maxBytes) {
    await req.body?.cancel();
    return jsonRpcError(
      413,
      `Request body of ${declared} bytes exceeds ${maxBytes} (KLYM_MAX_REQUEST_BODY_BYTES)`,
    );
  }
  const read = await readRequestBody(req, maxBytes);
  if (read.tooLarge) {
    return jsonRpcError(
      413,
      `Request body exceeds ${maxBytes} bytes (KLYM_MAX_REQUEST_BODY_BYTES)`,
    );
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
