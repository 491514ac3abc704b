/** The dashboard's event stream stays bounded: few messages, capped streams, slow clients dropped. */
import assert from "node:assert/strict";
import { TaskEvents } from "../../src/tasks/task_events.ts";
import { type EventStreamOptions, EventStreams } from "../../src/ui/event_stream.ts";
import type { Viewer } from "../../src/principals.ts";
import { readEvents, type StreamEvent } from "../helpers/ui_client.ts";

const decoder = new TextDecoder();
const LOCAL: Viewer = { principal: "local", admin: false };
const LIMITS = { maxPerPrincipal: 16, maxTotal: 64 };

/** Streams over `events` whose tasks all belong to `owners[id]` (else to "local"). */
function streamsOf(
  events: TaskEvents,
  stats: (viewer: Viewer) => Promise<unknown>,
  options: Partial<EventStreamOptions> = {},
  owners: Record<string, string> = {},
): EventStreams {
  return new EventStreams({ events, stats, ownerOf: (id) => owners[id] ?? "local" }, {
    ...LIMITS,
    ...options,
  });
}

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
  const streams = streamsOf(events, () => Promise.resolve({ ok: 1 }), {
    intervalMs: 100,
    statsMs: 60_000,
  });
  const response = streams.open({}, LOCAL);
  const reading = collect(response.body!, 1000);
  let seq = 0;
  const burst = setInterval(() => {
    for (let i = 0; i < 500; i++) events.emit({ type: "log", id: "t_a", seq: ++seq });
    events.emit({ type: "task", id: "t_b" });
  }, 10);
  // The burst lasting 600 ms is the behaviour under test: six flush intervals of changes.
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
  const streams = streamsOf(events, () => Promise.resolve({}), { maxPerPrincipal: 2 });
  const first = streams.open({}, LOCAL);
  const second = streams.open({}, LOCAL);
  const third = streams.open({}, LOCAL);
  assert.equal(third.status, 503);
  assert.equal(
    (await third.json()).error,
    'Cannot open a dashboard stream: principal "local" has 2 open, the limit is 2 (KLYM_UI_MAX_STREAMS); close other dashboard tabs',
  );
  await first.body!.cancel();
  const fourth = streams.open({}, LOCAL);
  assert.equal(fourth.status, 200);
  assert.equal(streams.size, 2);
  await second.body!.cancel();
  await fourth.body!.cancel();
  assert.equal(streams.size, 0);
});

Deno.test("a client that stops reading is never buffered for without limit and is dropped", async () => {
  const events = new TaskEvents();
  const streams = streamsOf(events, () => Promise.resolve({ big: "x".repeat(500) }), {
    intervalMs: 20,
    statsMs: 20,
    bufferBytes: 2048,
    stallMs: 300,
  });
  const response = streams.open({}, LOCAL);
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

const ALICE: Viewer = { principal: "alice", admin: false };
const BOB: Viewer = { principal: "bob", admin: false };
const ADMIN: Viewer = { principal: "carol", admin: true };

/** Reads one stream's messages, parsed, until `until` holds. */
async function readUntil(
  body: ReadableStream<Uint8Array>,
  until: (messages: { event: string; data: unknown }[]) => boolean,
) {
  const parse = (events: StreamEvent[]) =>
    events.map(({ event, data }) => ({ event, data: JSON.parse(data) as unknown }));
  return parse(await readEvents(body, (events) => until(parse(events))));
}

Deno.test("a stream names only its viewer's tasks; an admin's names every task", async () => {
  const events = new TaskEvents();
  const owners = { t_alice: "alice", t_bob: "bob" };
  const asked: string[] = [];
  const streams = streamsOf(
    events,
    (viewer) => {
      asked.push(viewer.principal);
      return Promise.resolve({ for: viewer.principal });
    },
    { intervalMs: 20 },
    owners,
  );
  const changes = (messages: { event: string; data: unknown }[]) =>
    messages.filter((m) => m.event === "change").map((m) =>
      m.data as { tasks: string[]; logs: Record<string, number> }
    );
  const read = (viewer: Viewer) =>
    readUntil(streams.open({}, viewer).body!, (got) => {
      const seen = changes(got).flatMap((c) => [...c.tasks, ...Object.keys(c.logs)]);
      // Every stream sees the last change, "t_end" (Bob's), after all the others.
      return seen.includes("t_end") || (viewer === ALICE && seen.includes("t_alice_end"));
    });
  const reading = [read(ALICE), read(BOB), read(ADMIN)];
  for (const [id, seq] of [["t_alice", 1], ["t_bob", 1], ["t_alice", 2], ["t_bob", 2]] as const) {
    events.emit({ type: "task", id });
    events.emit({ type: "log", id, seq });
  }
  Object.assign(owners, { t_alice_end: "alice", t_end: "bob" });
  events.emit({ type: "task", id: "t_alice_end" });
  events.emit({ type: "task", id: "t_end" });
  const [alice, bob, admin] = await Promise.all(reading);
  const ids = (messages: { event: string; data: unknown }[]) =>
    new Set(changes(messages).flatMap((c) => [...c.tasks, ...Object.keys(c.logs)]));
  assert.deepEqual([...ids(alice!)].sort(), ["t_alice", "t_alice_end"]);
  assert.deepEqual([...ids(bob!)].sort(), ["t_bob", "t_end"]);
  assert.deepEqual([...ids(admin!)].sort(), ["t_alice", "t_alice_end", "t_bob", "t_end"]);
  for (const [messages, who] of [[alice!, "alice"], [bob!, "bob"], [admin!, "carol"]] as const) {
    assert.deepEqual(
      messages.filter((m) => m.event === "server").map((m) => m.data),
      [{ for: who }],
      `${who}'s figures are asked for ${who}`,
    );
  }
  assert.deepEqual(asked.sort(), ["alice", "bob", "carol"]);
  assert.equal(streams.size, 0);
});

/** Whether the stream ends on its own (read to its end), rather than being given up after 10 s. */
async function endsByItself(body: ReadableStream<Uint8Array>): Promise<boolean> {
  const reader = body.getReader();
  let gaveUp = false;
  const timer = setTimeout(() => (gaveUp = true, reader.cancel()), 10_000);
  while (!(await reader.read()).done);
  clearTimeout(timer);
  return !gaveUp;
}

Deno.test("one principal's streams never lock another out: each has its share, and at the total cap the largest holder gives way", async () => {
  const events = new TaskEvents();
  const streams = streamsOf(events, () => Promise.resolve({}), {
    maxPerPrincipal: 3,
    maxTotal: 4,
  });
  const bob = [streams.open({}, BOB), streams.open({}, BOB), streams.open({}, BOB)];
  assert.deepEqual(bob.map((r) => r.status), [200, 200, 200]);
  const fourth = streams.open({}, BOB);
  assert.equal(fourth.status, 503, "Bob's own share is 3");
  assert.match(
    (await fourth.json()).error,
    /"bob" has 3 open, the limit is 3 \(KLYM_UI_MAX_STREAMS\)/,
  );
  assert.equal(streams.countOf("bob"), 3);

  const alice = [streams.open({}, ALICE)];
  assert.equal(alice[0]!.status, 200, "the total cap (4) is reached with Alice's first");
  assert.equal(streams.size, 4);
  // At the total cap Alice still gets a stream: Bob, who holds the most, loses his oldest.
  alice.push(streams.open({}, ALICE));
  assert.equal(alice[1]!.status, 200);
  assert.deepEqual([streams.countOf("alice"), streams.countOf("bob"), streams.size], [2, 2, 4]);
  assert.equal(await endsByItself(bob[0]!.body!), true, "Bob's oldest stream was closed");
  // Now they hold as many each: whoever asks for one more is refused, naming the total knob.
  const tie = streams.open({}, ALICE);
  assert.equal(tie.status, 503);
  assert.match(
    (await tie.json()).error,
    /4 are open in all, the limit is 4 \(KLYM_UI_MAX_STREAMS_TOTAL\), and principal "alice" holds 2 of them/,
  );
  const bobAgain = streams.open({}, BOB);
  assert.equal(bobAgain.status, 503);
  await bobAgain.body?.cancel();
  for (const response of [...bob.slice(1), ...alice]) await response.body!.cancel();
  assert.equal(streams.size, 0);
  assert.equal(events.listenerCount, 0);
});
