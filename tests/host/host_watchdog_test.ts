/**
 * Where the server cannot sample a task process's memory (macOS, Windows, a Linux without /proc),
 * its hello tells the host to run its own watchdog thread: that path, driven here on any platform.
 */
import assert from "node:assert/strict";
import { readLines } from "../../src/lines.ts";
import { loadConfig } from "../../src/config.ts";
import { hostSpec } from "../helpers/host_spec.ts";
import { processOptions } from "../../src/tasks/task_process.ts";
import { sandboxedCommand } from "../../src/tasks/sandbox_policy.ts";
import { MEMORY_ALARM } from "../../src/memory_alarm.ts";

const HOSTILE = new URL("../fixtures/hostile/", import.meta.url).pathname;

Deno.test("a host told to watch itself raises its memory alarm once its process passes the cap", async () => {
  const config = loadConfig({ KLYM_TASK_MEMORY_MB: "128" }, []);
  const options = processOptions(config, HOSTILE);
  const { command, ...sandbox } = sandboxedCommand(options);
  const child = new Deno.Command(command, {
    ...sandbox,
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  const send = (m: unknown) => writer.write(new TextEncoder().encode(JSON.stringify(m) + "\n"));
  const channel = `\u001e${crypto.randomUUID()}\u001e`;
  const { grynyaUrl: _url, kindsDir: _dir, ...limits } = options;
  try {
    await send({ channel, limits, watchdog: true });
    await send({
      type: "start",
      spec: hostSpec(config, "hoard", `${HOSTILE}hoard.ts`, { what: "arraybuffer" }),
    });
    let alarm: number | undefined;
    for await (const { line } of readLines(child.stderr, 1 << 16)) {
      const at = line.indexOf(`${channel}${MEMORY_ALARM}`);
      if (at === -1) continue;
      alarm = Number(line.slice(at + channel.length + MEMORY_ALARM.length));
      break;
    }
    assert.ok(alarm !== undefined, "the host's watchdog raised its alarm");
    assert.ok(alarm > 128 * 1024 * 1024, `${alarm} bytes, over the 128 MB cap`);
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await writer.close().catch(() => {});
    await child.stderr.cancel().catch(() => {});
  }
});
