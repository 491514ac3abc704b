/**
 * The server panel's nodes when the store is shared by several nodes (`KLYM_STATE=postgres://…`):
 * each node's id and URL, whether it is alive, how long ago it renewed its lease, its slots and the
 * tasks running on it. The store is read at most once per `NODES_READ_CACHE_MS` whatever the
 * number of open dashboards, and a read that takes longer than `NODES_READ_TIMEOUT_MS` leaves the
 * last list shown with the reason. The running counts are the viewer's own tasks (an admin's,
 * every task's), like the panel's other counts: a node's row never tells one principal how much
 * another runs.
 */
import type { NodeInfo } from "../journal/journal.ts";
import { scopeOf, type Viewer } from "../principals.ts";
import type { TaskRegistry } from "../tasks/task_registry.ts";
import { NODES_READ_CACHE_MS, NODES_READ_TIMEOUT_MS } from "./ui_limits.ts";

/** One node as the panel shows it. */
export interface NodeFigures {
  readonly id: string;
  /** Where other nodes reach it (`KLYM_NODE_URL`), `null` when it gave none. */
  readonly url: string | null;
  /**
   * `alive`: it renewed its lease within `KLYM_NODE_LEASE_MS`; `late`: it did not, and is not
   * declared lost yet (the next renewal of another node does that); `lost`: its tasks were settled.
   */
  readonly status: "alive" | "late" | "lost";
  /** Since its last lease renewal, by the store's clock. */
  readonly renewed_ago_ms: number;
  /** Tasks it runs at once (its `KLYM_MAX_CONCURRENT`). */
  readonly slots: number;
  /** Tasks running on it: the viewer's own (an admin's: every principal's). */
  readonly running: number;
  /** The node answering this request. */
  readonly self: boolean;
}

export interface NodesView {
  readonly nodes: NodeFigures[];
  /** When the store last answered (ISO 8601), `null` before it ever did. */
  readonly checked_at: string | null;
  /** Why the last read failed; `nodes` are then those of the last read that answered. */
  readonly error?: string;
}

export interface NodePanelParts {
  /** The shared store: this node's id and the lease rows. */
  readonly journal: { readonly node: string | undefined; nodes(): Promise<NodeInfo[]> };
  readonly registry: Pick<TaskRegistry, "list">;
}

export interface NodePanelOptions {
  /** `KLYM_NODE_LEASE_MS`: a node silent longer is late. */
  readonly leaseMs: number;
  readonly cacheMs?: number;
  readonly timeoutMs?: number;
  readonly now?: () => number;
}

export class NodePanel {
  readonly #parts: NodePanelParts;
  readonly #leaseMs: number;
  readonly #cacheMs: number;
  readonly #timeoutMs: number;
  readonly #now: () => number;
  /** The read in flight or last made, shared by every viewer asking meanwhile. */
  #read: { at: number; done: Promise<void> } | undefined;
  #nodes: NodeInfo[] = [];
  #answeredAt: number | undefined;
  #error: string | undefined;

  constructor(parts: NodePanelParts, options: NodePanelOptions) {
    this.#parts = parts;
    this.#leaseMs = options.leaseMs;
    this.#cacheMs = options.cacheMs ?? NODES_READ_CACHE_MS;
    this.#timeoutMs = options.timeoutMs ?? NODES_READ_TIMEOUT_MS;
    this.#now = options.now ?? Date.now;
  }

  /** The nodes as `viewer` may see them. */
  async read(viewer: Viewer): Promise<NodesView> {
    const now = this.#now();
    if (!this.#read || now - this.#read.at >= this.#cacheMs) {
      this.#read = { at: now, done: this.#fetch(now) };
    }
    await this.#read.done;
    const running = new Map<string, number>();
    for (const task of this.#parts.registry.list("running", Infinity, scopeOf(viewer))) {
      if (task.node !== undefined) running.set(task.node, (running.get(task.node) ?? 0) + 1);
    }
    // The ages were the store's when it answered; they have grown since.
    const since = this.#answeredAt === undefined ? 0 : Math.max(0, this.#now() - this.#answeredAt);
    return {
      nodes: this.#nodes.map((node) => {
        const ago = Math.round(node.renewedAgoMs + since);
        return {
          id: node.id,
          url: node.url ?? null,
          status: !node.alive ? "lost" : ago > this.#leaseMs ? "late" : "alive",
          renewed_ago_ms: ago,
          slots: node.slots,
          running: running.get(node.id) ?? 0,
          self: node.id === this.#parts.journal.node,
        };
      }),
      checked_at: this.#answeredAt === undefined ? null : new Date(this.#answeredAt).toISOString(),
      ...(this.#error === undefined ? {} : { error: this.#error }),
    };
  }

  async #fetch(at: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), this.#timeoutMs);
    });
    const reading = this.#parts.journal.nodes();
    try {
      const nodes = await Promise.race([reading, timeout]);
      if (nodes === "timeout") {
        reading.catch(() => {});
        this.#error =
          `The shared store did not list its nodes within ${this.#timeoutMs} ms; shown as last read`;
        return;
      }
      this.#nodes = nodes;
      this.#answeredAt = at;
      this.#error = undefined;
    } catch {
      // Its own words may name the database's address: /healthz and the log have them.
      this.#error = "The shared store did not answer when asked for its nodes; shown as last read";
    } finally {
      clearTimeout(timer);
    }
  }
}
