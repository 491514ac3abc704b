/** Two principals on one real server: neither can take the queue from the other. */
import assert from "node:assert/strict";
import { startKlym } from "../helpers/klym_process.ts";
import { RawMcp } from "../helpers/raw_mcp.ts";
import { PATIENCE_MS } from "../helpers/patience.ts";

const ALICE = "alice-token-0123456789";
const BOB = "bob-token-0123456789ab";
const TOKENS = `alice:${ALICE},bob:${BOB}`;

interface Summary {
  task_id: string;
  status: string;
  started_at?: string;
}

async function tool(client: RawMcp, name: string, args: Record<string, unknown>) {
  const answer = await client.request("tools/call", { name, arguments: args });
  return answer.result as { isError?: boolean; structuredContent?: Summary; content: unknown };
}

async function start(client: RawMcp, kind: string): Promise<Summary> {
  const result = await tool(client, "start_async_agent_task", { kind });
  assert.ok(!result.isError, JSON.stringify(result.content));
  return result.structuredContent!;
}

/** Polls check_task_status, as a client would, until the task's status is one of `wanted`. */
async function reaches(client: RawMcp, id: string, wanted: string[]): Promise<Summary> {
  const deadline = Date.now() + PATIENCE_MS;
  while (true) {
    const status = (await tool(client, "check_task_status", { task_id: id })).structuredContent!;
    if (wanted.includes(status.status)) return status;
    if (Date.now() > deadline) throw new Error(`Task ${id} still ${status.status}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

Deno.test("alice filling her queue share leaves bob room, and bob's task runs at the next free slot", async () => {
  await using klym = await startKlym({
    KLYM_AUTH_TOKENS: TOKENS,
    KLYM_MAX_CONCURRENT: "1",
    KLYM_MAX_QUEUED: "3",
  });
  const alice = new RawMcp(klym.url, ALICE);
  const bob = new RawMcp(klym.url, BOB);
  await alice.initialize();
  await bob.initialize();
  const gate = await start(alice, "cooperative");
  await reaches(alice, gate.task_id, ["running"]);
  const queued = [];
  for (let i = 0; i < 3; i++) queued.push(await start(alice, "hello"));
  const refused = await tool(alice, "start_async_agent_task", { kind: "hello" });
  assert.equal(refused.isError, true);
  assert.match(
    JSON.stringify(refused.content),
    /QUEUE_FULL.*principal \\"alice\\" has 3 tasks queued; its queue limit is 3 \(KLYM_MAX_QUEUED\)/,
  );
  const bobs = await start(bob, "hello");
  assert.equal(bobs.status, "queued", "bob's start is accepted");
  await tool(alice, "cancel_task", { task_id: gate.task_id });
  const bobDone = await reaches(bob, bobs.task_id, ["succeeded"]);
  const aliceDone = [];
  for (const task of queued) aliceDone.push(await reaches(alice, task.task_id, ["succeeded"]));
  const bobStart = Date.parse(bobDone.started_at!);
  for (const task of aliceDone) {
    assert.ok(bobStart < Date.parse(task.started_at!), "bob's task ran before alice's queued ones");
  }
  await alice.close();
  await bob.close();
});
