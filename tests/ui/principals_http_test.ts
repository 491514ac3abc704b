/**
 * The dashboard over plain HTTP with several principals: each login sees and touches only its own
 * tasks and processes, an admin sees and cancels every task, and nobody's many logins or streams
 * lock another principal out.
 */
import assert from "node:assert/strict";
import type { Client } from "@modelcontextprotocol/client";
import { call, startKlym, type Status } from "../helpers/klym_process.ts";
import { connectAs, readEvents, uiLogin } from "../helpers/ui_client.ts";

const ALICE = "alice-token-0123456789abcdef";
const BOB = "bob-token-0123456789abcdef";
const CAROL = "carol-token-0123456789abcdef";
const TOKENS = `alice:${ALICE},bob:${BOB},carol:${CAROL}`;

interface Listed {
  viewer: { principal: string; admin: boolean };
  tasks: { task_id: string; owner?: string; kind: string; status: string }[];
  counts: Record<string, number>;
}
interface ServerPanel {
  counts: Record<string, number>;
  processes: { task_id: string; owner?: string; pid: number | null }[];
}

/** Starts a task that sleeps for a minute and resolves once it runs. */
async function runningSleep(client: Client): Promise<string> {
  const { task_id } = await call(client, "start_async_agent_task", {
    kind: "sleep",
    params: { ms: 60_000, tick_ms: 100 },
  });
  const id = String(task_id);
  while ((await call<Status>(client, "check_task_status", { task_id: id })).status === "queued") {
    await new Promise((r) => setTimeout(r, 50));
  }
  return id;
}

async function getJson<T>(url: string, cookie: string): Promise<{ status: number; body: T }> {
  const response = await fetch(url, { headers: { cookie } });
  return { status: response.status, body: await response.json() };
}

Deno.test("a dashboard login sees and touches only its principal's tasks; an admin sees and cancels all", async (t) => {
  await using klym = await startKlym({ KLYM_AUTH_TOKENS: TOKENS, KLYM_ADMINS: "carol" });
  const url = klym.url;
  await using alice = await connectAs(url, ALICE);
  await using bob = await connectAs(url, BOB);
  const aliceTask = await runningSleep(alice);
  const bobTask = await runningSleep(bob);
  const bobCookie = await uiLogin(url, BOB);
  const carolCookie = await uiLogin(url, CAROL);

  // The admin's panel names every running process with its owner: Alice's PID is known from it.
  const adminPanel = await getJson<ServerPanel>(`${url}/ui/api/server`, carolCookie);
  assert.equal(adminPanel.status, 200);
  const alicePid = adminPanel.body.processes.find((p) => p.task_id === aliceTask)?.pid;
  assert.equal(typeof alicePid, "number", JSON.stringify(adminPanel.body));
  assert.deepEqual(
    adminPanel.body.processes.map((p) => [p.task_id, p.owner]).sort(),
    [[aliceTask, "alice"], [bobTask, "bob"]].sort(),
  );

  await t.step("Bob's list and counts hold his task only, without owners", async () => {
    const listed = await getJson<Listed>(`${url}/ui/api/tasks`, bobCookie);
    assert.equal(listed.status, 200);
    assert.deepEqual(listed.body.viewer, { principal: "bob", admin: false });
    assert.deepEqual(listed.body.tasks.map((task) => task.task_id), [bobTask]);
    assert.equal(listed.body.tasks[0]!.owner, undefined);
    assert.equal(listed.body.counts.running, 1);
    const running = await getJson<Listed>(`${url}/ui/api/tasks?status=running`, bobCookie);
    assert.deepEqual(running.body.tasks.map((task) => task.task_id), [bobTask]);
  });

  await t.step(
    "Alice's task is 404 to Bob exactly like a missing one, to read and to cancel",
    async () => {
      const missingId = `t_${"0".repeat(aliceTask.length - 2)}`;
      const missing = await getJson<{ error: string }>(
        `${url}/ui/api/tasks/${missingId}`,
        bobCookie,
      );
      assert.equal(missing.status, 404);
      const hers = await getJson<{ error: string }>(`${url}/ui/api/tasks/${aliceTask}`, bobCookie);
      assert.equal(hers.status, 404);
      assert.deepEqual(
        hers.body,
        JSON.parse(JSON.stringify(missing.body).replace(missingId, aliceTask)),
      );
      assert.ok(!JSON.stringify(hers.body).includes("alice"));
      const cancel = (id: string) =>
        fetch(`${url}/ui/api/tasks/${id}/cancel`, {
          method: "POST",
          headers: { cookie: bobCookie, origin: url },
        });
      const refused = await cancel(aliceTask);
      const refusedMissing = await cancel(missingId);
      assert.equal(refused.status, 404);
      assert.equal(refusedMissing.status, 404);
      assert.equal(
        await refused.text(),
        (await refusedMissing.text()).replace(missingId, aliceTask),
      );
      const still = await call<Status>(alice, "check_task_status", { task_id: aliceTask });
      assert.equal(still.status, "running", "Alice's task keeps running");
    },
  );

  await t.step("Bob's server panel shows his process and counts only", async () => {
    const panel = await getJson<ServerPanel>(`${url}/ui/api/server`, bobCookie);
    assert.deepEqual(panel.body.processes.map((p) => p.task_id), [bobTask]);
    assert.equal(panel.body.processes[0]!.owner, undefined);
    assert.equal(panel.body.counts.running, 1);
    const text = JSON.stringify(panel.body);
    assert.ok(!text.includes(aliceTask));
    assert.ok(!text.includes(`"pid":${alicePid}`), "Alice's PID is not shown to Bob");
  });

  await t.step("Bob's event stream names none of Alice's tasks nor her PID", async () => {
    const response = await fetch(`${url}/ui/events`, { headers: { cookie: bobCookie } });
    assert.equal(response.status, 200);
    // While it is open Alice's task keeps logging, and both start one more task: Alice first.
    let aliceNew = "";
    let bobNew = "";
    let asked = false;
    const events = await readEvents(response.body!, (got) => {
      if (got.length > 0 && !asked) {
        asked = true;
        void call(alice, "start_async_agent_task", { kind: "hello" })
          .then((s) => aliceNew = String(s.task_id))
          .then(() => call(bob, "start_async_agent_task", { kind: "hello" }))
          .then((s) => bobNew = String(s.task_id));
      }
      return got.some((e) => e.event === "server") &&
        got.some((e) => e.event === "change" && bobNew !== "" && e.data.includes(bobNew));
    });
    assert.notEqual(aliceNew, "");
    const text = events.map((e) => e.data).join("\n");
    for (const id of [aliceTask, aliceNew]) {
      assert.ok(!text.includes(id), `${id} not on the stream`);
    }
    assert.ok(!text.includes(`"pid":${alicePid}`));
    const server: ServerPanel = JSON.parse(events.find((e) => e.event === "server")!.data);
    assert.deepEqual(server.processes.map((p) => p.task_id), [bobTask]);
  });

  await t.step("the admin sees both principals' tasks with owners and cancels Bob's", async () => {
    const listed = await getJson<Listed>(`${url}/ui/api/tasks`, carolCookie);
    assert.deepEqual(listed.body.viewer, { principal: "carol", admin: true });
    const owners = new Map(listed.body.tasks.map((task) => [task.task_id, task.owner]));
    assert.equal(owners.get(aliceTask), "alice");
    assert.equal(owners.get(bobTask), "bob");
    assert.deepEqual(
      [...new Set(owners.values())].sort(),
      ["alice", "bob"],
      "every task (both principals' hello tasks too) shows its owner",
    );
    assert.equal(listed.body.tasks.length, 4);
    assert.equal(Object.values(listed.body.counts).reduce((a, b) => a + b), 4);
    const page = await getJson<{ owner: string; prompt: null }>(
      `${url}/ui/api/tasks/${aliceTask}`,
      carolCookie,
    );
    assert.equal(page.status, 200);
    assert.equal(page.body.owner, "alice");
    const cancelled = await fetch(`${url}/ui/api/tasks/${bobTask}/cancel`, {
      method: "POST",
      headers: { cookie: carolCookie, origin: url },
    });
    assert.deepEqual(await cancelled.json(), { task_id: bobTask, status: "cancelled" });
    const bobs = await call<Status>(bob, "check_task_status", { task_id: bobTask });
    assert.equal(bobs.status, "cancelled");
    assert.deepEqual(bobs.error, { code: "cancelled", message: "cancelled from the dashboard" });
  });
  await call(alice, "cancel_task", { task_id: aliceTask });
});

Deno.test("Bob's many dashboard logins and streams neither evict nor lock out Alice", async (t) => {
  await using klym = await startKlym({
    KLYM_AUTH_TOKENS: `alice:${ALICE},bob:${BOB}`,
    KLYM_UI_MAX_LOGINS_TOTAL: "66",
    KLYM_UI_MAX_STREAMS_TOTAL: "18",
  });
  const url = klym.url;
  const aliceCookies = [await uiLogin(url, ALICE), await uiLogin(url, ALICE)];
  const bobCookies: string[] = [];

  await t.step("70 logins of Bob's forget his own oldest, never Alice's", async () => {
    for (let i = 0; i < 70; i++) bobCookies.push(await uiLogin(url, BOB));
    for (const cookie of aliceCookies) {
      assert.equal((await getJson(`${url}/ui/api/tasks`, cookie)).status, 200, "Alice stays in");
    }
    // Bob keeps his newest 64 (KLYM_UI_MAX_LOGINS): his 6 oldest are logged out.
    const statuses = [];
    for (const cookie of bobCookies) {
      const response = await fetch(`${url}/ui/api/tasks`, { headers: { cookie } });
      await response.body?.cancel();
      statuses.push(response.status);
    }
    assert.deepEqual(statuses.slice(0, 6), Array(6).fill(401));
    assert.deepEqual(statuses.slice(6), Array(64).fill(200));
  });

  const open = async (cookie: string) => {
    const response = await fetch(`${url}/ui/events`, { headers: { cookie } });
    return response;
  };
  const held: Response[] = [];
  const bobCookie = bobCookies.at(-1)!;
  const aliceCookie = aliceCookies[0]!;

  await t.step(
    "Bob's 17th stream gets 503 naming his count and the knob; Alice's opens",
    async () => {
      for (let i = 0; i < 16; i++) {
        const response = await open(bobCookie);
        assert.equal(response.status, 200);
        held.push(response);
      }
      const refused = await open(bobCookie);
      assert.equal(refused.status, 503);
      assert.equal(
        (await refused.json()).error,
        'Cannot open a dashboard stream: principal "bob" has 16 open, the limit is 16 (KLYM_UI_MAX_STREAMS); close other dashboard tabs',
      );
      for (let i = 0; i < 2; i++) {
        const response = await open(aliceCookie);
        assert.equal(response.status, 200, "Alice's streams open beside Bob's 16");
        held.push(response);
      }
    },
  );

  await t.step("at the total cap Alice's next stream closes Bob's oldest instead", async () => {
    const third = await open(aliceCookie);
    assert.equal(third.status, 200);
    const bobOldest = held.shift()!;
    held.push(third);
    const text = await bobOldest.text();
    assert.match(text, /^event: hello\n/, "Bob's oldest stream ended");
    const bobMore = await open(bobCookie);
    assert.equal(bobMore.status, 503);
    assert.match(
      (await bobMore.json()).error,
      /the limit is 18 \(KLYM_UI_MAX_STREAMS_TOTAL\), and principal "bob" holds 15 of them/,
    );
  });
  for (const response of held) await response.body?.cancel();
});
