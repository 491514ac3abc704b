import assert from "node:assert/strict";
import { setPriority } from "node:os";
import { lowerPriority, restorePriority } from "../../src/tasks/sandbox_policy.ts";

/** The nice level of each thread of `pid` (Linux keeps one per thread). */
function niceOfThreads(pid: number): number[] {
  return [...Deno.readDirSync(`/proc/${pid}/task`)].map((thread) => {
    const stat = Deno.readTextFileSync(`/proc/${pid}/task/${thread.name}/stat`);
    // Fields after the command name: state is the 3rd, nice the 19th.
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
  });
}

/** A Deno process with threads of its own (its runtime's and a Worker's), once it runs. */
async function threadedChild(): Promise<Deno.ChildProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `new Worker("data:text/javascript,setInterval(() => {}, 1000)", { type: "module" });
       console.log("ready"); setInterval(() => {}, 1000);`,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  await reader.read();
  reader.releaseLock();
  await child.stdout.cancel();
  return child;
}

Deno.test({
  name:
    "a task process runs at nice 19 and a killed one is put back to normal priority, every thread",
  // Raising a priority needs root (or CAP_SYS_NICE); without it the process ends at nice 19.
  ignore: Deno.build.os !== "linux" || Deno.uid() !== 0,
  fn: async () => {
    const child = await threadedChild();
    try {
      lowerPriority(child.pid);
      assert.equal(niceOfThreads(child.pid)[0], 19, "the main thread");
      // Threads made after that inherit nice 19; these were made before: lowered one by one.
      for (const thread of Deno.readDirSync(`/proc/${child.pid}/task`)) {
        setPriority(Number(thread.name), 19);
      }
      child.kill("SIGSTOP"); // Its threads stay to be read, as a dying process's do for a moment.
      restorePriority(child.pid);
      const threads = niceOfThreads(child.pid);
      assert(threads.length > 1, `threads: ${threads}`);
      assert.deepEqual(threads, threads.map(() => 0));
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
  },
});
