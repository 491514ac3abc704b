import assert from "node:assert/strict";
import { type After, CancelAck } from "../../src/host/cancel_ack.ts";

/** A bound the test passes by hand: `pass()` is the moment KLYM_CANCEL_ACK_MS runs out. */
class ManualBound {
  readonly ms: number[] = [];
  running = false;
  #fire: (() => void) | undefined;
  readonly after: After = (ms, fn) => {
    this.ms.push(ms);
    this.running = true;
    this.#fire = fn;
    return () => this.running = false;
  };
  pass(): void {
    if (!this.running) return;
    this.running = false;
    this.#fire!();
  }
}

Deno.test("a Worker that echoes its cancel within the bound is not ended: it keeps its grace", () => {
  const bound = new ManualBound();
  let ended = 0;
  using ack = new CancelAck(50, () => ended++, { after: bound.after });
  const nonce = ack.ask();
  assert.deepEqual(bound.ms, [50], "the bound is KLYM_CANCEL_ACK_MS, started by the cancel");
  ack.answer(nonce); // the last moment before the bound passes
  bound.pass();
  assert.equal(ended, 0);
});

Deno.test("a Worker that does not echo its cancel within the bound is ended, once", () => {
  const bound = new ManualBound();
  let ended = 0;
  using ack = new CancelAck(50, () => ended++, { after: bound.after });
  const nonce = ack.ask();
  assert.equal(ack.ask(), nonce, "a second cancel reuses the nonce");
  assert.deepEqual(bound.ms, [50], "and does not start the bound again");
  bound.pass();
  assert.equal(ended, 1);
  ack.answer(nonce); // too late: the process is already ending
  bound.pass();
  assert.equal(ended, 1);
});

Deno.test("only the cancel's own nonce counts: an echo sent ahead of time or guessed is ignored", () => {
  const bound = new ManualBound();
  let ended = 0;
  using ack = new CancelAck(50, () => ended++, { after: bound.after });
  ack.answer("sent before any cancel");
  const nonce = ack.ask();
  assert.match(nonce, /^[0-9a-f-]{36}$/, "a random UUID, fresh for this task");
  ack.answer("00000000-0000-4000-8000-000000000000");
  bound.pass();
  assert.equal(ended, 1);
});

Deno.test("a task that ends by itself while its echo is awaited stops the bound without a verdict", () => {
  const bound = new ManualBound();
  let ended = 0;
  const ack = new CancelAck(50, () => ended++, { after: bound.after });
  ack.ask();
  ack[Symbol.dispose]();
  assert.equal(bound.running, false);
  bound.pass();
  assert.equal(ended, 0);
});
