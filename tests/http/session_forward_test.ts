/** A 2025 session of another node: forwarded to the URL that node registered, or 404 when it is gone. */
import assert from "node:assert/strict";
import { FORWARDED_HEADER, SessionForwarder } from "../../src/http/session_forward.ts";

const gone = () => new Response("gone", { status: 404 });

/** A node on loopback that records what reaches it; `stall` holds its answer back. */
function otherNode(stall?: Promise<void>) {
  const seen: { url: string; auth: string | null; by: string | null; body: string }[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    seen.push({
      url: req.url,
      auth: req.headers.get("authorization"),
      by: req.headers.get(FORWARDED_HEADER),
      body: await req.text(),
    });
    await stall;
    return Response.json({ answered: "b" }, { headers: { "mcp-session-id": "b.1" } });
  });
  return { seen, url: `http://127.0.0.1:${server.addr.port}`, server };
}

function forwarder(urls: Record<string, string | undefined>, answerMs = 5000) {
  return new SessionForwarder({
    node: "a",
    answerMs,
    urlOf: (id) => {
      if (id === "broken") return Promise.reject(new Error("connection refused"));
      return Promise.resolve(urls[id]);
    },
  });
}

const request = (headers: Record<string, string> = {}) =>
  new Request("http://127.0.0.1:1/mcp?x=1", {
    method: "POST",
    headers: { authorization: "Bearer alice-token", ...headers },
    body: "{}",
  });

Deno.test("a request for another node's session reaches that node's registered URL with its token", async () => {
  const b = otherNode();
  try {
    const forward = forwarder({ b: b.url });
    const id = forward.newId();
    assert.match(id, /^a\.[0-9a-f-]{36}$/);
    assert.equal(forward.otherNode(id), undefined, "this node's own session");
    const req = request();
    const answer = await forward.forward(req, new URL(req.url), "b.1", { jsonrpc: "2.0" }, gone);
    assert.equal(answer?.status, 200);
    assert.deepEqual(await answer!.json(), { answered: "b" });
    assert.equal(answer!.headers.get("mcp-session-id"), "b.1");
    assert.deepEqual(b.seen, [{
      url: `${b.url}/mcp?x=1`,
      auth: "Bearer alice-token",
      by: "a",
      body: '{"jsonrpc":"2.0"}',
    }]);
  } finally {
    await b.server.shutdown();
  }
});

Deno.test("a session of a node that is gone, unknown or unreachable is 404; a store that does not answer is 503", async () => {
  const forward = forwarder({ b: undefined });
  const req = request();
  const url = new URL(req.url);
  assert.equal((await forward.forward(req, url, "b.1", undefined, gone))?.status, 404);
  assert.equal((await forward.forward(req, url, "c.1", undefined, gone))?.status, 404);
  const broken = await forward.forward(req, url, "broken.1", undefined, gone);
  assert.equal(broken?.status, 503);
  assert.match(await broken!.text(), /lives on node \\"broken\\", which cannot be looked up now/);
  // A registered node that refuses connections is gone too.
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (closed.addr as Deno.NetAddr).port;
  closed.close();
  const refused = forwarder({ b: `http://127.0.0.1:${port}` });
  assert.equal((await refused.forward(req, url, "b.1", undefined, gone))?.status, 404);
});

Deno.test("a node that gives no headers within KLYM_NODE_LEASE_MS is gone", async () => {
  const release = Promise.withResolvers<void>();
  const b = otherNode(release.promise);
  try {
    const req = request();
    const answer = await forwarder({ b: b.url }, 200).forward(
      req,
      new URL(req.url),
      "b.1",
      undefined,
      gone,
    );
    assert.equal(answer?.status, 404);
    assert.equal(b.seen.length, 1, "it was asked");
  } finally {
    release.resolve();
    await b.server.shutdown();
  }
});

Deno.test("a forwarded request, or this node's own session, is answered here", async () => {
  const forward = forwarder({ b: "http://127.0.0.1:1" });
  const req = request({ [FORWARDED_HEADER]: "c" });
  const url = new URL(req.url);
  assert.equal(await forward.forward(req, url, "b.1", undefined, gone), undefined);
  assert.equal(await forward.forward(request(), url, "a.1", undefined, gone), undefined);
  assert.equal(forward.otherNode("no-dot"), undefined);
  assert.equal(forward.otherNode("node.x.uuid"), "node.x", "a node id may hold dots");
});
