import assert from "node:assert/strict";
import { LogBuffer } from "../../src/tasks/log_buffer.ts";

Deno.test("lines are numbered from 1 and read incrementally without loss or repeat", () => {
  const logs = new LogBuffer(1 << 20);
  for (let i = 0; i < 10; i++) logs.append(i % 2 ? "stderr" : "stdout", `line ${i}`, 0);
  const seen: string[] = [];
  let cursor = 0;
  for (let round = 0; round < 5; round++) {
    const page = logs.read(cursor, 3);
    seen.push(...page.lines.map((l) => l.text));
    cursor = page.nextCursor;
  }
  assert.deepEqual(seen, Array.from({ length: 10 }, (_, i) => `line ${i}`));
  assert.equal(cursor, 10);
  assert.deepEqual(logs.read(cursor, 100).lines, []);
  assert.equal(logs.read(cursor, 100).nextCursor, 10);
  assert.equal(logs.read(0, 1).lines[0]!.stream, "stdout");
  assert.equal(logs.read(1, 1).lines[0]!.stream, "stderr");
});

Deno.test("at the byte limit the oldest lines are dropped and counted", () => {
  const perLine = 64 + 10; // overhead + ten ASCII bytes
  const logs = new LogBuffer(perLine * 5);
  for (let i = 0; i < 5; i++) logs.append("stdout", `0123456-${i}`, 0);
  assert.equal(logs.dropped, 0, "exactly at the limit nothing is dropped");
  logs.append("stdout", "0123456-5", 0);
  assert.equal(logs.dropped, 1, "one byte past it, the oldest line goes");
  assert.equal(logs.size, 5);
  const page = logs.read(0, 100);
  assert.equal(page.lines[0]!.seq, 2);
  assert.equal(page.missed, 1);
  assert.equal(logs.read(1, 100).missed, 0);
});

Deno.test("a reader behind dropped lines resumes at the oldest kept line", () => {
  const logs = new LogBuffer(200);
  for (let i = 0; i < 100; i++) logs.append("stdout", `${i}`.padStart(40, "."), 0);
  const page = logs.read(3, 10);
  assert.equal(page.lines[0]!.seq, logs.lastSeq - logs.size + 1);
  assert.equal(page.missed, page.lines[0]!.seq - 4);
  assert.equal(logs.dropped + logs.size, 100);
});

Deno.test("multi-byte text counts its UTF-8 bytes", () => {
  const logs = new LogBuffer(64 + 6);
  logs.append("stdout", "бачу", 0); // 8 bytes
  assert.equal(logs.dropped, 1);
  const fits = new LogBuffer(64 + 8);
  fits.append("stdout", "бачу", 0);
  assert.equal(fits.dropped, 0);
});
