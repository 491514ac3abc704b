import assert from "node:assert/strict";
import { HostOutput } from "../../src/host/host_output.ts";
import type { HostEvent } from "../../src/protocol.ts";

const CHANNEL = "\u001e-test-channel-\u001e";

/** A writer that holds each write until the test opens the gate, like a pipe nobody reads. */
function gatedWriter() {
  const written: HostEvent[] = [];
  let gate = Promise.withResolvers<void>();
  return {
    written,
    open() {
      gate.resolve();
    },
    close() {
      gate = Promise.withResolvers<void>();
    },
    async write(bytes: Uint8Array) {
      await gate.promise;
      for (const line of new TextDecoder().decode(bytes).split("\n").filter(Boolean)) {
        assert.ok(line.startsWith(CHANNEL), "every message is framed");
        written.push(JSON.parse(line.slice(CHANNEL.length)));
      }
    },
  };
}

Deno.test("log lines travel in batches, in order with the messages around them", async () => {
  const pipe = gatedWriter();
  pipe.open();
  const out = new HostOutput(CHANNEL, 1 << 20, (b) => pipe.write(b));
  out.log("stdout", "one");
  out.log("stderr", "two");
  out.send({ type: "progress", done: 1 });
  out.log("stdout", "three");
  await out.finish({ type: "result", json: "42" });
  assert.deepEqual(pipe.written, [
    { type: "logs", lines: [["stdout", "one"], ["stderr", "two"]], dropped: 0 },
    { type: "progress", done: 1 },
    { type: "logs", lines: [["stdout", "three"]], dropped: 0 },
    { type: "result", json: "42" },
  ]);
  out.log("stdout", "after the end");
  out.send({ type: "progress", done: 2 });
  assert.equal(pipe.written.length, 4, "nothing is sent after the task's last word");
});

Deno.test("while the server does not read, the oldest waiting lines are dropped and counted", async () => {
  const pipe = gatedWriter();
  // 10 lines of 4 bytes (+16 each) fit in 200 bytes.
  const out = new HostOutput(CHANNEL, 200, (b) => pipe.write(b));
  for (let i = 0; i < 1000; i++) out.log("stdout", String(i).padStart(4, "0"));
  pipe.open();
  await out.finish({ type: "result", json: "null" });
  const lines = pipe.written.flatMap((e) => e.type === "logs" ? e.lines.map(([, t]) => t) : []);
  const dropped = pipe.written.reduce((n, e) => n + (e.type === "logs" ? e.dropped : 0), 0);
  assert.ok(lines.length <= 11, `${lines.length} lines sent`);
  assert.equal(lines.length + dropped, 1000, "every line is sent or counted");
  assert.equal(lines.at(-1), "0999", "the newest line is kept");
  assert.deepEqual(lines, [...lines].sort(), "in order");
});

Deno.test("a line logged just as the writer goes idle is still sent", async () => {
  const pipe = gatedWriter();
  pipe.open();
  const out = new HostOutput(CHANNEL, 1 << 20, (b) => pipe.write(b));
  for (let round = 0; round < 50; round++) {
    out.log("stdout", `line ${round}`);
    await new Promise((r) => setTimeout(r, round % 7));
  }
  await out.finish({ type: "result", json: "1" });
  const lines = pipe.written.flatMap((e) => e.type === "logs" ? e.lines.map(([, t]) => t) : []);
  assert.equal(lines.length, 50);
});
