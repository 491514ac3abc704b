/**
 * The entry of a task's own process. It waits on stdin for its task, runs it in a Worker with
 * scoped permissions, and relays the Worker's events to stdout behind a channel marker. It exits
 * once the task ends, and at once when stdin closes: a host never outlives its server.
 */
import { HostCommand, HostHello, TaskEvent } from "../protocol.ts";
import { readLines } from "../lines.ts";
import { isAbsolute, relative } from "node:path";

/** Deno's net permission compares names: allow exactly the host the grynya URL names. */
export function netAllowance(url: string): string {
  const u = new URL(url);
  const port = u.port || (u.protocol === "https:" ? "443" : "80");
  return `${u.hostname}:${port}`;
}

/**
 * Network to grynya only; read access to the task's module (or, for a spare, the folder it will
 * come from), which the Worker drops once the module is loaded; nothing else.
 */
export function workerPermissions(
  grynyaUrl: string,
  readable: string | undefined,
): Deno.PermissionOptionsObject {
  return {
    net: [netAllowance(grynyaUrl)],
    read: readable ? [readable] : false,
    write: false,
    env: false,
    run: false,
    ffi: false,
    sys: false,
    import: false,
  };
}

export async function runHost(): Promise<void> {
  const encoder = new TextEncoder();
  const stdin = readLines(Deno.stdin.readable, 16 * 1024 * 1024);
  const first = await stdin.next();
  if (first.done) Deno.exit(0);
  const hello = HostHello.parse(JSON.parse(first.value.line));
  // A compiled binary runs its hosts with every permission: drop what no task may inherit.
  for (const name of ["env", "run", "write", "ffi", "sys"] as const) {
    await Deno.permissions.revoke({ name });
  }

  let writes = Promise.resolve();
  const send = (event: TaskEvent) => {
    const bytes = encoder.encode(`${hello.channel}${JSON.stringify(event)}\n`);
    writes = writes.then(() => Deno.stdout.write(bytes)).then(() => {});
    return writes;
  };
  const finish = async (event: TaskEvent) => {
    await send(event);
    Deno.exit(0);
  };

  // A Worker ready before the task arrives: its module graph loads while the host waits.
  let spare: Worker | undefined = createWorker(workerPermissions(hello.grynyaUrl, hello.tasksDir));
  await send({ type: "ready" });
  let worker: Worker | undefined;
  for await (const { line } of stdin) {
    const command = HostCommand.parse(JSON.parse(line));
    if (command.type === "start" && !worker) {
      const { spec } = command;
      const fits = spec.grynya.url === hello.grynyaUrl &&
        (!spec.modulePath ||
          (hello.tasksDir !== undefined && inFolder(spec.modulePath, hello.tasksDir)));
      worker = fits && spare
        ? spare
        : createWorker(workerPermissions(spec.grynya.url, spec.modulePath));
      if (worker !== spare) spare?.terminate();
      spare = undefined;
      relay(worker, send, finish);
      worker.postMessage(command);
    } else if (command.type !== "start") {
      if (!worker) Deno.exit(0);
      worker.postMessage(command);
    }
  }
  // stdin closed: the server is gone or wants us gone.
  Deno.exit(0);
}

function inFolder(path: string, folder: string): boolean {
  const rel = relative(folder, path);
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel);
}

function createWorker(permissions: Deno.PermissionOptionsObject): Worker {
  return new Worker(new URL("./task_worker.ts", import.meta.url), {
    type: "module",
    deno: { permissions },
  });
}

function relay(
  worker: Worker,
  send: (event: TaskEvent) => Promise<void>,
  finish: (event: TaskEvent) => Promise<void>,
): void {
  worker.onmessage = (e: MessageEvent) => {
    const parsed = TaskEvent.safeParse(e.data);
    if (!parsed.success) {
      void finish({
        type: "failure",
        error: {
          code: "protocol_error",
          message: `Malformed event from the task: ${parsed.error}`,
        },
      });
      return;
    }
    const event = parsed.data;
    if (event.type === "result" || event.type === "failure") void finish(event);
    else void send(event);
  };
  worker.onerror = (e: ErrorEvent) => {
    e.preventDefault();
    void finish({
      type: "failure",
      error: { code: "uncaught_error", message: e.message || "The task's worker failed" },
    });
  };
}

if (import.meta.main) await runHost();
