/**
 * Klym: an MCP server that runs long tasks in the background.
 * Reads config, wires the parts, serves; `--task-host` makes this binary a task's own process, and
 * a CLI command (`klym tasks`, `klym logs -f ID`, …) makes it a client of a running Klym.
 * `--stdio` bridges an assistant to the user's Klym service (starting it, detached, with
 * `--service`), unless `--standalone` asks for a private in-process Klym.
 */
import type { Config } from "./src/config.ts";
import { isKlymError } from "./src/errors.ts";
import { VERSION } from "./src/version.ts";
import { CLI_COMMANDS } from "./src/cli/commands.ts";
import {
  SERVICE_EXIT_FAILED,
  SERVICE_EXIT_TAKEN,
  SERVICE_FLAG,
} from "./src/service/service_spawner.ts";
import { servicePaths } from "./src/service/service_paths.ts";

const SHUTDOWN_DEADLINE_MS = 5000;

// Each face loads only its own modules: a task process (a compiled binary re-invoking itself) does
// not load the server, and the server does not load the MCP client the hosts and the CLI use.
async function main(): Promise<number> {
  if (Deno.args[0] === "--task-host") {
    const { runHost } = await import("./src/host/host.ts");
    await runHost();
    return 0;
  }
  if (Deno.args[0] === "--version") {
    Deno.stdout.writeSync(new TextEncoder().encode(`klym ${VERSION}\n`));
    return 0;
  }
  if (CLI_COMMANDS.has(Deno.args[0] ?? "")) {
    const { runCli } = await import("./src/cli/cli.ts");
    return await runCli(Deno.args, Deno.env.toObject());
  }
  const service = Deno.args.includes(SERVICE_FLAG);
  const args = Deno.args.filter((arg) => arg !== SERVICE_FLAG);
  // The config is validated before logging is set up, so even KLYM_LOG_LEVEL is never guessed.
  // The config's schemas load zod, which a task process (above) has no use for.
  const { loadConfig } = await import("./src/config.ts");
  let config: Config;
  try {
    config = loadConfig(Deno.env.toObject(), args);
  } catch (error) {
    if (!isKlymError(error, "CONFIG_INVALID")) throw error;
    Deno.stderr.writeSync(new TextEncoder().encode(`klym: ${error.message}\n`));
    return 2;
  }
  const { setupLogging } = await import("./src/logging.ts");
  const paths = servicePaths(config.state);
  if (service) return await serve({ ...config, stdio: false }, "service");
  if (config.stdio && !config.standalone && paths) {
    await setupLogging(config.logLevel, config.logFormat);
    const { runBridge } = await import("./src/service/bridge.ts");
    return await runBridge(config, paths, args.filter((arg) => arg !== "--stdio"));
  }
  await setupLogging(config.logLevel, config.logFormat);
  return await serve(config, config.stdio ? "stdio" : "http");
}

/** When the service of `config`'s state folder runs: where to find it, on stderr. */
async function tellRunningService(config: Config): Promise<void> {
  const paths = servicePaths(config.state);
  const { probeService } = await import("./src/service/service_probe.ts");
  const hello = paths ? await probeService(paths) : undefined;
  if (!hello) return;
  const where = hello.url
    ? `its dashboard is at ${hello.url}/ui and MCP at ${hello.url}/mcp`
    : "it serves no HTTP (its port was taken)";
  Deno.stderr.writeSync(new TextEncoder().encode(
    `klym: Klym ${hello.version} already runs for this state folder as the service (pid ` +
      `${hello.pid}): ${where}; use it, or stop it (kill ${hello.pid}) to run this one instead\n`,
  ));
}

/** Serves until a signal, the stdio client's exit or the service's idle time; the exit code. */
async function serve(config: Config, mode: "http" | "service" | "stdio"): Promise<number> {
  const { startKlym } = await import("./src/klym.ts");
  let fail = (message: string, _taken: boolean): void => {
    Deno.stderr.writeSync(new TextEncoder().encode(`klym: ${message}\n`));
  };
  const { dispose } = await import("@logtape/logtape");
  if (mode === "service") {
    // A service has no stderr: it logs to a file in its (private) state folder.
    const { privateFolder } = await import("./src/journal/private_files.ts");
    const { openServiceLog } = await import("./src/service/service_log.ts");
    const { setupLogging } = await import("./src/logging.ts");
    const { getLogger } = await import("@logtape/logtape");
    const paths = servicePaths(config.state);
    let log: Deno.FsFile;
    try {
      if (!paths) throw new Error("a service needs its journal in a file (not KLYM_STATE=memory)");
      privateFolder(paths.journal, config.state === undefined);
      log = openServiceLog(paths.log);
    } catch (error) {
      fail(`Cannot start the service: ${(error as Error).message}`, false);
      return SERVICE_EXIT_FAILED;
    }
    await setupLogging(config.logLevel, config.logFormat, log);
    const logger = getLogger(["klym", "service"]);
    logger.info("Klym {version} starting as the service (pid {pid})", {
      version: VERSION,
      pid: Deno.pid,
    });
    fail = (message, taken) =>
      taken
        ? logger.info("Another Klym owns the journal, so this one exits: {message}", { message })
        : logger.fatal("{message}", { message });
  }
  let klym;
  try {
    klym = await startKlym(config, mode);
  } catch (error) {
    if (!isKlymError(error, "JOURNAL_TAKEN", "JOURNAL_UNUSABLE", "SERVICE_CANNOT_LISTEN")) {
      throw error;
    }
    const taken = error.code === "JOURNAL_TAKEN" && mode === "service";
    fail(error.message, taken);
    if (error.code === "JOURNAL_TAKEN" && mode === "http") {
      await tellRunningService(config);
    }
    await dispose();
    return taken ? SERVICE_EXIT_TAKEN : SERVICE_EXIT_FAILED;
  }
  const { promise: stopped, resolve: stop } = Promise.withResolvers<string>();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, () => stop(signal));
  await Promise.race([stopped, klym.done]);
  const deadline = setTimeout(() => Deno.exit(1), SHUTDOWN_DEADLINE_MS);
  await klym.close();
  clearTimeout(deadline);
  await dispose();
  return 0;
}

Deno.exit(await main());
