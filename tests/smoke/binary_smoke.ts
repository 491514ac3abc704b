/**
 * Smoke test of a Klym build, run against a compiled binary or any command that starts Klym:
 *
 *   deno run -A tests/smoke/binary_smoke.ts dist/klym
 *   deno run -A tests/smoke/binary_smoke.ts --expect-version=1.2.3 dist/klym.exe
 *   deno run -A tests/smoke/binary_smoke.ts deno run -A --unstable-worker-options main.ts
 *
 * It checks `--version` and a refused configuration, then starts Klym on a free port and, through
 * `GET /healthz` and an MCP client over Streamable HTTP: a built-in kind (`report`, with grynya
 * down, must fail `grynya_unreachable`), the `NO_MODEL` refusal of `agent`, a custom kind written
 * as TypeScript into a fresh tasks folder at run time, cancelling a CPU loop, and a task denied a
 * read outside its folder. It also records, without judging, what `import()` of files outside the
 * tasks folder does, the caveat the README documents for binaries. Exits 1 if any check fails.
 */
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { Client } from "@modelcontextprotocol/client";
import { readLines } from "../../src/lines.ts";
import { call, callError, type Status, waitFinal } from "../helpers/klym_process.ts";
import { freePort } from "../peers/peers.ts";

const encoder = new TextEncoder();
const say = (text: string) => Deno.stdout.writeSync(encoder.encode(`${text}\n`));

const expectVersion = Deno.args.find((a) => a.startsWith("--expect-version="))?.split("=")[1];
const command = Deno.args.filter((a) => !a.startsWith("--expect-version="));
if (command.length === 0) {
  say("usage: binary_smoke.ts [--expect-version=x.y.z] <klym binary | command prefix…>");
  Deno.exit(2);
}
const [given, ...prefix] = command as [string, ...string[]];
// A path to a binary ("dist/klym.exe") is made absolute; a bare name ("deno") is found on PATH.
const program = /[\\/]/.test(given) ? Deno.realPathSync(given) : given;

let failures = 0;
async function check(name: string, run: () => Promise<string | void>): Promise<void> {
  const started = performance.now();
  try {
    const detail = await run();
    say(
      `ok    ${name} (${Math.round(performance.now() - started)} ms)${detail ? `: ${detail}` : ""}`,
    );
  } catch (error) {
    failures++;
    say(`FAIL  ${name}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

function expect(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}

/** The caller's environment without any KLYM_* variable (Klym refuses unknown ones), plus `extra`. */
function environment(extra: Record<string, string>): Record<string, string> {
  const env = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([name]) => !name.toUpperCase().startsWith("KLYM_")),
  );
  return { ...env, ...extra };
}

async function runOnce(args: string[], env: Record<string, string>) {
  const out = await new Deno.Command(program, {
    args: [...prefix, ...args],
    env: environment(env),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

// Files the tasks will be given, written now: TypeScript the binary never saw at compile time.
const tasksDir = Deno.makeTempDirSync({ prefix: "klym-smoke-tasks-" });
// The journal of this run only: never the user's own state folder (one Klym per journal file).
const stateDir = Deno.makeTempDirSync({ prefix: "klym-smoke-state-" });
const outsideDir = Deno.makeTempDirSync({ prefix: "klym-smoke-outside-" });
const secret = `klym-smoke-secret-${crypto.randomUUID()}`;
const secretPath = join(outsideDir, "secret.txt");
Deno.writeTextFileSync(secretPath, secret);
const outsideTs = join(outsideDir, "outside_module.ts");
Deno.writeTextFileSync(outsideTs, `export const value: string = ${JSON.stringify(secret)};\n`);
const outsideJson = join(outsideDir, "outside_data.json");
Deno.writeTextFileSync(outsideJson, JSON.stringify({ secret }));

function join(dir: string, name: string): string {
  return `${dir}${dir.endsWith("/") || dir.endsWith("\\") ? "" : "/"}${name}`;
}
function fileUrl(path: string): string {
  const normal = path.replaceAll("\\", "/");
  return new URL(`file://${normal.startsWith("/") ? "" : "/"}${normal}`).href;
}

const KINDS: Record<string, string> = {
  smoke_echo: `
interface Ctx { prompt?: string; progress(done: number, total?: number, message?: string): void }
const greeting: string = "typed";
export default function (ctx: Ctx): { echo: string | undefined; greeting: string } {
  ctx.progress(1, 1, "echoed");
  console.log("echo", ctx.prompt);
  return { echo: ctx.prompt, greeting };
}
`,
  smoke_spin: `
export default function (): never {
  console.log("spinning");
  while (true) {
    // burn
  }
}
`,
  smoke_read: `
export default function (ctx: { params: { path: string } }): string {
  try {
    return "allowed: " + Deno.readTextFileSync(ctx.params.path);
  } catch (e) {
    return \`\${(e as Error).name}: \${(e as Error).message}\`.slice(0, 200);
  }
}
`,
  smoke_import: `
export default async function (ctx: { params: { ts_url: string; json_url: string } }) {
  const outcome: Record<string, string> = {};
  try {
    const mod = await import(ctx.params.ts_url);
    outcome.ts = "loaded: " + String(mod.value);
  } catch (e) {
    outcome.ts = \`\${(e as Error).name}: \${(e as Error).message}\`.slice(0, 200);
  }
  try {
    const mod = await import(ctx.params.json_url, { with: { type: "json" } });
    outcome.json = "loaded: " + JSON.stringify(mod.default);
  } catch (e) {
    outcome.json = \`\${(e as Error).name}: \${(e as Error).message}\`.slice(0, 200);
  }
  return outcome;
}
`,
};
for (const [kind, source] of Object.entries(KINDS)) {
  Deno.writeTextFileSync(join(tasksDir, `${kind}.ts`), source);
}

say(`klym smoke test of: ${command.join(" ")}`);

await check("--version prints klym <version> and exits 0", async () => {
  const out = await runOnce(["--version"], {});
  expect(out.code === 0, `exit ${out.code}, stderr: ${out.stderr}`);
  const match = out.stdout.match(/^klym (\S+)\r?\n$/);
  expect(match, `stdout ${JSON.stringify(out.stdout)}`);
  if (expectVersion) {
    expect(match[1] === expectVersion, `version ${match[1]}, not ${expectVersion}`);
  }
  return out.stdout.trim();
});

await check("a bad value stops Klym with exit 2 naming the variable", async () => {
  const out = await runOnce(["--port", "0"], { KLYM_MAX_CONCURENT: "2" });
  expect(out.code === 2, `exit ${out.code}, stderr: ${out.stderr}`);
  expect(/KLYM_MAX_CONCURENT.*KLYM_MAX_CONCURRENT/.test(out.stderr), `stderr: ${out.stderr}`);
});

const grynyaUrl = `http://127.0.0.1:${freePort()}/sse`; // nothing listens there
const child = new Deno.Command(program, {
  args: [...prefix, "--port", "0"],
  env: environment({
    KLYM_TASKS_DIR: tasksDir,
    KLYM_STATE: `${stateDir}/klym.db`,
    KLYM_GRYNYA_URL: grynyaUrl,
    KLYM_GRYNYA_CONNECT_TIMEOUT_MS: "3000",
    KLYM_GRYNYA_RECONNECTS: "0",
    // One slot: a task after the cancelled CPU loop can only start once its process is gone.
    KLYM_MAX_CONCURRENT: "1",
    KLYM_LOG_LEVEL: "info",
  }),
  clearEnv: true,
  stdin: "null",
  stdout: "null",
  stderr: "piped",
}).spawn();
const logs: string[] = [];
const { promise: listening, resolve: onUrl, reject: onEnd } = Promise.withResolvers<string>();
const pump = (async () => {
  for await (const { line } of readLines(child.stderr, 1 << 20)) {
    logs.push(line);
    if (!line.includes("Serving MCP at")) continue;
    try {
      const url = JSON.parse(line).properties?.url;
      if (typeof url === "string") onUrl(url);
    } catch {
      // Not a JSON line: keep reading.
    }
  }
  onEnd(new Error("Klym exited before it logged its URL"));
})();
const startTimer = setTimeout(() => onEnd(new Error("no URL logged within 60 s")), 60_000);

let client: Client | undefined;
try {
  const url = await listening.finally(() => clearTimeout(startTimer));
  say(`ok    started, serving at ${url}`);

  await check("GET /healthz answers ok", async () => {
    const response = await fetch(`${url}/healthz`);
    const body = await response.json();
    expect(
      response.status === 200 && body.ok === true,
      `${response.status} ${JSON.stringify(body)}`,
    );
    return JSON.stringify(body);
  });

  client = new Client({ name: "klym-smoke", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp`)));
  const c = client;

  await check("the seven tools are listed", async () => {
    const names = (await c.listTools()).tools.map((t) => t.name).sort().join(",");
    expect(
      names ===
        "cancel_task,check_task_status,list_models,list_tasks,llm_generate,run_task,start_async_agent_task",
      names,
    );
  });

  await check(
    "built-in kind report runs and fails grynya_unreachable with grynya down",
    async () => {
      const { task_id } = await call<{ task_id: string }>(c, "start_async_agent_task", {
        kind: "report",
      });
      const final = await waitFinal(c, task_id, 60_000);
      expect(final.status === "failed", `status ${final.status} ${JSON.stringify(final.error)}`);
      expect(final.error?.code === "grynya_unreachable", JSON.stringify(final.error));
      return final.error.message.slice(0, 120);
    },
  );

  await check("agent with no model and no client sampling is refused NO_MODEL", async () => {
    const text = await callError(c, "start_async_agent_task", { kind: "agent", prompt: "hi" });
    expect(text.startsWith("NO_MODEL:"), text);
  });

  await check("a custom TypeScript kind written at run time loads and runs", async () => {
    const { task_id } = await call<{ task_id: string }>(c, "start_async_agent_task", {
      kind: "smoke_echo",
      prompt: "hello",
    });
    const final = await waitFinal(c, task_id, 60_000);
    expect(final.status === "succeeded", `${final.status} ${JSON.stringify(final.error)}`);
    expect(
      JSON.stringify(final.result) === JSON.stringify({ echo: "hello", greeting: "typed" }),
      JSON.stringify(final.result),
    );
    expect(final.allLogs.some((l) => l.text === "echo hello"), JSON.stringify(final.allLogs));
  });

  await check("cancel ends a CPU loop, and its process is gone", async () => {
    const { task_id } = await call<{ task_id: string }>(c, "start_async_agent_task", {
      kind: "smoke_spin",
    });
    const deadline = Date.now() + 60_000;
    let status: Status;
    do {
      status = await call<Status>(c, "check_task_status", { task_id });
      if (status.logs.some((l) => l.text === "spinning")) break;
      await new Promise((r) => setTimeout(r, 50));
    } while (Date.now() < deadline);
    expect(status.status === "running", `never ran: ${JSON.stringify(status)}`);
    const cancelAt = performance.now();
    const cancelled = await call<{ status: string }>(c, "cancel_task", { task_id });
    expect(cancelled.status === "cancelled", JSON.stringify(cancelled));
    const final = await waitFinal(c, task_id, 30_000);
    expect(final.status === "cancelled", final.status);
    expect(final.error?.code === "cancelled", JSON.stringify(final.error));
    // With one slot, the next task starts only when the spinning process has exited.
    const next = await call<{ task_id: string }>(c, "start_async_agent_task", {
      kind: "smoke_echo",
      prompt: "after",
    });
    const after = await waitFinal(c, next.task_id, 30_000);
    expect(after.status === "succeeded", `next task ${after.status}`);
    const ms = Math.round(performance.now() - cancelAt);
    expect(ms < 20_000, `the next task finished ${ms} ms after cancel`);
    return `next task done ${ms} ms after cancel`;
  });

  await check("a task cannot read a file outside its folder", async () => {
    const { task_id } = await call<{ task_id: string }>(c, "start_async_agent_task", {
      kind: "smoke_read",
      params: { path: secretPath },
    });
    const final = await waitFinal(c, task_id, 60_000);
    expect(final.status === "succeeded", `${final.status} ${JSON.stringify(final.error)}`);
    const outcome = String(final.result);
    expect(!outcome.includes(secret), "the task read the file");
    expect(/NotCapable|PermissionDenied/.test(outcome), outcome);
    return outcome.slice(0, 100);
  });

  await check(
    "record: import() of files outside the tasks folder (documented caveat)",
    async () => {
      const { task_id } = await call<{ task_id: string }>(c, "start_async_agent_task", {
        kind: "smoke_import",
        params: { ts_url: fileUrl(outsideTs), json_url: fileUrl(outsideJson) },
      });
      const final = await waitFinal(c, task_id, 60_000);
      const outcome = final.status === "succeeded"
        ? final.result as Record<string, string>
        : { task: `${final.status} ${JSON.stringify(final.error)}` };
      for (const [what, how] of Object.entries(outcome)) {
        const leaked = how.includes(secret) ? " [the file's content reached the task]" : "";
        say(`      import() of an outside .${what}: ${how.replace(secret, "<secret>")}${leaked}`);
      }
    },
  );

  await check("healthz counts the tasks", async () => {
    const body = await (await fetch(`${url}/healthz`)).json();
    expect(body.tasks?.succeeded >= 3 && body.tasks?.cancelled >= 1, JSON.stringify(body));
    return JSON.stringify(body.tasks);
  });
} catch (error) {
  failures++;
  say(`FAIL  ${error instanceof Error ? error.message : String(error)}`);
} finally {
  await client?.close().catch(() => {});
  const stopped = Date.now();
  try {
    child.kill(Deno.build.os === "windows" ? "SIGKILL" : "SIGTERM");
  } catch {
    // Already gone.
  }
  const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  const status = await child.status;
  clearTimeout(killer);
  await pump.catch(() => {});
  if (Deno.build.os !== "windows") {
    if (status.code === 0) say(`ok    stopped on SIGTERM in ${Date.now() - stopped} ms`);
    else {
      failures++;
      say(`FAIL  exit ${status.code} (signal ${status.signal}) after SIGTERM`);
    }
  }
  if (failures) say(`--- Klym's log (last 60 lines) ---\n${logs.slice(-60).join("\n")}`);
  Deno.removeSync(tasksDir, { recursive: true });
  Deno.removeSync(outsideDir, { recursive: true });
  Deno.removeSync(stateDir, { recursive: true });
}
say(failures ? `${failures} check(s) failed` : "all checks passed");
Deno.exit(failures ? 1 : 0);
