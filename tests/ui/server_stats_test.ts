/** The server panel's figures: /proc readings and the grynya probe. */
import assert from "node:assert/strict";
import { readProcFigures, tcpAnswers } from "../../src/ui/server_stats.ts";

Deno.test({
  name: "a process's CPU ticks and resident memory are read from /proc on Linux",
  ignore: Deno.build.os !== "linux",
  fn() {
    const before = readProcFigures(Deno.pid)!;
    let x = 0;
    const until = performance.now() + 150;
    while (performance.now() < until) x += Math.sqrt(x + 1);
    const after = readProcFigures(Deno.pid)!;
    assert.ok(before.rssBytes > 1024 * 1024, `${before.rssBytes} bytes resident`);
    assert.ok(after.ticks > before.ticks, `${before.ticks} → ${after.ticks} ticks`);
    assert.equal(readProcFigures(2 ** 22 + 7), undefined, "a missing pid gives nothing");
  },
});

Deno.test({
  name: "a process's age is read at the kernel's clock rate (USER_HZ)",
  ignore: Deno.build.os !== "linux",
  async fn() {
    const before = Date.now();
    const child = new Deno.Command("sleep", { args: ["60"] }).spawn();
    try {
      const figures = readProcFigures(child.pid)!;
      const elapsedS = (Date.now() - before) / 1000;
      // /proc counts in ticks (and /proc/uptime in hundredths): a tick of slack either way.
      const tickS = 1 / figures.ticksPerS;
      assert.ok(
        figures.ageS >= -tickS - 0.01 && figures.ageS <= elapsedS + tickS + 0.01,
        `${figures.ageS} s old at ${figures.ticksPerS} ticks/s, spawned ${elapsedS} s ago`,
      );
    } finally {
      child.kill();
      await child.status;
    }
  },
});

Deno.test("the grynya probe answers true for a listening port and false for a closed one", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const accepting = listener.accept().then((conn) => conn.close(), () => {});
  assert.equal(await tcpAnswers(`http://127.0.0.1:${port}/sse`, 1000), true);
  await accepting;
  listener.close();
  assert.equal(await tcpAnswers(`http://127.0.0.1:${port}/sse`, 1000), false);
  assert.equal(await tcpAnswers("not a url", 1000), false);
});
