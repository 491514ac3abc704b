/**
 * How quickly a server answers while its tasks do their worst, judged against the same server's
 * answers a moment before with nothing running: a machine loaded by something else slows both
 * alike, while a server starved by its own tasks is slow only under them.
 */
import assert from "node:assert/strict";
import type { Client } from "@modelcontextprotocol/client";
import { call } from "./klym_process.ts";

/** The times (ms) of `count` list_tasks calls made one after another, sorted. */
export async function answerTimes(client: Client, count: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    await call(client, "list_tasks", {});
    out.push(performance.now() - t0);
  }
  return out.sort((a, b) => a - b);
}

const median = (sorted: number[]) => sorted[Math.floor(sorted.length / 2)]!;

/**
 * Fails when the answers under load (`busy`) are slower than `limits` allow on a quiet machine,
 * each limit widened by four times the idle answers' figure (`idle`), so that only a slowdown
 * the server's own tasks cause fails.
 */
export function assertAnswersKeptUp(
  idle: number[],
  busy: number[],
  limits: { medianMs: number; slowestMs: number },
  what: string,
): void {
  const show = (ms: number) => `${ms.toFixed(0)} ms`;
  const medianLimit = limits.medianMs + 4 * median(idle);
  const slowestLimit = limits.slowestMs + 4 * idle.at(-1)!;
  assert.ok(
    median(busy) < medianLimit,
    `median answer ${show(median(busy))} ${what}, over ${show(medianLimit)} (idle ${
      show(median(idle))
    })`,
  );
  assert.ok(
    busy.at(-1)! < slowestLimit,
    `slowest answer ${show(busy.at(-1)!)} ${what}, over ${show(slowestLimit)} (idle ${
      show(idle.at(-1)!)
    })`,
  );
}
