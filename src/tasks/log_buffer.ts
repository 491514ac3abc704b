/**
 * A task's captured output: numbered lines kept within a byte budget. The oldest lines go first
 * and are counted, so a reader always knows what it missed. Reads are incremental by `seq`. Times
 * are the server's own clock at receipt, kept as numbers and formatted only when read.
 */
import type { LogStream } from "../protocol.ts";
import { utf8Length } from "../text.ts";
import type { JournalLine } from "../journal/journal.ts";

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

/** A task's logs as readers see them: held here, or read back from the journal after a restart. */
export interface TaskLogs {
  /** Lines lost to the byte budget, here or before they reached the server. */
  readonly dropped: number;
  /** Lines kept. */
  readonly size: number;
  readonly lastSeq: number;
  /** Bytes held (text plus per-line overhead). */
  readonly bytes: number;
  /** Lines with `seq > cursor`: at most `max` of them, and at most `maxBytes` as JSON. */
  read(cursor: number, max: number, maxBytes?: number): LogPage;
}

/** What a line costs beyond its text: its object, number and stream (the journal counts alike). */
export const LINE_OVERHEAD_BYTES = 64;

export class LogBuffer implements TaskLogs {
  #lines: JournalLine[] = [];
  #head = 0;
  #bytes = 0;
  #nextSeq = 1;
  #dropped = 0;

  constructor(readonly limitBytes: number) {}

  /** Lines lost to the byte budget, here or before they reached the server. */
  get dropped(): number {
    return this.#dropped;
  }

  get size(): number {
    return this.#lines.length - this.#head;
  }

  get lastSeq(): number {
    return this.#nextSeq - 1;
  }

  /** Bytes held now (text plus per-line overhead). */
  get bytes(): number {
    return this.#bytes;
  }

  /** The number of the oldest line kept (the next line's when none is). */
  get firstSeq(): number {
    return this.#lines[this.#head]?.seq ?? this.#nextSeq;
  }

  append(stream: LogStream, text: string, time: number): JournalLine {
    return this.#keep({ seq: this.#nextSeq++, stream, time, text });
  }

  /**
   * A line numbered elsewhere (another node's run of the task, read from the shared store). Lines
   * arrive in order; one already held is skipped, and numbers skipped over count as dropped.
   */
  appendNumbered(line: JournalLine): void {
    if (line.seq < this.#nextSeq) return;
    if (line.seq > this.#nextSeq) this.countDropped(line.seq - this.#nextSeq);
    this.#nextSeq = line.seq + 1;
    this.#keep(line);
  }

  #keep(line: JournalLine): JournalLine {
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
    return line;
  }

  /**
   * Counts lines dropped before they reached the server (its host dropped the oldest waiting
   * ones). They take their numbers, so a reader's cursor knows it missed them.
   */
  countDropped(lines: number): void {
    this.#nextSeq += lines;
    this.#dropped += lines;
  }

  /** Lines with `seq > cursor`: at most `max` of them, and at most `maxBytes` as JSON. */
  read(cursor: number, max: number, maxBytes = Infinity): LogPage {
    const start = this.#firstAfter(cursor);
    const lines: LogLine[] = [];
    let bytes = 0;
    for (let i = start; i < this.#lines.length && lines.length < max; i++) {
      const line = this.#lines[i]!;
      if (maxBytes !== Infinity) {
        bytes += utf8Length(JSON.stringify(line.text)) + LINE_OVERHEAD_BYTES;
        if (bytes > maxBytes && lines.length > 0) break;
      }
      lines.push({ ...line, time: new Date(line.time).toISOString() });
    }
    // Numbers between the cursor and the next kept line belong to dropped lines.
    const nextKept = this.#lines[start]?.seq ?? this.#nextSeq;
    const missed = Math.max(0, nextKept - (cursor + 1));
    return { lines, nextCursor: lines.at(-1)?.seq ?? Math.max(cursor, nextKept - 1), missed };
  }

  /** Index of the first kept line with `seq > cursor` (lines are in seq order, maybe with gaps). */
  #firstAfter(cursor: number): number {
    let low = this.#head;
    let high = this.#lines.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.#lines[mid]!.seq <= cursor) low = mid + 1;
      else high = mid;
    }
    return low;
  }
}

function cost(line: JournalLine): number {
  return utf8Length(line.text) + LINE_OVERHEAD_BYTES;
}
