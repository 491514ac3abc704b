/**
 * 2025 sessions across nodes sharing a store. A session lives on the node that opened it; its id
 * starts with that node's id (`<node>.<uuid>`), so any node knows whose it is. A request for
 * another node's session is sent on to that node, at the URL it registered (`KLYM_NODE_URL`, read
 * from the store's node table: never a URL a client names), with its bearer token, which the
 * owning node checks again. A session of a node that is lost, unknown, or has no URL is answered
 * 404, which makes a client open a new session. A forwarded request is never forwarded again.
 */
import { getLogger } from "@logtape/logtape";
import { jsonRpcError } from "./responses.ts";
import { linkedAbort } from "../abort.ts";

const logger = getLogger(["klym", "http"]);

/** Marks a request one node sent to another; the receiving node answers it itself. */
export const FORWARDED_HEADER = "x-klym-forwarded-by";

/** Request headers not sent on: hop-by-hop ones, and those the new request sets itself. */
const DROPPED = ["host", "content-length", "connection", "keep-alive", "transfer-encoding"];
/** Response headers not sent back: the body is streamed again, as it came. */
const DROPPED_BACK = ["content-length", "content-encoding", "transfer-encoding", "connection"];

export interface SessionCluster {
  /** This node's id: its sessions' prefix. */
  readonly node: string;
  /** Where the live node `id` is reached; `undefined` when it is lost, unknown or has no URL. */
  urlOf(id: string): Promise<string | undefined>;
  /** How long the owning node may take to answer with headers (KLYM_NODE_LEASE_MS). */
  readonly answerMs: number;
}

export class SessionForwarder {
  constructor(readonly cluster: SessionCluster) {}

  /** A new session id of this node. */
  newId(): string {
    return `${this.cluster.node}.${crypto.randomUUID()}`;
  }

  /** The node a session id belongs to when it is another node's, else `undefined`. */
  otherNode(sessionId: string): string | undefined {
    const dot = sessionId.lastIndexOf(".");
    if (dot <= 0) return undefined;
    const node = sessionId.slice(0, dot);
    return node === this.cluster.node ? undefined : node;
  }

  /**
   * Sends `req` (its body already read: `body`) to the node owning `sessionId`, and streams its
   * answer back; `undefined` when the session is not another node's or the request was forwarded
   * already (the caller answers it), a 404 when that node is gone.
   */
  async forward(
    req: Request,
    url: URL,
    sessionId: string,
    body: unknown,
    gone: () => Response,
  ): Promise<Response | undefined> {
    const node = this.otherNode(sessionId);
    if (node === undefined || req.headers.has(FORWARDED_HEADER)) return undefined;
    let base: string | undefined;
    try {
      base = await this.cluster.urlOf(node);
    } catch (error) {
      logger.warn("Cannot look up node {node} for session {sessionId}: {error}", {
        node,
        sessionId,
        error: (error as Error).message,
      });
      return jsonRpcError(
        503,
        `Session ${sessionId} lives on node "${node}", which cannot be looked up now (the shared store does not answer); retry shortly`,
      );
    }
    if (base === undefined) return gone();
    const target = new URL(url.pathname + url.search, base.endsWith("/") ? base : `${base}/`);
    const headers = new Headers(req.headers);
    for (const name of DROPPED) headers.delete(name);
    headers.set(FORWARDED_HEADER, this.cluster.node);
    // Bounds the wait for headers only; once the answer streams, a client that goes cancels it.
    const waiting = linkedAbort([req.signal], this.cluster.answerMs);
    try {
      const upstream = await fetch(target, {
        method: req.method,
        headers,
        body: body === undefined ? null : JSON.stringify(body),
        signal: waiting.signal,
        redirect: "manual",
      });
      const back = new Headers(upstream.headers);
      for (const name of DROPPED_BACK) back.delete(name);
      return new Response(upstream.body, { status: upstream.status, headers: back });
    } catch (error) {
      logger.info("Node {node} did not answer for session {sessionId}: {error}", {
        node,
        sessionId,
        error: (error as Error).message,
      });
      return gone();
    } finally {
      waiting[Symbol.dispose]();
    }
  }
}
