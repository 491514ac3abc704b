/**
 * A throwaway PostgreSQL for tests: `initdb` in a temporary folder, one server on loopback and a
 * free port, one database per test (`database()`), and everything removed by `stop()`. As root the
 * cluster belongs to the `postgres` user (initdb refuses root). `tests/peers/setup.ts` installs
 * PostgreSQL when it is missing; without it `startPostgres` fails saying what to install.
 */
import { join } from "node:path";
import postgres from "postgres";
import { postgresBin } from "./postgres_bin.ts";
import { freePort } from "../peers/peers.ts";

export interface TestPostgres {
  /** The server's port on 127.0.0.1. */
  readonly port: number;
  /** A new, empty database; its URL. */
  database(): Promise<string>;
  /** Stops the server (fast shutdown: connections are cut) and starts it again on the same port. */
  restart(): Promise<void>;
  /** Stops the server only (`start()` brings it back). */
  halt(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server and removes its folder. */
  stop(): Promise<void>;
}

const isRoot = Deno.uid() === 0;

async function run(bin: string, args: string[]): Promise<string> {
  const [cmd, all] = isRoot ? ["runuser", ["-u", "postgres", "--", bin, ...args]] : [bin, args];
  const out = await new Deno.Command(cmd, { args: all, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${bin} ${args.join(" ")} failed: ${text}`);
  return text;
}

/** Starts a PostgreSQL of its own (a few seconds: one per test file). */
export async function startPostgres(): Promise<TestPostgres> {
  const bin = postgresBin();
  if (!bin) {
    throw new Error(
      "PostgreSQL is not installed: `apt-get install -y postgresql` (Debian), or set KLYM_TEST_PG_BIN to the folder holding initdb and pg_ctl",
    );
  }
  const root = await Deno.makeTempDir({ prefix: "klym-pg-" });
  const data = join(root, "data");
  if (isRoot) {
    await Deno.chmod(root, 0o755);
    const pw = await new Deno.Command("id", { args: ["-u", "postgres"], stdout: "piped" }).output();
    const uid = Number(new TextDecoder().decode(pw.stdout).trim());
    const gw = await new Deno.Command("id", { args: ["-g", "postgres"], stdout: "piped" })
      .output();
    const gid = Number(new TextDecoder().decode(gw.stdout).trim());
    await Deno.chown(root, uid, gid);
  }
  await run(join(bin, "initdb"), [
    "-D",
    data,
    "-U",
    "postgres",
    "--auth=trust",
    "--no-sync",
    "-E",
    "UTF8",
    "--locale=C",
  ]);
  const port = freePort();
  const options = [
    `-c listen_addresses=127.0.0.1 -c port=${port} -c unix_socket_directories=${root}`,
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
    "-c max_connections=200 -c shared_buffers=32MB",
  ].join(" ");
  const ctl = (...args: string[]) =>
    run(join(bin, "pg_ctl"), ["-D", data, "-l", join(root, "log"), "-w", "-t", "60", ...args]);
  const start = () => ctl("-o", options, "start").then(() => {});
  const halt = () => ctl("-m", "fast", "stop").then(() => {});
  await start();
  let running = true;
  let databases = 0;
  const admin = postgres(`postgres://postgres@127.0.0.1:${port}/postgres`, {
    max: 1,
    onnotice: () => {},
  });
  return {
    port,
    async database() {
      const name = `klym_test_${++databases}`;
      await admin.unsafe(`CREATE DATABASE ${name}`);
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    async restart() {
      await halt();
      await start();
    },
    async halt() {
      await halt();
      running = false;
    },
    async start() {
      await start();
      running = true;
    },
    async stop() {
      await admin.end({ timeout: 1 });
      if (running) await halt();
      await Deno.remove(root, { recursive: true });
    },
  };
}
