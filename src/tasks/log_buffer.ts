/**
 * A task's captured output: numbered lines kept within a byte budget. The oldest lines go first
 * and are counted, so a reader always knows what it missed. Reads are incremental by `seq`.
 */
import type { LogStream } from "../protocol.ts";
import { utf8Length } from "../protocol.ts";

export interface LogLine {
  readonly seq: number;
  readonly stream: LogStream;
  readonly time: string;
  readonly text: string;
}

export interface LogPage {
  readonly lines: LogLine[];
  /** Pass back as `log_cursor` to get the lines after these. */
  readonly nextCursor: number;
  /** Lines dropped for space that this reader had not seen yet. */
  readonly missed: number;
}

const LINE_OVERHEAD_BYTES = 64;

export class LogBuffer {
  #lines: LogLine[] = [];
  #head = 0;
  #bytes = 0;
  #nextSeq = 1;
  #dropped = 0;

  constructor(readonly limitBytes: number) {}

  get dropped(): number {
    return this.#dropped;
  }

  get size(): number {
    return this.#lines.length - this.#head;
  }

  get lastSeq(): number {
    return this.#nextSeq - 1;
  }

  append(stream: LogStream, text: string, time = Date.now()): void {
    const line = { seq: this.#nextSeq++, stream, time: new Date(time).toISOString(), text };
    this.#lines.push(line);
    this.#bytes += cost(line);
    while (this.#bytes > this.limitBytes && this.size > 0) {
      this.#bytes -= cost(this.#lines[this.#head]!);
      this.#head++;
      this.#dropped++;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#lines.length) {
      this.#lines = this.#lines.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Lines with `seq > cursor`, at most `max` of them. */
  read(cursor: number, max: number): LogPage {
    const firstSeq = this.#nextSeq - this.size;
    const from = Math.max(cursor + 1, firstSeq);
    const start = this.#head + (from - firstSeq);
    const lines = this.#lines.slice(start, start + max);
    const missed = Math.max(0, firstSeq - (cursor + 1));
    return { lines, nextCursor: lines.at(-1)?.seq ?? Math.max(cursor, firstSeq - 1), missed };
  }
}

function cost(line: LogLine): number {
  return utf8Length(line.text) + LINE_OVERHEAD_BYTES;
}
