/**
 * Klym's service as users get it, for tests: each test gets a home of its own (HOME,
 * XDG_STATE_HOME: the state folder, the socket, the service's log), stdio clients that run
 * `main.ts --stdio` (bridges) in it, and a way to find and stop the service they started.
 */
import { Client } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import type { ServiceHello } from "../../src/service/handshake.ts";
import { probeService } from "../../src/service/service_probe.ts";
import { type ServicePaths, servicePaths } from "../../src/service/service_paths.ts";
import { FIXTURE_TASKS, MAIN, OWN_SESSION } from "./klym_process.ts";
import { PATIENCE_MS } from "./patience.ts";

/** Deno's module cache, which the clients' Klyms must keep finding under another HOME. */
const DENO_DIR = Deno.env.get("DENO_DIR") ??
  `${Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache`}/deno`;

/** The command line of a stdio Klym (a bridge). */
export const STDIO_COMMAND = [
  Deno.execPath(),
  "run",
  "-A",
  "--unstable-worker-options",
  MAIN,
  "--stdio",
];

export interface ServiceHome extends AsyncDisposable {
  readonly home: string;
  /** The environment of a Klym of this home. */
  readonly env: Record<string, string>;
  readonly paths: ServicePaths;
  /** A stdio client (the TypeScript SDK) whose Klym bridges to this home's service. */
  connect(...args: string[]): Promise<Client>;
  /** The service's hello: its pid and HTTP address (connects as a bridge, then leaves). */
  hello(): Promise<ServiceHello>;
  /** Waits until a service answers on this home's socket (one the test started itself). */
  serviceUp(): Promise<ServiceHello>;
  /** Sends SIGKILL or SIGTERM to the service and waits until its process is gone. */
  stopService(signal?: Deno.Signal): Promise<number>;
}

/** A fresh home; `env` adds to (or, with `undefined`, removes from) its Klyms' environment. */
export async function serviceHome(env: Record<string, string> = {}): Promise<ServiceHome> {
  const home = await Deno.makeTempDir({ prefix: "klym-home-" });
  const full: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "",
    HOME: home,
    XDG_STATE_HOME: `${home}/state`,
    DENO_DIR,
    KLYM_TASKS_DIR: FIXTURE_TASKS,
    KLYM_PORT: "0",
    KLYM_LOG_LEVEL: "debug",
    KLYM_LOG_FORMAT: "json",
    // Coverage (.ci/run) of the bridges and of the services they start.
    ...(Deno.env.get("DENO_COVERAGE_DIR")
      ? { DENO_COVERAGE_DIR: Deno.env.get("DENO_COVERAGE_DIR")! }
      : {}),
    ...env,
  };
  const paths = servicePaths(undefined, full, "linux")!;
  const clients: Client[] = [];
  const self: ServiceHome = {
    home,
    env: full,
    paths,
    async connect(...args) {
      const client = new Client({ name: "klym-service-test", version: "1.0.0" });
      await client.connect(
        new StdioClientTransport({
          command: STDIO_COMMAND[0]!,
          args: [...STDIO_COMMAND.slice(1), ...args],
          env: full,
          stderr: "ignore",
        }),
      );
      clients.push(client);
      return client;
    },
    async hello() {
      const hello = await probeService(paths);
      if (!hello) throw new Error(`No Klym service answers at ${paths.socket}`);
      return hello;
    },
    async serviceUp() {
      for (const deadline = Date.now() + PATIENCE_MS;;) {
        const hello = await probeService(paths);
        if (hello) return hello;
        if (Date.now() > deadline) throw new Error(`No Klym service answers at ${paths.socket}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async stopService(signal = "SIGTERM") {
      const { pid } = await self.hello();
      Deno.kill(pid, signal);
      await processGone(pid);
      return pid;
    },
    async [Symbol.asyncDispose]() {
      await Promise.allSettled(clients.map((c) => c.close()));
      if (isSocket(paths.socket)) await self.stopService().catch(() => {});
      await Deno.remove(home, { recursive: true });
    },
  };
  return self;
}

function isSocket(path: string): boolean {
  try {
    return Deno.lstatSync(path).isSocket === true;
  } catch {
    return false;
  }
}

/** Waits until process `pid` (not our child) has exited: Linux has no exit event for it. */
export async function processGone(pid: number, timeoutMs = PATIENCE_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > deadline) throw new Error(`Process ${pid} still runs after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Whether `pid` runs (a zombie counts as gone). */
export function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.split(") ")[1]?.[0] !== "Z";
  } catch {
    return false;
  }
}

/** Runs tests/peers/service_client.py in `home`; its JSON answer. */
export async function pythonClient(
  home: ServiceHome,
  ...args: string[]
): Promise<Record<string, unknown>> {
  const script = new URL("../peers/service_client.py", import.meta.url).pathname;
  const python = new URL("../peers/.venv/bin/python", import.meta.url).pathname;
  const out = await new Deno.Command(python, {
    args: [script, ...args],
    env: { ...home.env, KLYM_TEST_COMMAND: JSON.stringify(STDIO_COMMAND) },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(PATIENCE_MS),
    ...OWN_SESSION,
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(
      `service_client.py ${args.join(" ")} exited ${out.code}:\n${stdout}\n${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}
