/**
 * `deno compile` cannot run here (it downloads its runtime), so these tests guard what a compiled
 * binary relies on: every Worker script is passed with --include, and the binary's task-host mode
 * (the binary re-invoking itself) runs tasks with scoped permissions even when it has them all.
 */
import assert from "node:assert/strict";
import { readLines } from "../src/lines.ts";
import { loadConfig } from "../src/config.ts";
import { processOptions } from "../src/tasks/task_process.ts";
import { FIXTURE_TASKS, OWN_SESSION, REPO } from "./helpers/klym_process.ts";
import { hostSpec } from "./helpers/host_spec.ts";

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) out.push(...sourceFiles(path));
    else if (entry.name.endsWith(".ts")) out.push(path);
  }
  return out;
}

Deno.test("every Worker script in src/ is included in the compile task and the release workflow", () => {
  const compile = JSON.parse(Deno.readTextFileSync(`${REPO}deno.json`)).tasks.compile as string;
  const release = Deno.readTextFileSync(`${REPO}.github/workflows/release.yml`);
  const workers: string[] = [];
  for (const file of sourceFiles(`${REPO}src`)) {
    const text = Deno.readTextFileSync(file);
    for (const match of text.matchAll(/new Worker\(\s*new URL\("([^"]+)", import\.meta\.url\)/g)) {
      const url = new URL(match[1]!, `file://${file}`);
      workers.push(url.pathname.slice(REPO.length));
    }
  }
  assert.ok(workers.length > 0, "found the task worker");
  for (const worker of workers) {
    assert.ok(compile.includes(`--include ${worker}`), `deno.json compile task includes ${worker}`);
    assert.ok(release.includes(`--include ${worker}`), `release workflow includes ${worker}`);
  }
});

Deno.test("src/ and main.ts import only what the compiler can see", () => {
  for (const file of [...sourceFiles(`${REPO}src`), `${REPO}main.ts`]) {
    // A dynamic import of a string literal is in the compiled graph (it is loaded lazily to save
    // memory); one of a computed specifier is not.
    const dynamic = Deno.readTextFileSync(file).split("\n").map((l) => l.trim())
      .filter((l) => /\bimport\(/.test(l) && !/^(\/\/|\/\*|\*)/.test(l))
      .filter((l) => !/\bimport\("[^"]+"\)/.test(l));
    // The one computed import loads a user's custom kind from KLYM_TASKS_DIR at run time.
    const allowed = file.endsWith("src/worker/task_worker.ts")
      ? ["if (moduleUrl) provideKind(await import(moduleUrl));"]
      : [];
    assert.deepEqual(dynamic, allowed, file);
  }
});

Deno.test("main.ts --task-host scopes the task's permissions even in a process that has them all", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-worker-options", `${REPO}main.ts`, "--task-host"],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
    ...OWN_SESSION,
  }).spawn();
  const channel = "@@test-channel@@";
  const writer = child.stdin.getWriter();
  const send = (m: unknown) => writer.write(new TextEncoder().encode(JSON.stringify(m) + "\n"));
  const config = loadConfig({}, []);
  const { grynyaUrl: _url, kindsDir: _dir, ...limits } = processOptions(config, undefined);
  await send({ channel, limits, watchdog: true });
  await send({
    type: "start",
    spec: hostSpec(config, "snoop", `${FIXTURE_TASKS}snoop.ts`, {
      other_url: "http://127.0.0.1:8001/",
    }),
  });
  const events = [];
  for await (const { line } of readLines(child.stdout, 1 << 20)) {
    if (line.startsWith(channel)) events.push(JSON.parse(line.slice(channel.length)));
    // A task that ended cleanly leaves its host idle for the next: closing stdin ends it.
    if (events.at(-1)?.type === "idle") await writer.close().catch(() => {});
  }
  await writer.close().catch(() => {});
  assert.equal((await child.status).code, 0);
  assert.deepEqual(events.map((e) => e.type), ["running", "result", "idle"]);
  for (const [what, how] of Object.entries(JSON.parse(events[1].json) as Record<string, string>)) {
    assert.match(how, /^NotCapable/, `${what}: ${how}`);
  }
});
