/**
 * The dashboard's server panel and /metrics of nodes sharing PostgreSQL, with real node processes:
 * any node's panel lists every node, each viewer counting only its own running tasks on each, and
 * each node's metrics say which node it is. On one machine neither appears.
 */
import assert from "node:assert/strict";
import { call, startKlym, type Status } from "../helpers/klym_process.ts";
import { startPostgres } from "../helpers/postgres.ts";
import { connectAs, uiLogin } from "../helpers/ui_client.ts";
import { PATIENCE_MS } from "../helpers/patience.ts";
import { freePort } from "../peers/peers.ts";
import type { NodesView } from "../../src/ui/node_panel.ts";

const ALICE = "alice-token-0123456789abcdef";
const BOB = "bob-token-0123456789abcdef";
const CAROL = "carol-token-0123456789abcdef";
const TOKENS = `alice:${ALICE},bob:${BOB},carol:${CAROL}`;

async function panel(url: string, cookie: string): Promise<{ cluster?: NodesView }> {
  const response = await fetch(`${url}/ui/api/server`, { headers: { cookie } });
  assert.equal(response.status, 200);
  return await response.json();
}

/** `id running/slots` of each node in a panel. */
const counts = (view: NodesView | undefined) =>
  view?.nodes.map((n) => `${n.id} ${n.running}/${n.slots}`);

Deno.test("any node's panel lists the nodes sharing PostgreSQL, each viewer counting its own tasks", async (t) => {
  const pg = await startPostgres();
  try {
    const state = await pg.database();
    const ports = [freePort(), freePort()];
    const node = (i: number) =>
      startKlym({
        KLYM_STATE: state,
        KLYM_NODE_ID: `node-${i + 1}`,
        KLYM_NODE_URL: `http://127.0.0.1:${ports[i]}`,
        KLYM_AUTH_TOKENS: TOKENS,
        KLYM_ADMINS: "carol",
        KLYM_MAX_CONCURRENT: "2",
      }, { port: ports[i]! });
    await using one = await node(0);
    await using two = await node(1);
    // Alice's task, started on node-2, runs on whichever node claims it.
    await using alice = await connectAs(two.url, ALICE);
    const { task_id } = await call<{ task_id: string }>(alice, "start_async_agent_task", {
      kind: "sleep",
      params: { ms: 60_000, tick_ms: 100 },
    });
    while (
      (await call<Status>(alice, "check_task_status", { task_id, max_log_lines: 0 })).status ===
        "queued"
    ) await new Promise((r) => setTimeout(r, 50));

    const aliceCookie = await uiLogin(one.url, ALICE);
    const bobCookie = await uiLogin(one.url, BOB);
    const carolCookie = await uiLogin(one.url, CAROL);
    // Every node's row is there from its start and says its slots from its first renewal, made as
    // the node attaches its registry; the running counts follow the task's notification.
    const deadline = Date.now() + PATIENCE_MS;
    let view: NodesView | undefined;
    while (true) {
      view = (await panel(one.url, carolCookie)).cluster;
      const running = view?.nodes.reduce((sum, n) => sum + n.running, 0);
      if (running === 1 && view!.nodes.every((n) => n.slots > 0)) break;
      assert.ok(
        Date.now() < deadline,
        `Alice's running task or a node's slots never counted: ${JSON.stringify(view)}`,
      );
      await new Promise((r) => setTimeout(r, 100));
    }
    const admin: NodesView = view!;
    const runsOn = admin.nodes.find((n) => n.running === 1)!.id;

    await t.step("the admin sees both nodes, alive, with URL, slots and every task", () => {
      assert.equal(admin.error, undefined);
      assert.equal(typeof admin.checked_at, "string");
      assert.deepEqual(
        admin.nodes.map((n) => [n.id, n.url, n.status, n.self]),
        [
          ["node-1", `http://127.0.0.1:${ports[0]}`, "alive", true],
          ["node-2", `http://127.0.0.1:${ports[1]}`, "alive", false],
        ],
      );
      for (const n of admin.nodes) {
        assert.ok(n.renewed_ago_ms >= 0 && n.renewed_ago_ms < 10_000, JSON.stringify(n));
        assert.equal(n.slots, 2);
      }
    });

    await t.step(
      "Alice counts her task on its node; Bob, who runs nothing, counts none",
      async () => {
        const mine = (await panel(one.url, aliceCookie)).cluster;
        assert.deepEqual(
          counts(mine),
          ["node-1", "node-2"].map((id) => `${id} ${id === runsOn ? 1 : 0}/2`),
        );
        const bobs = (await panel(one.url, bobCookie)).cluster;
        assert.deepEqual(counts(bobs), ["node-1 0/2", "node-2 0/2"]);
        assert.doesNotMatch(JSON.stringify(bobs), new RegExp(task_id));
      },
    );

    await t.step("each node's /metrics names it in klym_node_info", async () => {
      for (const [klym, id] of [[one, "node-1"], [two, "node-2"]] as const) {
        const response = await fetch(`${klym.url}/metrics`, {
          headers: { authorization: `Bearer ${CAROL}` },
        });
        const text = await response.text();
        assert.equal(response.status, 200);
        assert.deepEqual(text.split("\n").filter((l) => l.startsWith("klym_node_info")), [
          `klym_node_info{node="${id}"} 1`,
        ]);
      }
    });
    await call(alice, "cancel_task", { task_id });
  } finally {
    await pg.stop();
  }
});

Deno.test("on one machine the panel has no nodes and /metrics no klym_node_info series", async () => {
  await using klym = await startKlym({ KLYM_AUTH_TOKENS: TOKENS, KLYM_ADMINS: "carol" });
  const view = await panel(klym.url, await uiLogin(klym.url, CAROL));
  assert.equal("cluster" in view, false, JSON.stringify(view));
  const response = await fetch(`${klym.url}/metrics`, {
    headers: { authorization: `Bearer ${CAROL}` },
  });
  const text = await response.text();
  assert.match(text, /^klym_build_info\{/m);
  assert.doesNotMatch(text, /^klym_node_info/m);
});
