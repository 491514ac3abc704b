/** The CLI's MCP connection to a running Klym (Streamable HTTP at `<url>/mcp`). */
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { VERSION } from "../version.ts";
import { KlymError } from "../errors.ts";

export const DEFAULT_URL = "http://127.0.0.1:8765";

export interface KlymClient extends AsyncDisposable {
  call<T = Record<string, unknown>>(tool: string, args: Record<string, unknown>): Promise<T>;
  /** A JSON route of Klym's beside `/mcp` (such as `/usage`), with the same token. */
  get<T = Record<string, unknown>>(path: string): Promise<T>;
}

/** `http://host:port` from `--url`/`KLYM_URL`, with or without a trailing `/mcp`. */
export function serverUrl(given: string | undefined): URL {
  const text = given || DEFAULT_URL;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new KlymError(
      "CLI_FAILED",
      `Invalid server URL "${text}" (--url or KLYM_URL); use e.g. ${DEFAULT_URL}`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new KlymError(
      "CLI_FAILED",
      `Invalid server URL "${text}" (--url or KLYM_URL): use http:// or https://`,
    );
  }
  url.pathname = url.pathname.replace(/\/+$/, "").replace(/\/mcp$/, "") + "/mcp";
  return url;
}

function describe(error: unknown, url: URL): string {
  // fetch failures keep the reason (connection refused, DNS) in their `cause` chain.
  const parts: string[] = [];
  for (let e: unknown = error; e !== undefined && parts.length < 5;) {
    parts.push(e instanceof Error ? e.message : String(e));
    e = e instanceof Error ? e.cause : undefined;
  }
  const message = parts.join(": ");
  if (/\b401\b|Unauthorized/i.test(message)) {
    return `Klym at ${url.origin} refused the request: set KLYM_AUTH_TOKEN to the server's token`;
  }
  if (
    /connection refused|ECONNREFUSED|os error 111|error sending request|tcp connect/i.test(message)
  ) {
    return `Cannot reach Klym at ${url.origin}: connection refused; is it running? (set --url or KLYM_URL)`;
  }
  return `Cannot talk to Klym at ${url.origin}: ${message}`;
}

export async function connectKlym(url: URL, token: string | undefined): Promise<KlymClient> {
  const client = new Client({ name: "klym-cli", version: VERSION });
  const transport = new StreamableHTTPClientTransport(url, {
    requestInit: { headers: token ? { authorization: `Bearer ${token}` } : {} },
  });
  try {
    await client.connect(transport);
  } catch (error) {
    await client.close().catch(() => {});
    throw new KlymError("CLI_FAILED", describe(error, url));
  }
  return {
    async call<T>(tool: string, args: Record<string, unknown>): Promise<T> {
      let result;
      try {
        result = await client.callTool({ name: tool, arguments: args });
      } catch (error) {
        throw new KlymError("CLI_FAILED", describe(error, url));
      }
      if (result.isError) {
        const text = (result.content as { type: string; text?: string }[])
          .map((c) => c.text ?? "").join("\n");
        throw new KlymError("CLI_FAILED", text || `${tool} failed`);
      }
      return result.structuredContent as T;
    },
    async get<T>(path: string): Promise<T> {
      const target = new URL(path, url);
      let response: Response;
      try {
        response = await fetch(target, {
          headers: token ? { authorization: `Bearer ${token}` } : {},
        });
      } catch (error) {
        throw new KlymError("CLI_FAILED", describe(error, url));
      }
      const body = await response.json().catch(() => undefined) as
        | { error?: unknown }
        | undefined;
      if (!response.ok) {
        const why = typeof body?.error === "string"
          ? body.error
          : (body?.error as { message?: string } | undefined)?.message;
        throw new KlymError(
          "CLI_FAILED",
          `Klym answered ${response.status} to ${target.pathname}: ${why ?? "no reason given"}`,
        );
      }
      return body as T;
    },
    async [Symbol.asyncDispose]() {
      await client.close().catch(() => {});
    },
  };
}
