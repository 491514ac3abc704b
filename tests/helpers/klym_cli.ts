/** Runs the `klym` CLI as a real subprocess (no colour) and gathers its exit code and output. */
import { MAIN, OWN_SESSION } from "./klym_process.ts";

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export async function klymCli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    ...OWN_SESSION,
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** A `klym` CLI run still going: `printed` resolves once its stdout matches, `done` at its exit. */
export interface LiveRun {
  printed(pattern: RegExp): Promise<void>;
  done: Promise<Run>;
}

export function klymCliLive(args: string[], env: Record<string, string> = {}): LiveRun {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...OWN_SESSION,
  }).spawn();
  let stdout = "";
  let ended = false;
  const waiting: { pattern: RegExp; resolve: () => void }[] = [];
  const check = () => {
    for (const w of waiting.filter((w) => w.pattern.test(stdout))) {
      waiting.splice(waiting.indexOf(w), 1);
      w.resolve();
    }
  };
  const reading = (async () => {
    for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
      stdout += text;
      check();
    }
  })();
  const done = (async (): Promise<Run> => {
    const [stderr, status] = await Promise.all([
      new Response(child.stderr).text(),
      child.status,
      reading,
    ]);
    ended = true; // whoever still waits goes on: its next assertion says what was missing
    for (const w of waiting.splice(0)) w.resolve();
    return { code: status.code, stdout, stderr };
  })();
  return {
    printed: (pattern) =>
      new Promise((resolve) => {
        if (ended) return resolve();
        waiting.push({ pattern, resolve });
        check();
      }),
    done,
  };
}
