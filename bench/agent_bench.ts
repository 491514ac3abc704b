// deno-lint-ignore-file no-console -- a benchmark prints its figures
/**
 * Figures for the agent loop with a scripted model that answers at once and the FastMCP grynya:
 * Klym's own cost per step (relay, tool call plumbing, logs) and 100 agents running at once.
 * Run: deno task bench:agent
 */
import { Client, SSEClientTransport } from "@modelcontextprotocol/client";
import { call, childPids, startKlym, type Status } from "../tests/helpers/klym_process.ts";
import { startScriptedModel } from "../tests/helpers/scripted_openai.ts";
import { startFastMcpPeer } from "../tests/peers/peers.ts";
import { percentile } from "./stats.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => percentile(xs, 0.5);
const p99 = (xs: number[]) => percentile(xs, 0.99);

function rssMb(pid: number): number {
  return Number(Deno.readTextFileSync(`/proc/${pid}/status`).match(/VmRSS:\s+(\d+) kB/)![1]) / 1024;
}

await using grynya = await startFastMcpPeer();
/** Each agent asks for `steps` create_entities calls (distinct names), then answers. */
await using model = startScriptedModel(async (request) => {
  const prompt = request.messages.find((m) => m.role === "user")!.content as string;
  const [id, steps, delayMs] = prompt.split(" ");
  const done = request.messages.filter((m) => m.role === "tool").length;
  if (Number(delayMs)) await sleep(Number(delayMs));
  if (done >= Number(steps)) return { text: `done ${id}` };
  return {
    toolCalls: [{
      name: "create_entities",
      args: { entities: [{ name: `${id}-${done}`, entityType: "bench", observations: [] }] },
    }],
  };
});

async function runAgent(client: Client, id: string, steps: number, delayMs = 0): Promise<number> {
  const t0 = performance.now();
  const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
    prompt: `${id} ${steps} ${delayMs}`,
  });
  while (true) {
    const s = await call<Status>(client, "check_task_status", { task_id, max_log_lines: 0 });
    if (s.status === "succeeded") return performance.now() - t0;
    if (s.status !== "running" && s.status !== "queued") throw new Error(JSON.stringify(s.error));
    // Polling costs CPU the task would use on 2 cores; end-to-end times are read at 10 ms grain.
    await sleep(10);
  }
}

console.log(
  `Klym agent benchmark — ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}`,
);
{
  await using klym = await startKlym({
    KLYM_GRYNYA_URL: grynya.url,
    KLYM_MODEL: "openai-compatible:bench",
    KLYM_OPENAI_COMPATIBLE_URL: model.baseUrl,
    KLYM_WARM_SPARES: "1",
  });
  const client = await klym.connect();
  const short: number[] = [];
  const long: number[] = [];
  for (let i = 0; i < 7; i++) {
    await sleep(400);
    short.push(await runAgent(client, `s${i}`, 0));
    await sleep(400);
    long.push(await runAgent(client, `l${i}`, 20));
  }
  // Per step from the task's own log times: first tool call to the final answer.
  const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
    prompt: "timed 20 0",
  });
  while (
    (await call<Status>(client, "check_task_status", { task_id, max_log_lines: 0 })).status ===
      "running"
  ) await sleep(50);
  const logs =
    (await call<Status>(client, "check_task_status", { task_id, max_log_lines: 1000 })).logs;
  const first = logs.find((l) => l.text.startsWith("step 1: model"))!;
  const last = logs.find((l) => l.text.endsWith("final answer"))!;
  const perStep = (Date.parse(last.time) - Date.parse(first.time)) / 20;
  // What a step costs outside Klym: one model round trip and one grynya call, made directly.
  const direct = new Client({ name: "bench", version: "1" });
  await direct.connect(new SSEClientTransport(new URL(grynya.url)));
  const outside: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t0 = performance.now();
    await fetch(`${model.baseUrl}/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "bench", messages: [{ role: "user", content: `d 0 0` }] }),
    }).then((r) => r.text());
    await direct.callTool({
      name: "create_entities",
      arguments: { entities: [{ name: `direct-${i}`, entityType: "bench", observations: [] }] },
    });
    outside.push(performance.now() - t0);
  }
  await direct.close();
  console.log(`agent with 0 tool steps, end to end: median ${median(short).toFixed(1)} ms`);
  console.log(`agent with 20 tool steps, end to end: median ${median(long).toFixed(1)} ms`);
  console.log(
    `per step (task log times, 20 steps): ${
      perStep.toFixed(2)
    } ms, of which model + grynya called directly: ${
      median(outside).toFixed(2)
    } ms → Klym's overhead per step ≈ ${(perStep - median(outside)).toFixed(2)} ms`,
  );
}
{
  await using klym = await startKlym({
    KLYM_GRYNYA_URL: grynya.url,
    KLYM_MODEL: "openai-compatible:bench",
    KLYM_OPENAI_COMPATIBLE_URL: model.baseUrl,
    KLYM_MAX_CONCURRENT: "100",
    KLYM_WARM_SPARES: "0",
  });
  const client = await klym.connect();
  const poller = await klym.connect();
  const checks: number[] = [];
  let peakChildren = 0;
  let peakRss = 0;
  let running = true;
  const watch = (async () => {
    while (running) {
      const t0 = performance.now();
      await call(poller, "list_tasks", { limit: 1 });
      checks.push(performance.now() - t0);
      const kids = childPids(klym.pid);
      if (kids.length > peakChildren) {
        peakChildren = kids.length;
        peakRss = kids.reduce((sum, pid) => {
          try {
            return sum + rssMb(pid);
          } catch {
            return sum;
          }
        }, 0);
      }
      await sleep(20);
    }
  })();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 100 }, (_, i) => runAgent(client, `c${i}`, 5, 300)));
  running = false;
  await watch;
  console.log(
    `100 concurrent agents (5 steps, model answering in 300 ms): ${
      ((performance.now() - t0) / 1000).toFixed(1)
    } s; ` +
      `peak ${peakChildren} task processes, ${
        (peakRss / Math.max(1, peakChildren)).toFixed(1)
      } MB RSS each; ` +
      `server RSS ${rssMb(klym.pid).toFixed(0)} MB; list_tasks meanwhile p50 ${
        median(checks).toFixed(1)
      } ms, p99 ${p99(checks).toFixed(1)} ms`,
  );
}
