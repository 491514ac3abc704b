/** Runs the `klym` CLI as a real subprocess (no colour) and gathers its exit code and output. */
import { MAIN } from "./klym_process.ts";

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
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}
