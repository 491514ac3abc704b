/** The CLI's command line: a command name, its flags and its positional arguments. */
import { KlymError } from "../errors.ts";

export interface FlagSpec {
  /** Takes a value (`--limit 5`, `--limit=5`); otherwise a switch. */
  readonly value: boolean;
  /** May be given more than once (values gathered in order). */
  readonly repeat?: boolean;
  readonly alias?: string;
}

export interface Parsed {
  readonly flags: Map<string, string[]>;
  readonly positional: string[];
}

/** Parses `args` against `specs` (keys are long names without `--`); throws `CLI_USAGE`. */
export function parseArgs(args: readonly string[], specs: Record<string, FlagSpec>): Parsed {
  const flags = new Map<string, string[]>();
  const positional: string[] = [];
  const byAlias = new Map(
    Object.entries(specs).flatMap(([name, spec]) => spec.alias ? [[spec.alias, name]] : []),
  );
  const known = () =>
    Object.entries(specs).map(([name, s]) => `--${name}${s.alias ? ` (${s.alias})` : ""}`)
      .join(", ");
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") {
      positional.push(...args.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positional.push(arg);
      continue;
    }
    const [raw, inline] = arg.split(/=(.*)/s, 2) as [string, string | undefined];
    const name = raw.startsWith("--") ? raw.slice(2) : byAlias.get(raw);
    const spec = name === undefined ? undefined : specs[name];
    if (name === undefined || !spec) {
      throw new KlymError(
        "CLI_USAGE",
        `Unknown option "${raw}"; this command takes ${known() || "no options"}`,
      );
    }
    let value = "";
    if (spec.value) {
      const next = inline ?? args[++i];
      if (next === undefined) throw new KlymError("CLI_USAGE", `Option "${raw}" needs a value`);
      value = next;
    } else if (inline !== undefined) {
      throw new KlymError("CLI_USAGE", `Option "${raw}" takes no value`);
    }
    const values = flags.get(name) ?? [];
    if (values.length > 0 && !spec.repeat) {
      throw new KlymError("CLI_USAGE", `Option "${raw}" is given more than once`);
    }
    flags.set(name, [...values, value]);
  }
  return { flags, positional };
}

/** A whole number within bounds, or `CLI_USAGE` naming the option. */
export function intFlag(name: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new KlymError(
      "CLI_USAGE",
      `"--${name}" must be a whole number between ${min} and ${max}, received "${value}"`,
    );
  }
  return n;
}

/** `k=v` pairs into an object; a value that parses as JSON is taken as JSON, else as a string. */
export function paramsFrom(pairs: readonly string[]): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  for (const pair of pairs) {
    const at = pair.indexOf("=");
    if (at <= 0) {
      throw new KlymError("CLI_USAGE", `"--param" takes key=value, received "${pair}"`);
    }
    const key = pair.slice(0, at);
    const text = pair.slice(at + 1);
    let value: unknown = text;
    try {
      value = JSON.parse(text);
    } catch {
      // A plain string.
    }
    params[key] = value;
  }
  return params;
}
