/**
 * The entry of a task's own process. It reads its hello and then its task on stdin, runs the task
 * in a Worker with no permissions, brokers grynya and the model for it, and reports to stdout
 * behind the channel marker. It holds the process to its memory cap and exits at once when stdin
 * closes: a host never outlives its server. After a task's clean end (see `TaskSession.end`) it
 * says `idle`, prepares a fresh Worker for the kind it just ran, and waits for its principal's
 * next task (the server keeps it for that principal only, `src/tasks/process_pool.ts`); after any
 * other end it exits. Nothing of a task outlives it here: its Worker is terminated before the next
 * one is made, and its session, output and grynya client are its own.
 */
import { HostCommand, HostHello } from "../protocol.ts";
import type { Shape } from "../shape.ts";
import { readLines } from "../lines.ts";
import { HostOutput } from "./host_output.ts";
import { startMemoryWatchdog } from "./memory_watchdog.ts";
import { TaskSession } from "./task_session.ts";
import { moduleUrlOf, PreparedWorker } from "./worker_entry.ts";

/** A command line from the server: a task's spec is the largest (params and prompt are bounded). */
const MAX_COMMAND_BYTES = 64 * 1024 * 1024;

function parseLine<T>(shape: Shape<T>, line: string): T {
  try {
    const checked = shape.check(JSON.parse(line));
    if (checked.success) return checked.data;
  } catch {
    // Not JSON.
  }
  // Only the server writes here; anything else means the server is not who we think.
  Deno.exit(3);
}

export async function runHost(): Promise<void> {
  const stdin = readLines(Deno.stdin.readable, MAX_COMMAND_BYTES);
  const first = await stdin.next();
  if (first.done) Deno.exit(0);
  const hello = parseLine(HostHello, first.value.line);
  // A compiled binary runs its hosts with every permission: drop what no task needs.
  for (const name of ["env", "run", "write", "ffi", "sys"] as const) {
    await Deno.permissions.revoke({ name });
  }
  const exit = (code = 0): never => Deno.exit(code);
  // A compiled binary's Worker imports a custom kind itself: only the runtime is made ahead.
  const inBinary = Deno.build.standalone;
  let session: TaskSession | undefined;
  // Its own thread: the task can keep this one busy (see memory_watchdog.ts). On Linux the server
  // samples the process from /proc instead (memory_sampler.ts): no isolate for it here.
  if (hello.watchdog) startMemoryWatchdog(hello.limits.memoryMb * 1024 * 1024, hello.channel);

  // The Worker for the next task, made before it arrives: the runtime alone (it holds no task
  // code) in a new host, the last kind's in a host kept for its principal.
  let prepared: PreparedWorker | undefined = new PreparedWorker(undefined);
  for await (const { line } of stdin) {
    const command = parseLine(HostCommand, line);
    switch (command.type) {
      case "start": {
        if (session) break;
        const { modulePath } = command.spec;
        const entry = inBinary ? undefined : modulePath;
        if (!prepared?.fits(entry)) {
          prepared?.terminate();
          prepared = new PreparedWorker(entry);
        }
        const out = new HostOutput(hello.channel, hello.limits.logLimitBytes);
        const current: TaskSession = session = new TaskSession(
          command.spec,
          prepared,
          out,
          hello.limits,
          {
            exit,
            idle: () => {
              if (session === current) session = undefined;
            },
            ready: () => {
              // The task's Worker is terminated: only now is the next one made.
              if (session === undefined && prepared === undefined) {
                prepared = new PreparedWorker(entry);
              }
            },
          },
        );
        prepared = undefined;
        current.start(modulePath && inBinary ? moduleUrlOf(modulePath) : undefined);
        break;
      }
      case "cancel":
        if (!session) Deno.exit(0);
        session.cancel(command.reason);
        break;
      case "llm_response":
      case "llm_error":
        session?.answer(command);
        break;
      default: {
        const _exhaustive: never = command;
        return _exhaustive;
      }
    }
  }
  // stdin closed: the server is gone or wants us gone.
  Deno.exit(0);
}

if (import.meta.main) await runHost();
