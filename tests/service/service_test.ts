/**
 * One Klym per user and machine, end to end with real clients as subprocesses: stdio clients of
 * the TypeScript SDK, the Python SDK (mcp 1.x) and langchain-mcp-adapters, each running
 * `main.ts --stdio`, a bridge to the service of its home's state folder; the CLI and the dashboard
 * on the service's HTTP address. Every test has a home (HOME, XDG_STATE_HOME) of its own.
 */
import assert from "node:assert/strict";
import { call, MAIN, OWN_SESSION, waitFinal } from "../helpers/klym_process.ts";
import { INITIALIZE } from "../helpers/raw_mcp.ts";
import {
  alive,
  processGone,
  pythonClient,
  serviceHome,
  STDIO_COMMAND,
} from "../helpers/klym_service.ts";
import { readLines } from "../../src/lines.ts";

interface Started {
  task_id: string;
}

/** The pid in the journal's owner file: the Klym that owns the state folder. */
function journalOwner(journal: string): number {
  return JSON.parse(Deno.readTextFileSync(`${journal}.owner`)).pid;
}

/** Runs `main.ts --stdio` in `env`, sends an `initialize`; the first line it answers and its exit. */
async function firstAnswer(env: Record<string, string>) {
  const child = new Deno.Command(STDIO_COMMAND[0]!, {
    args: STDIO_COMMAND.slice(1),
    env,
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    ...OWN_SESSION,
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(INITIALIZE) + "\n"));
  let answer: { id: number; error: { code: number; message: string } } | undefined;
  for await (const { line } of readLines(child.stdout, 1 << 20)) {
    answer = JSON.parse(line);
    break;
  }
  await writer.close();
  const [status, stderr] = await Promise.all([child.status, new Response(child.stderr).text()]);
  return { answer, code: status.code, stderr };
}

Deno.test("two stdio clients at once, the CLI and the dashboard see the same tasks of one service", async () => {
  await using home = await serviceHome();
  const a = await home.connect();
  const b = await home.connect();
  const { task_id } = await call<Started>(a, "start_async_agent_task", {
    kind: "hello",
    prompt: "from a",
  });
  // Started by one assistant, finished and read by another.
  const seen = await waitFinal(b, task_id);
  assert.equal(seen.status, "succeeded");
  assert.deepEqual((seen.result as { prompt: string }).prompt, "from a");
  const listed = await call<{ tasks: { task_id: string }[] }>(a, "list_tasks", {});
  assert.ok(listed.tasks.some((t) => t.task_id === task_id));

  const { url, pid } = await home.hello();
  assert.ok(url, "the service serves HTTP");
  assert.equal(journalOwner(home.paths.journal), pid, "the service owns the journal");
  const cli = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "tasks", "--json", "--url", url],
    env: home.env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
    ...OWN_SESSION,
  }).output();
  assert.equal(cli.code, 0, new TextDecoder().decode(cli.stderr));
  assert.match(new TextDecoder().decode(cli.stdout), new RegExp(task_id));
  // The dashboard, as a browser opens it: the page sets the session cookie its API wants.
  const page = await fetch(`${url}/ui`);
  await page.body?.cancel();
  const cookie = page.headers.get("set-cookie")?.split(";")[0] ?? "";
  const dashboard = await fetch(`${url}/ui/api/tasks`, { headers: { cookie } });
  const body = await dashboard.json() as { tasks: { id?: string; task_id?: string }[] };
  assert.ok(JSON.stringify(body.tasks).includes(task_id), "the dashboard lists the task");
});

Deno.test("a task outlives the client that started it; another client reads its result", async () => {
  await using home = await serviceHome();
  const reader = await home.connect();
  // A Python client starts a long task and exits at once, ending its session and its bridge.
  const { task_id } = await pythonClient(
    home,
    "start",
    "sleep",
    JSON.stringify({ ms: 6000, tick_ms: 200 }),
  ) as { task_id: string };
  const after = await call<{ status: string }>(reader, "check_task_status", { task_id });
  assert.equal(after.status, "running", "the task runs on after its client left");
  const final = await waitFinal(reader, task_id);
  assert.equal(final.status, "succeeded");
  assert.deepEqual((final.result as { slept: number }).slept, 6000);
  // And a client started later, in another SDK, reads it too.
  const later = await pythonClient(home, "wait", task_id);
  assert.equal(later.status, "succeeded");
});

Deno.test("the service exits by itself after its idle time with no client and no task", async () => {
  // 3 s: the client's bridge (a process start, slow on a loaded machine) must arrive before the
  // service's idle time runs out, or the bridge starts a service of its own.
  await using home = await serviceHome({ KLYM_SERVICE_IDLE_S: "3" });
  // The service as a bridge starts it, but as this test's child, so its exit is an event here.
  const service = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-worker-options", MAIN, "--service"],
    env: home.env,
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "null",
    ...OWN_SESSION,
  }).spawn();
  const exited = service.status;
  // The client's bridge must find this service, not start one of its own: wait until it answers.
  await home.serviceUp();
  const client = await home.connect();
  const { pid } = await home.hello();
  assert.equal(pid, service.pid, "the client's bridge uses the running service");
  // A task longer than the idle time keeps the service, with its client gone.
  const { task_id } = await call<Started>(client, "start_async_agent_task", {
    kind: "sleep",
    params: { ms: 4000, tick_ms: 500 },
  });
  await client.close();
  const status = await exited;
  assert.equal(status.code, 0);
  const log = Deno.readTextFileSync(home.paths.log);
  assert.match(log, /No client and no task for 3 s: stopping/);
  assert.match(log, new RegExp(`"taskId":"${task_id}","kind":"sleep","status":"succeeded"`));
  assert.equal(alive(service.pid), false);
  assert.throws(() => Deno.lstatSync(home.paths.socket), Deno.errors.NotFound, "socket removed");
});

Deno.test("a foreground Klym started while the service runs says where that service is", async () => {
  await using home = await serviceHome();
  const client = await home.connect();
  await call(client, "list_tasks", {});
  const { pid, url } = await home.hello();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-worker-options", MAIN],
    env: home.env,
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
    ...OWN_SESSION,
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 2);
  assert.match(stderr, new RegExp(`another Klym \\(pid ${pid}, running since`));
  assert.ok(stderr.includes(`as the service (pid ${pid}): its dashboard is at ${url}/ui`), stderr);
  assert.match(stderr, new RegExp(`kill ${pid}`));
});

Deno.test("a client with another HOME cannot reach the first one's service", async () => {
  await using first = await serviceHome();
  await using second = await serviceHome();
  const a = await first.connect();
  const { task_id } = await call<Started>(a, "start_async_agent_task", { kind: "hello" });
  const b = await second.connect();
  const listed = await call<{ tasks: { task_id: string }[] }>(b, "list_tasks", {});
  assert.equal(listed.tasks.length, 0, "the other home's service has none of the first's tasks");
  const unknown = await b.callTool({ name: "check_task_status", arguments: { task_id } });
  assert.equal(unknown.isError, true);
  assert.notEqual((await first.hello()).pid, (await second.hello()).pid);
  // The socket is the user's alone: its folder 0700, the socket 0600.
  assert.equal(Deno.statSync(first.paths.folder).mode! & 0o777, 0o700);
  assert.equal(Deno.lstatSync(first.paths.socket).mode! & 0o777, 0o600);
});

Deno.test("a state folder open to other users is refused, and the client is told why", async () => {
  await using home = await serviceHome();
  Deno.mkdirSync(home.paths.folder, { recursive: true });
  Deno.chmodSync(home.paths.folder, 0o755);
  const { answer, code, stderr } = await firstAnswer(home.env);
  assert.equal(code, 1);
  assert.equal(answer?.id, INITIALIZE.id);
  assert.equal(answer?.error.code, -32000);
  assert.match(answer!.error.message, /is open to other users \(mode 0755\); make it 0700/);
  assert.match(answer!.error.message, /--standalone/);
  assert.match(stderr, /open to other users/);
  assert.throws(() => Deno.lstatSync(home.paths.socket), Deno.errors.NotFound);
});

Deno.test("a journal held by a Klym that serves no bridges: the client is told, within KLYM_SERVICE_START_S", async () => {
  await using home = await serviceHome();
  // A standalone Klym on the free journal takes it, and serves no bridges.
  const alone = await home.connect("--standalone");
  await call(alone, "list_tasks", {});
  const holder = journalOwner(home.paths.journal);
  const { answer, code } = await firstAnswer({ ...home.env, KLYM_SERVICE_START_S: "2" });
  assert.equal(code, 1);
  assert.equal(answer?.id, INITIALIZE.id);
  assert.equal(answer?.error.code, -32000);
  assert.match(answer!.error.message, /within 2 s \(KLYM_SERVICE_START_S\)/);
  assert.equal(journalOwner(home.paths.journal), holder, "the standalone Klym keeps its journal");
  assert.throws(() => Deno.lstatSync(home.paths.socket), Deno.errors.NotFound);
});

Deno.test("a service killed with SIGKILL is replaced cleanly by the next stdio client", async () => {
  await using home = await serviceHome();
  const a = await home.connect();
  const { task_id } = await call<Started>(a, "start_async_agent_task", { kind: "hello" });
  assert.equal((await waitFinal(a, task_id)).status, "succeeded");
  const killed = await home.stopService("SIGKILL");
  await a.close().catch(() => {});
  // What the killed service left: its socket and the journal's owner file.
  assert.equal(Deno.lstatSync(home.paths.socket).isSocket, true);
  assert.equal(journalOwner(home.paths.journal), killed);
  const b = await home.connect();
  const { pid } = await home.hello();
  assert.notEqual(pid, killed);
  assert.equal(journalOwner(home.paths.journal), pid);
  // The journal came through: the task the killed service ran is there.
  const status = await call<{ status: string }>(b, "check_task_status", { task_id });
  assert.equal(status.status, "succeeded");
});

Deno.test("two stdio clients started in the same instant share one service", async () => {
  await using home = await serviceHome();
  const [a, b] = await Promise.all([home.connect(), home.connect()]);
  const { task_id } = await call<Started>(a, "start_async_agent_task", { kind: "hello" });
  assert.equal((await waitFinal(b, task_id)).status, "succeeded");
  const { pid } = await home.hello();
  assert.equal(journalOwner(home.paths.journal), pid);
  // A service that lost the race for the journal exits; only one is left serving.
  const log = Deno.readTextFileSync(home.paths.log);
  const starts = [...log.matchAll(/starting as the service \(pid (\d+)\)/g)].map((m) =>
    Number(m[1])
  );
  assert.ok(starts.includes(pid));
  for (const other of starts.filter((p) => p !== pid)) await processGone(other);
});

Deno.test("langchain-mcp-adapters' default get_tools() over stdio runs a task to its result", async () => {
  await using home = await serviceHome();
  // Every tool call is a new stdio session (a new bridge), as get_tools() does by default.
  const seen = await pythonClient(
    home,
    "langchain",
    "sleep",
    JSON.stringify({ ms: 1500, tick_ms: 300 }),
  ) as { status: string; result: { slept: number }; polls: number; tools: string[] };
  assert.equal(seen.status, "succeeded");
  assert.equal(seen.result.slept, 1500);
  assert.ok(seen.tools.includes("start_async_agent_task"));
});

Deno.test("--stdio --standalone serves its client in-process, in memory when the service holds the journal", async () => {
  await using home = await serviceHome();
  const shared = await home.connect();
  const { task_id } = await call<Started>(shared, "start_async_agent_task", { kind: "hello" });
  const { pid } = await home.hello();
  const alone = await home.connect("--standalone");
  const listed = await call<{ tasks: { task_id: string }[] }>(alone, "list_tasks", {});
  assert.deepEqual(listed.tasks, [], "a private Klym with a journal of its own");
  const own = await call<Started>(alone, "start_async_agent_task", { kind: "hello" });
  assert.equal((await waitFinal(alone, own.task_id)).status, "succeeded");
  assert.equal(journalOwner(home.paths.journal), pid, "the service keeps the journal");
  const unknown = await shared.callTool({
    name: "check_task_status",
    arguments: { task_id: own.task_id },
  });
  assert.equal(unknown.isError, true, "the standalone's task is not the service's");
  assert.equal((await waitFinal(shared, task_id)).status, "succeeded");
});
