/**
 * `klym <command>`: list, follow, start and cancel the tasks of a running Klym over MCP.
 * Exit codes: 0 ok (or the task succeeded), 1 the task failed, was cancelled or timed out,
 * 2 a usage, connection or request error (the message names the problem).
 */
import { VERSION } from "../version.ts";
import { FINAL_STATUSES, TASK_STATUSES } from "../tasks/task_state.ts";
import type { TaskSummary as Summary } from "../tasks/task_summary.ts";
import { CLI_COMMANDS, type CommandName } from "./commands.ts";
import { type FlagSpec, intFlag, paramsFrom, parseArgs, type Parsed } from "./args.ts";
import { connectKlym, DEFAULT_URL, type KlymClient, serverUrl } from "./klym_client.ts";
import {
  humanDuration,
  type Output,
  paintStatus,
  progressBar,
  table,
  terminalJson,
  terminalOutput,
  terminalText,
} from "./output.ts";
import { isKlymError, KlymError } from "../errors.ts";
import { parseWindow, type Spend } from "../metrics/spend_ledger.ts";

/** Between two `check_task_status` calls while following a task. */
const FOLLOW_POLL_MS = 500;
const FINAL: ReadonlySet<string> = new Set(FINAL_STATUSES);
const STATUSES: readonly string[] = TASK_STATUSES;
const MAX_LOG_LINES = 1000;

/** What `check_task_status` answers: the task's summary, a page of its logs, its result. */
interface Status extends Summary {
  logs: { seq: number; stream: string; time: string; text: string }[];
  next_log_cursor: number;
  more_logs: boolean;
  logs_dropped: number;
  logs_missed: number;
  result?: unknown;
}

const COMMON: Record<string, FlagSpec> = {
  url: { value: true },
  json: { value: false },
  help: { value: false, alias: "-h" },
};

interface Command {
  readonly usage: string;
  readonly summary: string;
  readonly flags: Record<string, FlagSpec>;
  readonly flagHelp: readonly [string, string][];
  readonly args: number;
  /** Checks the flags' values before connecting; throws `CLI_USAGE`. */
  check?(parsed: Parsed): void;
  run(client: KlymClient, parsed: Parsed, output: Output, json: boolean): Promise<number>;
}

const flag = (parsed: Parsed, name: string) => parsed.flags.get(name)?.[0];
const has = (parsed: Parsed, name: string) => parsed.flags.has(name);
const exitFor = (status: string) => status === "succeeded" || !FINAL.has(status) ? 0 : 1;
const ms = (iso: string | undefined) => iso === undefined ? undefined : Date.parse(iso);

function runTime(task: Summary): number | undefined {
  const start = ms(task.started_at);
  return start === undefined ? undefined : (ms(task.finished_at) ?? Date.now()) - start;
}

function jsonLine(output: Output, value: unknown): void {
  output.out(`${terminalJson(value)}\n`);
}

function printLogs(output: Output, status: Status, json: boolean): void {
  if (status.logs_missed > 0 && !json) {
    const missed = terminalText(String(status.logs_missed));
    output.err(`klym: ${missed} log lines were dropped before they could be read\n`);
  }
  for (const line of status.logs) {
    if (json) {
      jsonLine(output, line);
      continue;
    }
    const stream = line.stream === "stderr"
      ? output.paint("yellow", "err")
      : output.paint("dim", "out");
    const time = terminalText(line.time.slice(11, 23));
    output.out(`${output.paint("dim", time)} ${stream} ${terminalText(line.text)}\n`);
  }
}

function printTask(output: Output, task: Status): void {
  const rows: [string, string][] = [
    ["task", terminalText(task.task_id)],
    ["kind", terminalText(task.kind)],
    ["status", paintStatus(output, task.status)],
    ["created", terminalText(task.created_at)],
  ];
  if (task.owner !== undefined) rows.splice(1, 0, ["owner", terminalText(task.owner)]);
  if (task.started_at) rows.push(["started", terminalText(task.started_at)]);
  if (task.finished_at) rows.push(["finished", terminalText(task.finished_at)]);
  const duration = runTime(task);
  if (duration !== undefined) rows.push(["duration", humanDuration(duration)]);
  if (task.progress) rows.push(["progress", progressBar(task.progress)]);
  rows.push(["logs", `klym logs ${terminalText(task.task_id)}`]);
  if (task.error) {
    rows.push(["error", terminalText(`${task.error.code}: ${task.error.message}`)]);
  }
  output.out(table(rows.map(([k, v]) => [output.paint("bold", k), v])));
  if (task.status === "succeeded") {
    output.out(
      `${output.paint("bold", "result")}\n${terminalJson(task.result, 2)}\n`,
    );
  }
}

/** Polls the task until it is final, printing logs (`showLogs`) and/or a progress bar. */
async function follow(
  client: KlymClient,
  id: string,
  output: Output,
  options: { json: boolean; showLogs: boolean; bar: boolean },
): Promise<Status> {
  let cursor = 0;
  let drawn = false;
  while (true) {
    const status = await client.call<Status>("check_task_status", {
      task_id: id,
      log_cursor: cursor,
      max_log_lines: options.showLogs ? MAX_LOG_LINES : 0,
    });
    if (drawn && (status.logs.length > 0 || FINAL.has(status.status))) {
      output.err("\r\x1b[2K");
      drawn = false;
    }
    if (options.showLogs) {
      printLogs(output, status, options.json);
      cursor = status.next_log_cursor;
    }
    if (status.more_logs && options.showLogs) continue;
    if (FINAL.has(status.status)) return status;
    if (options.bar && output.live) {
      output.err(`\r\x1b[2K${paintStatus(output, status.status)} ${progressBar(status.progress)}`);
      drawn = true;
    }
    await new Promise((r) => setTimeout(r, FOLLOW_POLL_MS));
  }
}

const COMMANDS: Record<CommandName, Command> = {
  tasks: {
    usage: "klym tasks [--status S] [--limit N]",
    summary: "list tasks, newest first",
    flags: { status: { value: true }, limit: { value: true } },
    flagHelp: [
      ["--status S", `only tasks with this status (${STATUSES.join(", ")})`],
      ["--limit N", "at most N tasks (1-1000, default 50)"],
    ],
    args: 0,
    check(parsed) {
      const status = flag(parsed, "status");
      if (status !== undefined && !STATUSES.includes(status)) {
        throw new KlymError(
          "CLI_USAGE",
          `"--status" must be one of ${STATUSES.join(", ")}, received "${status}"`,
        );
      }
      const limit = flag(parsed, "limit");
      if (limit !== undefined) intFlag("limit", limit, 1, 1000);
    },
    async run(client, parsed, output, json) {
      const status = flag(parsed, "status");
      const limitText = flag(parsed, "limit");
      const answer = await client.call<{ tasks: Summary[]; counts: Record<string, number> }>(
        "list_tasks",
        {
          ...(status ? { status } : {}),
          ...(limitText ? { limit: intFlag("limit", limitText, 1, 1000) } : {}),
        },
      );
      if (json) {
        jsonLine(output, answer);
        return 0;
      }
      if (answer.tasks.length === 0) {
        output.err(`No tasks${status ? ` with status ${status}` : ""}\n`);
        return 0;
      }
      // An admin's list names each task's owner: one more column.
      const owners = answer.tasks.some((task) => task.owner !== undefined);
      const withOwner = (task: string, owner: string) => owners ? [task, owner] : [task];
      const rows = [
        [...withOwner("TASK", "OWNER"), "KIND", "STATUS", "AGE", "DURATION", "PROGRESS"].map((h) =>
          output.paint("bold", h)
        ),
      ];
      for (const task of answer.tasks) {
        rows.push([
          ...withOwner(terminalText(task.task_id), terminalText(task.owner ?? "")),
          terminalText(task.kind),
          paintStatus(output, task.status),
          humanDuration(Date.now() - Date.parse(task.created_at)),
          humanDuration(runTime(task)),
          task.progress ? progressBar(task.progress, 16) : "",
        ]);
      }
      output.out(table(rows));
      return 0;
    },
  },
  show: {
    usage: "klym show ID",
    summary: "a task's status, progress, result or error",
    flags: {},
    flagHelp: [],
    args: 1,
    async run(client, parsed, output, json) {
      const status = await client.call<Status>("check_task_status", {
        task_id: parsed.positional[0],
        max_log_lines: 0,
      });
      const { logs: _logs, ...task } = status;
      if (json) jsonLine(output, task);
      else printTask(output, status);
      return exitFor(status.status);
    },
  },
  logs: {
    usage: "klym logs [-f] ID",
    summary: "a task's log lines (stdout and stderr); -f follows until the task ends",
    flags: { follow: { value: false, alias: "-f" } },
    flagHelp: [["-f, --follow", "keep printing new lines until the task is final"]],
    args: 1,
    async run(client, parsed, output, json) {
      const id = parsed.positional[0]!;
      if (has(parsed, "follow")) {
        const final = await follow(client, id, output, { json, showLogs: true, bar: false });
        if (!json) output.err(`klym: ${terminalText(id)} ${paintStatus(output, final.status)}\n`);
        return exitFor(final.status);
      }
      let cursor = 0;
      while (true) {
        const status = await client.call<Status>("check_task_status", {
          task_id: id,
          log_cursor: cursor,
          max_log_lines: MAX_LOG_LINES,
        });
        printLogs(output, status, json);
        cursor = status.next_log_cursor;
        if (!status.more_logs) return exitFor(status.status);
      }
    },
  },
  start: {
    usage: "klym start KIND [--prompt TEXT] [--param k=v …] [--timeout S] [--wait]",
    summary: "start a task and print its id (or wait for it with --wait)",
    flags: {
      prompt: { value: true },
      param: { value: true, repeat: true },
      timeout: { value: true },
      model: { value: true },
      wait: { value: false },
    },
    flagHelp: [
      ["--prompt TEXT", "what the task should do"],
      ["--param k=v", "a task parameter (repeatable); JSON values are parsed, others are strings"],
      ["--timeout S", "deadline in seconds"],
      ["--model M", "a configured model for the task (klym's list_models)"],
      ["--wait", "show progress and wait until the task ends; print its result"],
    ],
    args: 1,
    check(parsed) {
      const timeout = flag(parsed, "timeout");
      if (timeout !== undefined) intFlag("timeout", timeout, 1, 86_400);
      paramsFrom(parsed.flags.get("param") ?? []);
    },
    async run(client, parsed, output, json) {
      const timeout = flag(parsed, "timeout");
      const prompt = flag(parsed, "prompt");
      const model = flag(parsed, "model");
      const started = await client.call<{ task_id: string; status: string }>(
        "start_async_agent_task",
        {
          kind: parsed.positional[0],
          ...(prompt === undefined ? {} : { prompt }),
          ...(model === undefined ? {} : { model }),
          params: paramsFrom(parsed.flags.get("param") ?? []),
          ...(timeout === undefined ? {} : { timeout_s: intFlag("timeout", timeout, 1, 86_400) }),
        },
      );
      if (!has(parsed, "wait")) {
        if (json) jsonLine(output, started);
        else output.out(`${terminalText(started.task_id)}\n`);
        return 0;
      }
      if (!json) output.err(`klym: started ${terminalText(started.task_id)}\n`);
      const final = await follow(client, started.task_id, output, {
        json,
        showLogs: false,
        bar: !json,
      });
      const { logs: _logs, ...task } = final;
      if (json) jsonLine(output, task);
      else printTask(output, final);
      return exitFor(final.status);
    },
  },
  cancel: {
    usage: "klym cancel ID [--reason TEXT]",
    summary: "cancel a queued or running task (a finished task keeps its status)",
    flags: { reason: { value: true } },
    flagHelp: [["--reason TEXT", "why, kept in the task's error message"]],
    args: 1,
    async run(client, parsed, output, json) {
      const reason = flag(parsed, "reason");
      const answer = await client.call<{ task_id: string; status: string }>("cancel_task", {
        task_id: parsed.positional[0],
        ...(reason === undefined ? {} : { reason }),
      });
      if (json) jsonLine(output, answer);
      else output.out(`${terminalText(answer.task_id)} ${paintStatus(output, answer.status)}\n`);
      return 0;
    },
  },
  usage: {
    usage: "klym usage [--window W]",
    summary: "model calls and tokens per principal and model (yours; an admin's: everyone's)",
    flags: { window: { value: true } },
    flagHelp: [["--window W", "how far back: 90m, 24h, 7d or seconds (default 24h)"]],
    args: 0,
    check(parsed) {
      const window = flag(parsed, "window");
      if (window !== undefined && parseWindow(window) === undefined) {
        throw new KlymError(
          "CLI_USAGE",
          `"--window" must be seconds or a number with s, m, h or d (as in 24h), received "${window}"`,
        );
      }
    },
    async run(client, parsed, output, json) {
      const window = flag(parsed, "window") ?? "24h";
      const spend = await client.get<Spend>(`/usage?window=${encodeURIComponent(window)}`);
      if (json) {
        jsonLine(output, spend);
        return 0;
      }
      if (spend.rows.length === 0) {
        output.err(`No model calls since ${terminalText(spend.since)}
`);
        return 0;
      }
      const rows = [
        ["PRINCIPAL", "MODEL", "CALLS", "REFUSED", "TOKENS IN", "TOKENS OUT"].map((h) =>
          output.paint("bold", h)
        ),
      ];
      for (const r of spend.rows) {
        rows.push([
          terminalText(r.principal),
          terminalText(r.model),
          String(r.calls),
          String(r.refusals),
          String(r.input_tokens),
          String(r.output_tokens),
        ]);
      }
      output.out(`Since ${terminalText(spend.since)}\n${table(rows)}`);
      return 0;
    },
  },
};

export { CLI_COMMANDS };

function helpText(): string {
  const width = Math.max(
    ...Object.values(COMMANDS).flatMap((
      c,
    ) => [c.usage.length, ...c.flagHelp.map(([f]) => f.length + 2)]),
  );
  const lines = [
    `klym ${VERSION}: run long background tasks for AI assistants (an MCP server), and steer them`,
    "",
    "Usage:",
    `  ${
      "klym [--stdio] [--port N] [--host H] …".padEnd(width)
    }  serve (see the README for every server flag)`,
  ];
  for (const command of Object.values(COMMANDS)) {
    lines.push(`  ${command.usage.padEnd(width)}  ${command.summary}`);
    for (const [name, text] of command.flagHelp) {
      lines.push(`    ${name.padEnd(width - 2)}  ${text}`);
    }
  }
  lines.push(
    `  ${"klym --help | --version".padEnd(width)}  this help | the version`,
    "",
    "Options of every command:",
    `  ${"--url URL".padEnd(width)}  the running Klym (default ${DEFAULT_URL}, or KLYM_URL)`,
    `  ${"--json".padEnd(width)}  JSON for scripts (JSON lines for logs)`,
    "",
    "Environment:",
    `  ${"KLYM_URL".padEnd(width)}  the running Klym, when --url is not given`,
    `  ${"KLYM_AUTH_TOKEN".padEnd(width)}  the server's bearer token, when it has one`,
    `  ${"NO_COLOR".padEnd(width)}  set to turn colours off`,
    "",
    "Exit codes: 0 ok or the task succeeded; 1 the task failed, was cancelled or timed out;",
    "2 a usage, connection or request error.",
  );
  return lines.join("\n") + "\n";
}

/** Runs one CLI command; returns the exit code. */
export async function runCli(
  args: readonly string[],
  env: Record<string, string | undefined>,
  output: Output = terminalOutput(env),
): Promise<number> {
  const [name, ...rest] = args;
  if (name === "--version" || name === "-V") {
    output.out(`klym ${VERSION}\n`);
    return 0;
  }
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    output.out(helpText());
    return 0;
  }
  const command = (COMMANDS as Record<string, Command | undefined>)[name];
  try {
    if (!command) {
      throw new KlymError(
        "CLI_USAGE",
        `Unknown command "${name}"; known: ${Object.keys(COMMANDS).join(", ")}`,
      );
    }
    const parsed = parseArgs(rest, { ...COMMON, ...command.flags });
    if (has(parsed, "help")) {
      output.out(`Usage: ${command.usage}\n`);
      return 0;
    }
    if (parsed.positional.length !== command.args) {
      throw new KlymError(
        "CLI_USAGE",
        `"${name}" takes ${
          command.args === 0 ? "no arguments" : `${command.args} argument`
        } (${command.usage}), received ${parsed.positional.length}`,
      );
    }
    command.check?.(parsed);
    const url = serverUrl(flag(parsed, "url") ?? env.KLYM_URL);
    await using client = await connectKlym(url, env.KLYM_AUTH_TOKEN || undefined);
    return await command.run(client, parsed, output, has(parsed, "json"));
  } catch (error) {
    if (isKlymError(error, "CLI_USAGE")) {
      output.err(
        `klym: ${terminalText(error.message)}\nRun "klym --help" for the commands and options.\n`,
      );
      return 2;
    }
    if (isKlymError(error, "CLI_FAILED")) {
      output.err(`klym: ${terminalText(error.message)}\n`);
      return 2;
    }
    throw error;
  }
}
