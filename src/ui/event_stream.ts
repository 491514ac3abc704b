/**
 * The dashboard's one live channel, `/ui/events` (server-sent events). Registry changes are
 * coalesced per stream and sent at most every `UI_STREAM_INTERVAL_MS` as one `change` message
 * naming the tasks that changed and each task's newest log line; the page then reads what it shows.
 * A `server` message carries the server panel's figures every `UI_SERVER_STATS_MS`.
 *
 * Bounded: at most `UI_MAX_STREAMS` streams; a stream whose client reads slowly gets nothing new
 * queued while `UI_STREAM_BUFFER_BYTES` are waiting (changes keep coalescing into one message), and
 * is closed after `UI_STREAM_STALL_MS` of that.
 */
import { getLogger } from "@logtape/logtape";
import type { TaskChange, TaskEvents } from "../tasks/task_events.ts";
import {
  UI_KEEPALIVE_MS,
  UI_MAX_IDS_PER_MESSAGE,
  UI_MAX_STREAMS,
  UI_SERVER_STATS_MS,
  UI_STREAM_BUFFER_BYTES,
  UI_STREAM_INTERVAL_MS,
  UI_STREAM_STALL_MS,
} from "./ui_limits.ts";

const logger = getLogger(["klym", "ui"]);
const encoder = new TextEncoder();

export interface EventStreamOptions {
  maxStreams?: number;
  intervalMs?: number;
  statsMs?: number;
  bufferBytes?: number;
  stallMs?: number;
}

export class EventStreams {
  readonly #open = new Set<() => void>();
  readonly maxStreams: number;
  readonly intervalMs: number;
  readonly statsMs: number;
  readonly bufferBytes: number;
  readonly stallMs: number;

  constructor(
    readonly events: TaskEvents,
    readonly stats: () => Promise<unknown>,
    options: EventStreamOptions = {},
  ) {
    this.maxStreams = options.maxStreams ?? UI_MAX_STREAMS;
    this.intervalMs = options.intervalMs ?? UI_STREAM_INTERVAL_MS;
    this.statsMs = options.statsMs ?? UI_SERVER_STATS_MS;
    this.bufferBytes = options.bufferBytes ?? UI_STREAM_BUFFER_BYTES;
    this.stallMs = options.stallMs ?? UI_STREAM_STALL_MS;
  }

  get size(): number {
    return this.#open.size;
  }

  /** A `text/event-stream` response, or 503 when `maxStreams` are open. */
  open(headers: HeadersInit): Response {
    if (this.#open.size >= this.maxStreams) {
      return Response.json(
        {
          error:
            `Too many open dashboard streams (${this.maxStreams}, UI_MAX_STREAMS); close other dashboard tabs`,
        },
        { status: 503, headers: { ...headers as Record<string, string>, "retry-after": "5" } },
      );
    }
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
        this.stats().then(
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
        this.#open.add(close);
        unsubscribe = this.events.subscribe(onChange);
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
    for (const close of [...this.#open]) close();
  }
}
