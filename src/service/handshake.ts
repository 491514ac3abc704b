/**
 * The first line each side of a bridge connection writes, before the MCP stdio session that follows
 * on the same stream (newline-delimited JSON-RPC, exactly as over a process's stdin and stdout).
 * The service speaks first, saying who it is; the bridge answers with its own line. Both name
 * `BRIDGE_PROTOCOL`: the framing between them, not Klym's version, so a bridge of one Klym version
 * uses a service of another whenever their protocols match (MCP itself is negotiated end to end).
 */
import { z } from "zod";
import { VERSION } from "../version.ts";
import { KlymError } from "../errors.ts";

export const BRIDGE_PROTOCOL = 1;
/** One hello line, newline included; a longer one is refused. */
export const HELLO_MAX_BYTES = 4096;
/** How long either side waits for the other's hello. */
export const HELLO_TIMEOUT_MS = 10_000;

export const ServiceHello = z.object({
  klym: z.literal("service"),
  protocol: z.number().int(),
  version: z.string().max(100),
  pid: z.number().int(),
  /** The service's HTTP address (dashboard, CLI), when it serves HTTP. */
  url: z.string().max(500).nullable(),
});
export type ServiceHello = z.infer<typeof ServiceHello>;

export const BridgeHello = z.object({
  klym: z.literal("bridge"),
  protocol: z.number().int(),
  version: z.string().max(100),
  pid: z.number().int(),
});
export type BridgeHello = z.infer<typeof BridgeHello>;

export function helloLine(hello: ServiceHello | BridgeHello): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(hello) + "\n");
}

/** This process's hello line: a bridge's, or a service's with its HTTP address. */
export function ownHelloLine(side: { klym: "bridge" } | { klym: "service"; url: string | null }) {
  return helloLine({ ...side, protocol: BRIDGE_PROTOCOL, version: VERSION, pid: Deno.pid });
}

/**
 * Reads one hello line from `stream` and checks it against `schema`; resolves to the hello and the
 * rest of the stream (what came after the line first). Throws `HANDSHAKE_FAILED` when the stream
 * ends, the line is too long or malformed, or nothing arrives within `timeoutMs`.
 */
export async function readHello<T>(
  stream: ReadableStream<Uint8Array>,
  schema: z.ZodType<T>,
  timeoutMs = HELLO_TIMEOUT_MS,
): Promise<{ hello: T; rest: ReadableStream<Uint8Array> }> {
  const reader = stream.getReader();
  let buffered = new Uint8Array(0);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new KlymError("HANDSHAKE_FAILED", `no hello line within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    while (true) {
      const newline = buffered.indexOf(10);
      if (newline !== -1) {
        const text = new TextDecoder().decode(buffered.subarray(0, newline));
        const leftover = buffered.slice(newline + 1);
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          throw new KlymError(
            "HANDSHAKE_FAILED",
            `the hello line is not JSON: ${JSON.stringify(text.slice(0, 80))}`,
          );
        }
        const parsed = schema.safeParse(json);
        if (!parsed.success) {
          throw new KlymError(
            "HANDSHAKE_FAILED",
            `the hello line is not a Klym hello: ${text.slice(0, 200)}`,
          );
        }
        return { hello: parsed.data, rest: restOf(reader, leftover) };
      }
      if (buffered.length >= HELLO_MAX_BYTES) {
        throw new KlymError(
          "HANDSHAKE_FAILED",
          `the hello line is longer than ${HELLO_MAX_BYTES} bytes`,
        );
      }
      const read = await Promise.race([reader.read(), timeout]);
      if (read.done) {
        throw new KlymError("HANDSHAKE_FAILED", "the connection ended before its hello line");
      }
      const next = new Uint8Array(buffered.length + read.value.length);
      next.set(buffered);
      next.set(read.value, buffered.length);
      buffered = next;
    }
  } catch (error) {
    reader.cancel().catch(() => {});
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** The bytes left after the hello, then everything `reader` still gives. */
function restOf(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  leftover: Uint8Array,
): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      if (leftover.length > 0) controller.enqueue(leftover);
    },
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (error) {
        controller.error(error);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}
