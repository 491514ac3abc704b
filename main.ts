/**
 * Klym: an MCP server that runs long tasks in the background.
 * Reads config, wires the parts, serves; `--task-host` makes this binary a task's own process, and
 * a CLI command (`klym tasks`, `klym logs -f ID`, …) makes it a client of a running Klym.
 */
import { ConfigError, loadConfig } from "./src/config.ts";
import { VERSION } from "./src/version.ts";
import { CLI_COMMANDS } from "./src/cli/commands.ts";

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
  // The config is validated before logging is set up, so even KLYM_LOG_LEVEL is never guessed.
  let config;
  try {
    config = loadConfig(Deno.env.toObject(), Deno.args);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    Deno.stderr.writeSync(new TextEncoder().encode(`klym: ${error.message}\n`));
    return 2;
  }
  const { setupLogging } = await import("./src/logging.ts");
  const { startKlym } = await import("./src/klym.ts");
  const { JournalError } = await import("./src/journal/journal.ts");
  await setupLogging(config.logLevel, config.logFormat);
  let klym;
  try {
    klym = await startKlym(config);
  } catch (error) {
    if (!(error instanceof JournalError)) throw error;
    Deno.stderr.writeSync(new TextEncoder().encode(`klym: ${error.message}\n`));
    return 2;
  }
  const { promise: stopped, resolve: stop } = Promise.withResolvers<string>();
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, () => stop(signal));
  await Promise.race([stopped, klym.done]);
  const deadline = setTimeout(() => Deno.exit(1), SHUTDOWN_DEADLINE_MS);
  await klym.close();
  clearTimeout(deadline);
  return 0;
}

Deno.exit(await main());
