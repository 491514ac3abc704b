// deno-lint-ignore-file no-console -- a benchmark prints its figures
/**
 * Figures for Klym reaching grynya (the FastMCP graph server of tests/peers, over SSE):
 * `start` → "connected to grynya", `report` end to end, and 50 concurrent reports.
 * Run: deno task bench:grynya
 */
import type { Client } from "@modelcontextprotocol/client";
import { call, startKlym, type Status } from "../tests/helpers/klym_process.ts";
import { startFastMcpPeer } from "../tests/peers/peers.ts";
import { percentile } from "./stats.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function report(name: string, samples: number[]): void {
  const at = (p: number) => percentile(samples, p);
  console.log(
    `${name.padEnd(48)} p50 ${at(0.5).toFixed(1)} ms  p99 ${
      at(0.99).toFixed(1)
    } ms  (n=${samples.length})`,
  );
}

async function runReport(client: Client, t0: number, pollMs = 5) {
  const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
    kind: "report",
  });
  let connected: number | undefined;
  let cursor = 0;
  while (true) {
    const s = await call<Status>(client, "check_task_status", { task_id, log_cursor: cursor });
    cursor = s.next_log_cursor;
    const line = s.logs.find((l) => l.text.startsWith("connected to grynya"));
    if (line && connected === undefined) connected = Date.parse(line.time) - t0;
    if (!["queued", "running"].includes(s.status)) {
      return { status: s.status, connected: connected ?? NaN, total: performance.now() };
    }
    await sleep(pollMs);
  }
}

await using grynya = await startFastMcpPeer();
console.log(
  `Klym grynya benchmark — ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}, grynya: FastMCP over SSE`,
);
for (const spares of [0, 1]) {
  await using klym = await startKlym({
    KLYM_GRYNYA_URL: grynya.url,
    KLYM_WARM_SPARES: String(spares),
  });
  const client = await klym.connect();
  const connected: number[] = [];
  const total: number[] = [];
  // 200 samples after one warm-up: enough for a p99 that is not just the maximum.
  for (let i = 0; i <= 200; i++) {
    await sleep(spares ? 400 : 20);
    const wall = Date.now();
    const t0 = performance.now();
    const r = await runReport(client, wall);
    if (r.status !== "succeeded") throw new Error(`report ${r.status}`);
    if (i === 0) continue;
    connected.push(r.connected);
    total.push(r.total - t0);
  }
  const how = spares ? "warm spare" : "cold spawn";
  report(`start → connected to grynya (${how})`, connected);
  report(`report end to end (${how})`, total);
}
{
  await using klym = await startKlym({ KLYM_GRYNYA_URL: grynya.url, KLYM_MAX_CONCURRENT: "8" });
  const client = await klym.connect();
  const t0 = performance.now();
  const results = await Promise.all(
    Array.from({ length: 50 }, () => runReport(client, Date.now(), 100)),
  );
  const failures = results.filter((r) => r.status !== "succeeded").length;
  console.log(
    `50 concurrent reports (8 at a time): ${
      ((performance.now() - t0) / 1000).toFixed(2)
    } s in all, failures: ${failures}`,
  );
}
