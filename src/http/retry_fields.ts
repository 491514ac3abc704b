/**
 * The multi-round-trip fields of a 2026-07-28 request (`inputResponses`, `requestState`), checked
 * on the wire. The SDK lifts them out of the params before any handler runs and reads a value of
 * the wrong type as "no answers", so a malformed one would be acknowledged as if it were empty;
 * here it is refused (-32602) naming the field, over HTTP (`http_app.ts`) and stdio alike.
 */
import type { JSONRPCMessage, Transport } from "@modelcontextprotocol/server";

const INVALID_PARAMS = -32602;

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return `a ${typeof value}`;
}

/** What is wrong with a request's retry fields, `undefined` when nothing (or not a request). */
export function retryFieldsProblem(message: unknown): string | undefined {
  if (!message || typeof message !== "object") return undefined;
  const { method, id, params } = message as { method?: unknown; id?: unknown; params?: unknown };
  if (typeof method !== "string" || id === undefined || !params || typeof params !== "object") {
    return undefined;
  }
  const { inputResponses, requestState } = params as Record<string, unknown>;
  if (
    inputResponses !== undefined &&
    (inputResponses === null || typeof inputResponses !== "object" || Array.isArray(inputResponses))
  ) {
    return `Invalid params of ${method}: "inputResponses" must be an object of answers by the keys of inputRequests, received ${
      describe(inputResponses)
    }`;
  }
  if (requestState !== undefined && typeof requestState !== "string") {
    return `Invalid params of ${method}: "requestState" must be the string the server sent, received ${
      describe(requestState)
    }`;
  }
  return undefined;
}

/** The JSON-RPC error answering `message` for `problem`. */
export function retryFieldsError(message: unknown, problem: string): JSONRPCMessage {
  const id = (message as { id: string | number }).id;
  return { jsonrpc: "2.0", id, error: { code: INVALID_PARAMS, message: problem } };
}

/** `transport`, answering a request with malformed retry fields itself instead of passing it on. */
export function refusingMalformedRetries(transport: Transport): Transport {
  let onmessage: Transport["onmessage"];
  Object.defineProperty(transport, "onmessage", {
    get: () =>
      onmessage &&
      ((message: JSONRPCMessage, extra?: unknown) => {
        const problem = retryFieldsProblem(message);
        if (problem === undefined) return onmessage?.(message, extra as never);
        transport.send(retryFieldsError(message, problem)).catch(() => {});
      }),
    set: (handler: Transport["onmessage"]) => (onmessage = handler),
    configurable: true,
  });
  return transport;
}
