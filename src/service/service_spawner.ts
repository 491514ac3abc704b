/**
 * Starts the service in the background for a bridge: this same Klym (the compiled binary, or
 * `deno run` of this checkout's main.ts) with `--service`, detached in a session of its own so the
 * assistant's process group and terminal signals never reach it, with no stdin, stdout or stderr
 * (it logs to its log file), and not waited for: the bridge may exit while it runs.
 */
import { fileURLToPath as fromFileUrl } from "node:url";

/** The flag that makes main.ts a service. */
export const SERVICE_FLAG = "--service";

/** Exit codes of a service: it could not start, or another Klym already owns the journal. */
export const SERVICE_EXIT_FAILED = 2;
export const SERVICE_EXIT_TAKEN = 3;

/** The command that runs the service with the bridge's own flags (`--stdio` left out). */
export function serviceCommand(flags: readonly string[]): { command: string; args: string[] } {
  if (Deno.build.standalone) {
    return { command: Deno.execPath(), args: [SERVICE_FLAG, ...flags] };
  }
  return {
    command: Deno.execPath(),
    args: [
      "run",
      "--allow-all",
      "--unstable-worker-options",
      `--config=${fromFileUrl(new URL("../../deno.json", import.meta.url))}`,
      fromFileUrl(new URL("../../main.ts", import.meta.url)),
      SERVICE_FLAG,
      ...flags,
    ],
  };
}

/** Starts the service detached; its status tells when it ends (while this process runs). */
export function spawnService(flags: readonly string[]): Deno.ChildProcess {
  const { command, args } = serviceCommand(flags);
  const child = new Deno.Command(command, {
    args,
    detached: true,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  child.unref();
  return child;
}
