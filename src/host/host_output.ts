/**
 * Everything a host writes to the server: framed JSON lines on stdout, in order, with log lines
 * gathered into batches. The pipe applies backpressure; while the server reads slowly, log lines
 * wait here up to the per-task log budget, and beyond it the oldest waiting lines are dropped and
 * counted (as the server's own buffer would drop them): never held without bound, never silently.
 */
import type { HostEvent, LogStream } from "../protocol.ts";
import { utf8Length } from "../text.ts";

/** A batch is sent when it holds this many bytes or lines, or after this delay. */
const BATCH_BYTES = 32 * 1024;
const BATCH_LINES = 1000;
const BATCH_DELAY_MS = 5;
/**
 * What a line waiting here costs beyond its text, in the backlog and in a batch: its framing in a
 * `logs` message (`["stderr","…"],`). Not the server's `LINE_OVERHEAD_BYTES` (log_buffer.ts), which
 * counts a kept line's object, number and stream in memory: a different rule, and a smaller cost,
 * so the backlog never drops a line the server's buffer would have kept.
 */
const FRAMED_LINE_OVERHEAD_BYTES = 16;

type Line = [LogStream, string];

export class HostOutput {
  readonly #encoder = new TextEncoder();
  /** Waiting log lines, oldest first, from `#head`. */
  #lines: Line[] = [];
  #head = 0;
  #lineBytes = 0;
  /** Lines ever logged, and lines taken (written or dropped): absolute counts. */
  #logged = 0;
  #taken = 0;
  #dropped = 0;
  /** Other messages, each after the lines logged before it. */
  readonly #events: { afterLine: number; bytes: Uint8Array }[] = [];
  /** True while the writer runs; cleared by the writer itself in the turn it stops. */
  #pumping = false;
  #writing: Promise<void> = Promise.resolve();
  #wake: (() => void) | undefined;
  #finished = false;

  constructor(
    readonly channel: string,
    /** Log bytes that may wait for the server: KLYM_LOG_LIMIT_BYTES, what it would keep anyway. */
    readonly backlogBytes: number,
    readonly write: (bytes: Uint8Array) => Promise<void> = writeAll,
  ) {}

  log(stream: LogStream, text: string): void {
    if (this.#finished) return;
    this.#lines.push([stream, text]);
    this.#lineBytes += cost(text);
    this.#logged++;
    while (this.#lineBytes > this.backlogBytes && this.#head < this.#lines.length) {
      this.#lineBytes -= cost(this.#lines[this.#head++]![1]);
      this.#taken++;
      this.#dropped++;
    }
    this.#kick();
  }

  send(event: Exclude<HostEvent, { type: "logs" }>): void {
    if (this.#finished) return;
    this.#events.push({ afterLine: this.#logged, bytes: this.#frame(event) });
    this.#kick();
  }

  /**
   * Sends the task's last word after every pending line (then `idle`, in the same write, when the
   * host takes another task), and resolves once it is written.
   */
  async finish(
    event: Extract<HostEvent, { type: "result" | "failure" }>,
    idle = false,
  ): Promise<void> {
    if (!this.#finished) {
      const last = this.#frame(event);
      const trailer = idle ? this.#frame({ type: "idle" }) : new Uint8Array();
      const bytes = new Uint8Array(last.length + trailer.length);
      bytes.set(last);
      bytes.set(trailer, last.length);
      this.#events.push({ afterLine: this.#logged, bytes });
      this.#finished = true;
      this.#kick();
    }
    while (this.#pumping) await this.#writing;
  }

  #frame(event: HostEvent): Uint8Array {
    return this.#encoder.encode(`${this.channel}${JSON.stringify(event)}\n`);
  }

  #kick(): void {
    this.#wake?.();
    if (this.#pumping) return;
    this.#pumping = true;
    this.#writing = this.#pump();
  }

  async #pump(): Promise<void> {
    let gathered = false;
    try {
      while (true) {
        const next = this.#events[0];
        if (next && next.afterLine <= this.#taken) {
          this.#events.shift();
          await this.write(next.bytes);
          continue;
        }
        const available = (next?.afterLine ?? this.#logged) - this.#taken;
        if (available <= 0) {
          this.#pumping = false;
          return;
        }
        const full = available >= BATCH_LINES || this.#lineBytes >= BATCH_BYTES;
        if (!next && !full && !this.#finished && !gathered) {
          await this.#gather();
          gathered = true;
          continue;
        }
        gathered = false;
        await this.write(this.#frame(this.#takeBatch(next?.afterLine ?? this.#logged)));
      }
    } catch {
      // The server is gone; the host exits when its stdin closes.
      this.#events.length = 0;
      this.#pumping = false;
    }
  }

  /** Waits a moment for more lines, so that a burst travels as one message. */
  #gather(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, BATCH_DELAY_MS);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = () => {
        if (this.#lineBytes >= BATCH_BYTES || this.#events.length > 0 || this.#finished) done();
      };
    }).finally(() => this.#wake = undefined);
  }

  #takeBatch(until: number): HostEvent {
    const lines: Line[] = [];
    let bytes = 0;
    while (this.#taken < until && lines.length < BATCH_LINES && bytes < BATCH_BYTES) {
      const line = this.#lines[this.#head++]!;
      const size = cost(line[1]);
      bytes += size;
      this.#lineBytes -= size;
      this.#taken++;
      lines.push(line);
    }
    if (this.#head > 1024 && this.#head * 2 > this.#lines.length) {
      this.#lines = this.#lines.slice(this.#head);
      this.#head = 0;
    }
    const event: HostEvent = { type: "logs", lines, dropped: this.#dropped };
    this.#dropped = 0;
    return event;
  }
}

function cost(text: string): number {
  return utf8Length(text) + FRAMED_LINE_OVERHEAD_BYTES;
}

/** A pipe may take fewer bytes than offered: write until all are out. */
async function writeAll(bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) {
    offset += await Deno.stdout.write(bytes.subarray(offset));
  }
}
