/** The dashboard's event stream stays bounded: few messages, capped streams, slow clients dropped. */
import assert from "node:assert/strict";
import { TaskEvents } from "../../src/tasks/task_events.ts";
import { EventStreams } from "../../src/ui/event_stream.ts";

const decoder = new TextDecoder();

/** Reads messages for `ms`, returning them parsed. */
async function collect(body: ReadableStream<Uint8Array>, ms: number) {
  const reader = body.getReader();
  const messages: { event: string; data: unknown }[] = [];
  let text = "";
  const stop = setTimeout(() => reader.cancel(), ms);
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value);
  }
  clearTimeout(stop);
  for (const block of text.split("\n\n")) {
    const event = /^event: (.*)$/m.exec(block)?.[1];
    const data = /^data: (.*)$/m.exec(block)?.[1];
    if (event && data) messages.push({ event, data: JSON.parse(data) });
  }
  return messages;
}

Deno.test("a burst of changes reaches a stream as a few coalesced messages", async () => {
  const events = new TaskEvents();
  const streams = new EventStreams(events, () => Promise.resolve({ ok: 1 }), {
    intervalMs: 100,
    statsMs: 60_000,
  });
  const response = streams.open({});
  const reading = collect(response.body!, 1000);
  let seq = 0;
  const burst = setInterval(() => {
    for (let i = 0; i < 500; i++) events.emit({ type: "log", id: "t_a", seq: ++seq });
    events.emit({ type: "task", id: "t_b" });
  }, 10);
  await new Promise((r) => setTimeout(r, 600));
  clearInterval(burst);
  const messages = await reading;
  assert.equal(streams.size, 0, "the stream is closed when the client goes");
  assert.equal(events.listenerCount, 0, "and unsubscribed");
  const changes = messages.filter((m) => m.event === "change") as {
    data: { tasks: string[]; logs: Record<string, number> };
  }[];
  assert.ok(seq > 10_000, `emitted ${seq} log changes`);
  assert.ok(changes.length >= 3 && changes.length <= 12, `${changes.length} change messages`);
  assert.equal(changes.at(-1)!.data.logs.t_a, seq, "the last message names the newest line");
  assert.deepEqual(changes[0]!.data.tasks, ["t_b"]);
  assert.deepEqual(messages.filter((m) => m.event === "server").map((m) => m.data), [{ ok: 1 }]);
});

Deno.test("streams beyond the cap get 503, and a freed place can be taken again", async () => {
  const events = new TaskEvents();
  const streams = new EventStreams(events, () => Promise.resolve({}), { maxStreams: 2 });
  const first = streams.open({});
  const second = streams.open({});
  const third = streams.open({});
  assert.equal(third.status, 503);
  assert.match((await third.json()).error, /Too many open dashboard streams \(2, UI_MAX_STREAMS\)/);
  await first.body!.cancel();
  const fourth = streams.open({});
  assert.equal(fourth.status, 200);
  assert.equal(streams.size, 2);
  await second.body!.cancel();
  await fourth.body!.cancel();
  assert.equal(streams.size, 0);
});

Deno.test("a client that stops reading is never buffered for without limit and is dropped", async () => {
  const events = new TaskEvents();
  const streams = new EventStreams(events, () => Promise.resolve({ big: "x".repeat(500) }), {
    intervalMs: 20,
    statsMs: 20,
    bufferBytes: 2048,
    stallMs: 300,
  });
  const response = streams.open({});
  // Nobody reads: only the stream's own queue holds data, and it stops growing at the cap.
  const pump = setInterval(() => {
    for (let i = 0; i < 50; i++) events.emit({ type: "task", id: `t_${i}` });
  }, 5);
  const deadline = Date.now() + 10_000;
  while (streams.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  clearInterval(pump);
  assert.equal(streams.size, 0, "the stalled stream was closed");
  assert.equal(events.listenerCount, 0);
  // What it had queued is bounded by the cap plus one message.
  const reader = response.body!.getReader();
  let queued = 0;
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    queued += value.byteLength;
  }
  assert.ok(queued > 0 && queued < 2048 + 4096, `${queued} bytes were queued`);
});
