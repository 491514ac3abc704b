import assert from "node:assert/strict";
import { readLines } from "../src/lines.ts";
import { jsonBytes, truncateUtf8, utf8Length } from "../src/text.ts";

function streamOf(...chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return ReadableStream.from(chunks.map((c) => encoder.encode(c)));
}

Deno.test("lines split across chunks are joined; a final unterminated line is kept", async () => {
  const out = [];
  for await (const l of readLines(streamOf("ab", "c\nde", "f\r\n", "g"), 100)) out.push(l.line);
  assert.deepEqual(out, ["abc", "def", "g"]);
});

Deno.test("a line longer than the cap is cut and flagged, the next one is intact", async () => {
  const out = [];
  for await (const l of readLines(streamOf("x".repeat(50), "y".repeat(50), "\nok\n"), 30)) {
    out.push(l);
  }
  assert.equal(out[0]!.truncated, true);
  assert.equal(out[0]!.line.length, 30);
  assert.deepEqual(out[1], { line: "ok", truncated: false });
});

Deno.test("truncateUtf8 keeps text within the byte limit and marks the cut", () => {
  assert.equal(truncateUtf8("short", 100), "short");
  const cut = truncateUtf8("я".repeat(1000), 100);
  assert.ok(utf8Length(cut) <= 100, `${utf8Length(cut)} bytes`);
  assert.match(cut, /bytes cut\]$/);
  assert.equal(utf8Length("aя😀"), 1 + 2 + 4);
});

Deno.test("jsonBytes counts a value's JSON in UTF-8, and a JSON too long for a string as Infinity", () => {
  assert.equal(jsonBytes({ a: "é" }), utf8Length('{"a":"é"}'));
  // 90 M characters a task's Worker can hold, each written as \u0001: past V8's longest string.
  assert.equal(jsonBytes({ text: "\u0001".repeat(90_000_000) }), Infinity);
});
