import assert from "node:assert/strict";
import { cpuTicks, openCpuTime } from "../../src/tasks/cpu_time.ts";

Deno.test("cpuTicks adds utime and stime, whatever the command name holds", () => {
  const rest = "S 1 2 3 4 5 6 7 8 9 10 250 40 0 0 20 0 1 0 99";
  assert.equal(cpuTicks(`42 (deno) ${rest}`), 290);
  assert.equal(cpuTicks(`42 (a) b (c) ${rest}`), 290);
  assert.equal(cpuTicks(undefined), undefined);
  assert.equal(cpuTicks("42 (deno) S"), undefined);
});

Deno.test("openCpuTime reads a live process's CPU time, and nothing once it has ended", {
  ignore: Deno.build.os !== "linux",
}, async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "const end = performance.now() + 60_000; while (performance.now() < end);"],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const cpu = openCpuTime(child.pid)!;
  try {
    const first = cpu.readMs();
    assert.ok(first !== undefined && first >= 0);
    // It spins: its CPU time grows (read until it does, however loaded the machine).
    let now: number | undefined = first;
    while (now === first) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      now = cpu.readMs();
    }
    assert.ok(now! > first);
    child.kill("SIGKILL");
    await child.status;
    assert.equal(cpu.readMs(), undefined, "its file reads no more, whoever takes its pid");
  } finally {
    cpu.close();
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await child.status;
  }
});
