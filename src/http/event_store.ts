/**
 * A bounded in-memory event store for one Streamable HTTP session, so a client whose SSE stream
 * dropped can reconnect with `Last-Event-ID` and get what it missed. It keeps the newest
 * `maxEvents` events and at most `maxBytes` of them; an event older than that is gone, and a
 * resume from it replays nothing (the client then re-reads state, as after any long outage).
 * An event is measured without serializing it: an answer carrying a 1 MB result would otherwise
 * build 2 MB of JSON only to count it, beside the copy the SDK builds to send it.
 */
import type { EventId, EventStore, JSONRPCMessage, StreamId } from "@modelcontextprotocol/server";

export const EVENT_STORE_MAX_EVENTS = 1000;
export const EVENT_STORE_MAX_BYTES = 4 * 1024 * 1024;

interface Stored {
  readonly id: EventId;
  readonly streamId: StreamId;
  readonly message: JSONRPCMessage;
  readonly bytes: number;
}

export class BoundedEventStore implements EventStore {
  readonly #events: Stored[] = [];
  #bytes = 0;
  #seq = 0;

  constructor(
    readonly maxEvents = EVENT_STORE_MAX_EVENTS,
    readonly maxBytes = EVENT_STORE_MAX_BYTES,
  ) {}

  get size(): number {
    return this.#events.length;
  }

  storeEvent(streamId: StreamId, message: JSONRPCMessage): Promise<EventId> {
    const id = `${streamId}|${++this.#seq}`;
    const bytes = jsonLength(message);
    this.#events.push({ id, streamId, message, bytes });
    this.#bytes += bytes;
    while (
      this.#events.length > this.maxEvents ||
      (this.#bytes > this.maxBytes && this.#events.length > 1)
    ) {
      this.#bytes -= this.#events.shift()!.bytes;
    }
    return Promise.resolve(id);
  }

  getStreamIdForEventId(eventId: EventId): Promise<StreamId | undefined> {
    const bar = eventId.lastIndexOf("|");
    return Promise.resolve(bar > 0 ? eventId.slice(0, bar) : undefined);
  }

  async replayEventsAfter(
    lastEventId: EventId,
    { send }: { send: (eventId: EventId, message: JSONRPCMessage) => Promise<void> },
  ): Promise<StreamId> {
    const streamId = await this.getStreamIdForEventId(lastEventId);
    if (streamId === undefined) throw new Error(`Unknown event id "${lastEventId.slice(0, 100)}"`);
    const seq = Number(lastEventId.slice(lastEventId.lastIndexOf("|") + 1));
    for (const event of [...this.#events]) {
      if (event.streamId !== streamId) continue;
      if (Number(event.id.slice(event.id.lastIndexOf("|") + 1)) <= seq) continue;
      await send(event.id, event.message);
    }
    return streamId;
  }
}

/**
 * The length of `value`'s JSON (as `JSON.stringify(value).length`), except that an escaped
 * character counts once, walked without building the text. What an event holds is its strings.
 */
export function jsonLength(value: unknown): number {
  let length = 0;
  const stack: unknown[] = [value];
  while (stack.length) {
    const item = stack.pop();
    if (typeof item === "string") length += item.length + 2;
    else if (Array.isArray(item)) {
      length += 2 + Math.max(0, item.length - 1);
      for (const element of item) stack.push(element);
    } else if (item !== null && typeof item === "object") {
      const entries = Object.entries(item).filter(([, v]) => v !== undefined);
      length += 2 + Math.max(0, entries.length - 1);
      for (const [key, v] of entries) {
        length += key.length + 3;
        stack.push(v);
      }
    } else if (item !== undefined) length += String(item).length;
  }
  return length;
}
