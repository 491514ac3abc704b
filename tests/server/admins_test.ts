/**
 * KLYM_ADMINS through real MCP clients and the CLI: an admin's list_tasks shows every principal's
 * tasks with owners, and check_task_status and cancel_task reach any task; nobody else's do, and
 * `tasks/*` stays each session's own even for an admin.
 */
import assert from "node:assert/strict";
import { call, callError, startKlym, type Status } from "../helpers/klym_process.ts";
import { klymCli } from "../helpers/klym_cli.ts";
import { RawMcp } from "../helpers/raw_mcp.ts";
import { connectAs } from "../helpers/ui_client.ts";

const ALICE = "alice-token-0123456789abcdef";
const BOB = "bob-token-0123456789abcdef";
const CAROL = "carol-token-0123456789abcdef";

interface Listed {
  tasks: { task_id: string; owner?: string; status: string }[];
  counts: Record<string, number>;
}

Deno.test("an admin lists, reads and cancels every principal's tasks over MCP; nobody else can", async (t) => {
  await using klym = await startKlym({
    KLYM_AUTH_TOKENS: `alice:${ALICE},bob:${BOB},carol:${CAROL}`,
    KLYM_ADMINS: "carol",
  });
  await using alice = await connectAs(klym.url, ALICE);
  await using bob = await connectAs(klym.url, BOB);
  await using carol = await connectAs(klym.url, CAROL);
  const start = async (client: typeof alice) =>
    String(
      (await call(client, "start_async_agent_task", { kind: "sleep", params: { ms: 60_000 } }))
        .task_id,
    );
  const aliceTask = await start(alice);
  const bobTask = await start(bob);

  await t.step("Bob lists, reads and cancels only his own, with no owner field", async () => {
    const listed = await call<Listed>(bob, "list_tasks", {});
    assert.deepEqual(listed.tasks.map((task) => [task.task_id, task.owner]), [[
      bobTask,
      undefined,
    ]]);
    assert.equal(Object.values(listed.counts).reduce((a, b) => a + b), 1);
    const missing = await callError(bob, "check_task_status", { task_id: "t_missing" });
    const read = await callError(bob, "check_task_status", { task_id: aliceTask });
    assert.equal(read, missing.replace("t_missing", aliceTask), "like a missing task");
    assert.match(await callError(bob, "cancel_task", { task_id: aliceTask }), /No task/);
    const hers = await call<Status>(alice, "check_task_status", { task_id: aliceTask });
    assert.ok(["queued", "running"].includes(hers.status), "Alice's task goes on");
    assert.equal((hers as Status & { owner?: string }).owner, undefined);
  });

  await t.step("the admin lists both with owners and reads Alice's", async () => {
    const listed = await call<Listed>(carol, "list_tasks", {});
    assert.deepEqual(
      listed.tasks.map((task) => [task.task_id, task.owner]).sort(),
      [[aliceTask, "alice"], [bobTask, "bob"]].sort(),
    );
    assert.equal(Object.values(listed.counts).reduce((a, b) => a + b), 2);
    const hers = await call<Status & { owner: string }>(carol, "check_task_status", {
      task_id: aliceTask,
    });
    assert.equal(hers.owner, "alice");
  });

  await t.step("the CLI shows an OWNER column to the admin and none to Bob", async () => {
    const env = { KLYM_URL: klym.url };
    const admin = await klymCli(["tasks"], { ...env, KLYM_AUTH_TOKEN: CAROL });
    assert.equal(admin.code, 0, admin.stderr);
    const rows = admin.stdout.trim().split("\n");
    assert.match(rows[0]!, /^TASK\s+OWNER\s+KIND\s+STATUS\s+AGE\s+DURATION\s+PROGRESS$/);
    assert.ok(rows.some((row) => row.startsWith(aliceTask) && /\salice\s+sleep\s/.test(row)));
    assert.ok(rows.some((row) => row.startsWith(bobTask) && /\sbob\s+sleep\s/.test(row)));
    const show = await klymCli(["show", aliceTask], { ...env, KLYM_AUTH_TOKEN: CAROL });
    assert.match(show.stdout, /^owner\s+alice$/m);
    const own = await klymCli(["tasks"], { ...env, KLYM_AUTH_TOKEN: BOB });
    assert.equal(own.code, 0, own.stderr);
    assert.match(own.stdout.split("\n")[0]!, /^TASK\s+KIND\s+STATUS/);
    assert.ok(!own.stdout.includes(aliceTask));
  });

  await t.step("tasks/* stays the session's own, even for an admin", async () => {
    const raw = new RawMcp(klym.url, CAROL);
    await raw.initialize();
    const got = await raw.request("tasks/get", { taskId: aliceTask });
    assert.ok(got.error, `tasks/get of another's task is refused: ${JSON.stringify(got)}`);
    const listed = await raw.request("tasks/list");
    assert.deepEqual(listed.result!.tasks, []);
  });

  await t.step("the admin cancels Bob's task; Bob cannot cancel Alice's", async () => {
    const cancelled = await call(carol, "cancel_task", { task_id: bobTask });
    assert.deepEqual(cancelled, { task_id: bobTask, status: "cancelled" });
    const his = await call<Status>(bob, "check_task_status", { task_id: bobTask });
    assert.equal(his.status, "cancelled");
    assert.match(await callError(bob, "cancel_task", { task_id: aliceTask }), /No task/);
    await call(alice, "cancel_task", { task_id: aliceTask });
  });
});
