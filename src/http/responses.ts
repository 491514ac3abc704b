/**
 * JSON-RPC answers over HTTP: the error bodies Klym writes, the request's id put on the SDK's error
 * answers, and a hook for when an answer's body has been sent.
 */

/** A JSON-RPC request id; `null` when unknown (a notification, or a body that is not JSON-RPC). */
export type Id = string | number | null;

export function jsonRpcError(
  status: number,
  message: string,
  code = -32000,
  id: Id = null,
): Response {
  return Response.json({ jsonrpc: "2.0", error: { code, message }, id }, { status });
}

/** The id of a JSON-RPC request body, `null` when it has none (a notification, or not JSON-RPC). */
export function requestId(body: unknown): Id {
  const id = (body as { id?: unknown } | null)?.id;
  return typeof id === "string" || typeof id === "number" ? id : null;
}

/** An error answer the SDK wrote with `"id": null` gets the request's id, when it is known. */
export async function withId(response: Response, id: Id): Promise<Response> {
  if (id === null || response.status < 400) return response;
  if (!response.headers.get("content-type")?.includes("application/json")) return response;
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body && typeof body === "object" && body.error && body.id === null) {
      return new Response(JSON.stringify({ ...body, id }), {
        status: response.status,
        headers: response.headers,
      });
    }
  } catch {
    // Not JSON after all: passed on as it was.
  }
  return new Response(text, { status: response.status, headers: response.headers });
}

/** `response`, calling `done` once when its body has been sent or abandoned. */
export function untilSent(response: Response, done: () => void): Response {
  let called = false;
  const once = () => {
    if (!called) (called = true, done());
  };
  if (!response.body) {
    once();
    return response;
  }
  const reader = response.body.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          once();
          controller.close();
        } else controller.enqueue(value);
      } catch (error) {
        once();
        controller.error(error);
      }
    },
    cancel(reason) {
      once();
      return reader.cancel(reason);
    },
  });
  return new Response(body, { status: response.status, headers: response.headers });
}
