/**
 * Klym: an MCP server that runs long tasks in the background.
 * Reads config, wires the parts, serves; `--task-host` makes this binary a task's own process, and
 * a CLI command (`klym tasks`, `klym logs -f ID`, …) makes it a client of a running Klym.
 */
import { ConfigError, loadConfig } from "./src/config.ts";
import { setupLogging } from "./src/logging.ts";
import { startKlym } from "./src/klym.ts";
import { JournalError } from "./src/journal/journal.ts";
import { runHost } from "./src/host/host.ts";
import { VERSION } from "./src/version.ts";
import { CLI_COMMANDS, runCli } from "./src/cli/cli.ts";

const SHUTDOWN_DEADLINE_MS = 5000;

async function main(): Promise<number> {
  if (Deno.args[0] === "--task-host") {
    await runHost();
    return 0;
  }
  if (Deno.args[0] === "--version") {
    Deno.stdout.writeSync(new TextEncoder().encode(`klym ${VERSION}\n`));
    return 0;
  }
  if (CLI_COMMANDS.has(Deno.args[0] ?? "")) return await runCli(Deno.args, Deno.env.toObject());
  // The config is validated before logging is set up, so even KLYM_LOG_LEVEL is never guessed.
  let config;
  try {
    config = loadConfig(Deno.env.toObject(), Deno.args);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    Deno.stderr.writeSync(new TextEncoder().encode(`klym: ${error.message}\n`));
    return 2;
  }
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
  const why = await Promise.race([stopped, klym.done.then(() => "stdio closed")]);
  const deadline = setTimeout(() => Deno.exit(1), SHUTDOWN_DEADLINE_MS);
  await klym.close();
  clearTimeout(deadline);
  void why;
  return 0;
}

Deno.exit(await main());
