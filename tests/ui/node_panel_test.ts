/** The server panel's nodes: what each viewer sees of them, and how often the store is asked. */
import assert from "node:assert/strict";
import type { NodeInfo } from "../../src/journal/journal.ts";
import { NodePanel } from "../../src/ui/node_panel.ts";
import type { TaskRecord } from "../../src/tasks/task_store.ts";

const LEASE_MS = 10_000;

function info(id: string, overrides: Partial<NodeInfo> = {}): NodeInfo {
  return {
    id,
    url: `http://10.0.0.${id.slice(-1)}:8765`,
    alive: true,
    slots: 8,
    running: 0,
    renewedAt: 0,
    renewedAgoMs: 400,
    startedAt: 0,
    ...overrides,
  };
}

/** Running tasks as the registry lists them: owner filter applied, as `TaskStore.list` does. */
function registryOf(running: { owner: string; node: string }[]) {
  return {
    list(status?: string, _limit?: number, owner?: string): TaskRecord[] {
      assert.equal(status, "running");
      return running.filter((t) => owner === undefined || t.owner === owner)
        .map((t, i) => ({ id: `t_${i}`, ...t }) as unknown as TaskRecord);
    },
  };
}

/** A store whose `nodes()` answers `rows` (or what `answer` returns), counting the reads. */
function storeOf(answer: () => Promise<NodeInfo[]>) {
  const store = { node: "node-1", reads: 0, nodes: () => (store.reads++, answer()) };
  return store;
}

const alice = { principal: "alice", admin: false };
const bob = { principal: "bob", admin: false };
const carol = { principal: "carol", admin: true };

Deno.test("each node's running count is the viewer's own tasks on it; an admin's is every task", async () => {
  const journal = storeOf(() => Promise.resolve([info("node-1"), info("node-2")]));
  const registry = registryOf([
    { owner: "alice", node: "node-1" },
    { owner: "alice", node: "node-2" },
    { owner: "alice", node: "node-2" },
    { owner: "bob", node: "node-2" },
  ]);
  const panel = new NodePanel({ journal, registry }, { leaseMs: LEASE_MS });
  const running = async (viewer: typeof alice) =>
    (await panel.read(viewer)).nodes.map((n) => `${n.id} ${n.running}/${n.slots}`);
  assert.deepEqual(await running(alice), ["node-1 1/8", "node-2 2/8"]);
  assert.deepEqual(await running(bob), ["node-1 0/8", "node-2 1/8"]);
  assert.deepEqual(await running(carol), ["node-1 1/8", "node-2 3/8"]);
  const view = await panel.read(bob);
  assert.deepEqual(view.nodes[0], {
    id: "node-1",
    url: "http://10.0.0.1:8765",
    status: "alive",
    renewed_ago_ms: view.nodes[0]!.renewed_ago_ms,
    slots: 8,
    running: 0,
    self: true,
  });
  assert.equal(view.nodes[1]!.self, false);
  assert.equal(view.error, undefined);
  // Nothing of another principal's tasks: no owners, no task ids, only counts of one's own.
  assert.doesNotMatch(JSON.stringify(view), /alice|t_\d/);
});

Deno.test("a node silent past the lease is late, a settled one lost, and ages grow between reads", async () => {
  let now = 1_000_000;
  const journal = storeOf(() =>
    Promise.resolve([
      info("node-1", { renewedAgoMs: 300 }),
      info("node-2", { renewedAgoMs: LEASE_MS - 200 }),
      info("node-3", { renewedAgoMs: LEASE_MS + 5 }),
      info("node-4", { renewedAgoMs: 60_000, alive: false, url: undefined }),
    ])
  );
  const panel = new NodePanel({ journal, registry: registryOf([]) }, {
    leaseMs: LEASE_MS,
    cacheMs: 1000,
    now: () => now,
  });
  const first = await panel.read(alice);
  assert.deepEqual(first.nodes.map((n) => [n.id, n.status, n.renewed_ago_ms]), [
    ["node-1", "alive", 300],
    ["node-2", "alive", LEASE_MS - 200],
    ["node-3", "late", LEASE_MS + 5],
    ["node-4", "lost", 60_000],
  ]);
  assert.equal(first.nodes[3]!.url, null);
  assert.equal(first.checked_at, new Date(1_000_000).toISOString());
  now += 500; // within the cache: the same read, half a second older
  const later = await panel.read(alice);
  assert.equal(journal.reads, 1);
  assert.deepEqual(later.nodes.map((n) => [n.status, n.renewed_ago_ms]).slice(0, 2), [
    ["alive", 800],
    ["late", LEASE_MS + 300],
  ]);
});

Deno.test("every open dashboard shares one read of the store per NODES_READ_CACHE_MS", async () => {
  let now = 0;
  const gate = Promise.withResolvers<NodeInfo[]>();
  const journal = storeOf(() => gate.promise);
  const panel = new NodePanel({ journal, registry: registryOf([]) }, {
    leaseMs: LEASE_MS,
    cacheMs: 1000,
    now: () => now,
  });
  const views = Array.from({ length: 20 }, (_, i) => panel.read(i % 2 ? alice : bob));
  gate.resolve([info("node-1")]);
  for (const view of await Promise.all(views)) assert.equal(view.nodes.length, 1);
  assert.equal(journal.reads, 1, "twenty viewers, one read");
  now = 999;
  await panel.read(alice);
  assert.equal(journal.reads, 1);
  now = 1000;
  await panel.read(alice);
  assert.equal(journal.reads, 2, "read again once the cache is over");
});

Deno.test("a store that fails or does not answer in time leaves the last list, saying so without its words", async () => {
  let now = 0;
  let answer: () => Promise<NodeInfo[]> = () => Promise.resolve([info("node-1"), info("node-2")]);
  const journal = storeOf(() => answer());
  const panel = new NodePanel({ journal, registry: registryOf([]) }, {
    leaseMs: LEASE_MS,
    cacheMs: 1000,
    timeoutMs: 50,
    now: () => now,
  });
  const good = await panel.read(alice);
  assert.equal(good.nodes.length, 2);

  now = 5000;
  answer = () => Promise.reject(new Error("connect ECONNREFUSED 10.1.2.3:5432"));
  const failed = await panel.read(alice);
  assert.deepEqual(failed.nodes.map((n) => n.id), ["node-1", "node-2"], "the last list stays");
  assert.equal(failed.checked_at, new Date(0).toISOString(), "as of the read that answered");
  assert.equal(failed.nodes[0]!.renewed_ago_ms, 400 + 5000, "its ages keep growing");
  assert.match(failed.error!, /did not answer/);
  assert.doesNotMatch(failed.error!, /10\.1\.2\.3/, "the database's address is not shown");

  now = 10_000;
  const hung = Promise.withResolvers<NodeInfo[]>();
  answer = () => hung.promise;
  const slow = await panel.read(alice); // ends by the 50 ms timeout, not by the store
  assert.match(slow.error!, /within 50 ms/);
  assert.equal(slow.nodes.length, 2);
  hung.resolve([]);

  now = 20_000;
  answer = () => Promise.resolve([info("node-1")]);
  const back = await panel.read(alice);
  assert.equal(back.error, undefined);
  assert.deepEqual(back.nodes.map((n) => n.id), ["node-1"]);
});
