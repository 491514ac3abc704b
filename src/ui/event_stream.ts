/**
 * The dashboard's one live channel, `/ui/events` (server-sent events). Registry changes are
 * coalesced per stream and sent at most every `UI_STREAM_INTERVAL_MS` as one `change` message
 * naming the tasks that changed and each task's newest log line; the page then reads what it shows.
 * A `server` message carries the server panel's figures every `UI_SERVER_STATS_MS`. Each stream
 * has a viewer: its messages name only that principal's tasks (an admin's, every task) and its
 * figures are the viewer's own.
 *
 * Bounded, as fair shares: one principal holds at most `maxPerPrincipal` streams
 * (`KLYM_UI_MAX_STREAMS`; one more gets 503), and at `maxTotal` (`KLYM_UI_MAX_STREAMS_TOTAL`) the
 * principal holding the most gives way: its oldest stream is closed, or, when that is the asking
 * principal, the new one is refused. A stream whose client reads slowly gets nothing new queued
 * while `UI_STREAM_BUFFER_BYTES` are waiting (changes keep coalescing into one message), and is
 * closed after `UI_STREAM_STALL_MS` of that.
 */
import { getLogger } from "@logtape/logtape";
import type { TaskChange, TaskEvents } from "../tasks/task_events.ts";
import { scopeOf, type Viewer } from "../principals.ts";
import { heldBy, whoGivesWay } from "./fair_share.ts";
import {
  UI_KEEPALIVE_MS,
  UI_MAX_IDS_PER_MESSAGE,
  UI_SERVER_STATS_MS,
  UI_STREAM_BUFFER_BYTES,
  UI_STREAM_INTERVAL_MS,
  UI_STREAM_STALL_MS,
} from "./ui_limits.ts";

const logger = getLogger(["klym", "ui"]);
const encoder = new TextEncoder();

/** What the streams tell of: task changes, each task's owner, and the viewer's figures. */
export interface StreamSource {
  readonly events: TaskEvents;
  /** The principal owning a task, `undefined` for one not (or no longer) known. */
  ownerOf(id: string): string | undefined;
  /** The server panel's figures as `viewer` may see them. */
  stats(viewer: Viewer): Promise<unknown>;
}

export interface EventStreamOptions {
  /** Open streams one principal may hold (`KLYM_UI_MAX_STREAMS`). */
  maxPerPrincipal: number;
  /** Open streams of all principals (`KLYM_UI_MAX_STREAMS_TOTAL`). */
  maxTotal: number;
  intervalMs?: number;
  statsMs?: number;
  bufferBytes?: number;
  stallMs?: number;
}

export class EventStreams {
  /** Each open stream's closer → its principal; insertion order is age order. */
  readonly #open = new Map<() => void, string>();
  readonly maxPerPrincipal: number;
  readonly maxTotal: number;
  readonly intervalMs: number;
  readonly statsMs: number;
  readonly bufferBytes: number;
  readonly stallMs: number;

  constructor(readonly source: StreamSource, options: EventStreamOptions) {
    this.maxPerPrincipal = options.maxPerPrincipal;
    this.maxTotal = options.maxTotal;
    this.intervalMs = options.intervalMs ?? UI_STREAM_INTERVAL_MS;
    this.statsMs = options.statsMs ?? UI_SERVER_STATS_MS;
    this.bufferBytes = options.bufferBytes ?? UI_STREAM_BUFFER_BYTES;
    this.stallMs = options.stallMs ?? UI_STREAM_STALL_MS;
  }

  get size(): number {
    return this.#open.size;
  }

  /** Open streams `principal` holds. */
  countOf(principal: string): number {
    return heldBy(this.#open.values(), principal);
  }

  /**
   * A `text/event-stream` response for `viewer`, or 503 when the viewer holds its share; at the
   * total cap the oldest stream of a principal holding more gives way.
   */
  open(headers: HeadersInit, viewer: Viewer): Response {
    const principal = viewer.principal;
    const held = this.countOf(principal);
    const refuse = (error: string) =>
      Response.json(
        { error },
        { status: 503, headers: { ...headers as Record<string, string>, "retry-after": "5" } },
      );
    if (held >= this.maxPerPrincipal) {
      return refuse(
        `Cannot open a dashboard stream: principal "${principal}" has ${held} open, the limit is ${this.maxPerPrincipal} (KLYM_UI_MAX_STREAMS); close other dashboard tabs`,
      );
    }
    if (this.#open.size >= this.maxTotal) {
      const gives = whoGivesWay([...this.#open.values(), principal], principal);
      if (gives === principal) {
        return refuse(
          `Cannot open a dashboard stream: ${this.#open.size} are open in all, the limit is ${this.maxTotal} (KLYM_UI_MAX_STREAMS_TOTAL), and principal "${principal}" holds ${held} of them, no fewer than any other principal; close other dashboard tabs`,
        );
      }
      for (const [close, holder] of this.#open) {
        if (holder !== gives) continue;
        logger.info("Closing the oldest dashboard stream of {principal} to make room", {
          principal: gives,
        });
        close();
        break;
      }
    }
    const scope = scopeOf(viewer);
    const mine = (id: string) => scope === undefined || this.source.ownerOf(id) === scope;
    let tasks = new Set<string>();
    let allTasks = false;
    let logs = new Map<string, number>();
    let dirty = false;
    let slowSince: number | undefined;
    let lastStats = 0;
    let lastWrite = Date.now();
    let statsPending = false;
    let closed = false;
    let unsubscribe = () => {};
    let timer: ReturnType<typeof setInterval> | undefined;
    let controller!: ReadableStreamDefaultController<Uint8Array>;

    const close = () => {
      if (closed) return;
      closed = true;
      unsubscribe();
      clearInterval(timer);
      this.#open.delete(close);
      try {
        controller.close();
      } catch {
        // Already closed or errored by the client going away.
      }
    };
    const send = (event: string, data: unknown) => {
      controller.enqueue(encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
      lastWrite = Date.now();
    };
    const tick = () => {
      if (closed) return;
      try {
        flush();
      } catch (error) {
        // The client went away between two ticks: the stream can take no more.
        logger.debug("Dashboard stream ended: {error}", { error });
        close();
      }
    };
    const flush = () => {
      const now = Date.now();
      if ((controller.desiredSize ?? 0) <= 0) {
        slowSince ??= now;
        if (now - slowSince > this.stallMs) {
          logger.info("Closing a dashboard stream whose client stopped reading");
          close();
        }
        return;
      }
      slowSince = undefined;
      if (dirty) {
        send("change", { tasks: allTasks ? "all" : [...tasks], logs: Object.fromEntries(logs) });
        tasks = new Set();
        allTasks = false;
        logs = new Map();
        dirty = false;
      }
      if (!statsPending && now - lastStats >= this.statsMs) {
        statsPending = true;
        lastStats = now;
        this.source.stats(viewer).then(
          (figures) => {
            if (closed || (controller.desiredSize ?? 0) <= 0) return;
            try {
              send("server", figures);
            } catch {
              close();
            }
          },
          (error) => logger.warn("Server figures failed: {error}", { error }),
        ).finally(() => statsPending = false);
      }
      if (now - lastWrite >= UI_KEEPALIVE_MS) {
        controller.enqueue(encoder.encode(": keepalive\n\n"));
        lastWrite = now;
      }
    };
    const onChange = (change: TaskChange) => {
      if (!mine(change.id)) return;
      dirty = true;
      if (change.type === "log") {
        if (logs.has(change.id) || logs.size < UI_MAX_IDS_PER_MESSAGE) {
          logs.set(change.id, change.seq);
        } else allTasks = true;
      } else if (!allTasks) {
        tasks.add(change.id);
        if (tasks.size > UI_MAX_IDS_PER_MESSAGE) {
          allTasks = true;
          tasks = new Set();
        }
      }
    };

    const body = new ReadableStream<Uint8Array>({
      start: (c) => {
        controller = c;
        this.#open.set(close, principal);
        unsubscribe = this.source.events.subscribe(onChange);
        send("hello", { interval_ms: this.intervalMs });
        timer = setInterval(tick, this.intervalMs);
        tick();
      },
      cancel: () => close(),
    }, { highWaterMark: this.bufferBytes, size: (chunk) => chunk.byteLength });
    return new Response(body, {
      headers: {
        ...headers as Record<string, string>,
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
      },
    });
  }

  /** Ends every open stream (shutdown). */
  close(): void {
    for (const close of [...this.#open.keys()]) close();
  }
}
