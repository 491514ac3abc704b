import assert from "node:assert/strict";
import { ClientPaths } from "../../src/tasks/client_paths.ts";

Deno.test("what a task's process reports names the kind's files relative and drops Klym's frames", () => {
  const snapshots = "/tmp/klym-kinds-abc";
  const hash = "a".repeat(64);
  const src = new URL("../../src/", import.meta.url).href;
  const paths = new ClientPaths(snapshots);
  const stack = [
    "Error: boom",
    `    at boom (file://${snapshots}/${hash}/boom.ts:3:9)`,
    `    at default (file://${snapshots}/${hash}/boom.ts:6:3)`,
    `    at run (${src}worker/task_worker.ts:108:26)`,
    "    at blob:null/0b7d5a3c:3:1",
    "    at eventLoopTick (ext:core/01_core.js:179:7)",
  ].join("\n");
  assert.equal(
    paths.failure(stack),
    "Error: boom\n    at boom (boom.ts:3:9)\n    at default (boom.ts:6:3)",
  );
  assert.equal(
    paths.failure(
      `SyntaxError: Expression expected\n    at file://${snapshots}/${hash}/k/bad.ts:2:13`,
    ),
    "SyntaxError: Expression expected\n    at k/bad.ts:2:13",
  );
  assert.equal(paths.text(`seen ${snapshots}/${hash}/k/main.ts`), "seen k/main.ts");
  assert.equal(paths.text(`in ${src}host/host.ts`), "in [klym]/host/host.ts");
  assert.equal(paths.text("plain text"), "plain text");
});
