/**
 * One validated configuration object. Every knob has its default here, is read from the
 * environment (`KLYM_*`) and, for the common ones, from a command-line flag.
 */
import { z } from "zod";

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

export const ConfigSchema = z.object({
  host: z.string().min(1).default("127.0.0.1"),
  port: int(0, 65535).default(8765),
  stdio: z.boolean().default(false),
  authToken: z.string().min(16, "must be at least 16 characters").optional(),
  allowedOrigins: z.array(z.string()).default([]),
  grynyaUrl: z.url({ protocol: /^https?$/ }).default("http://127.0.0.1:8000/sse"),
  tasksDir: z.string().min(1).optional(),
  /** Running task processes; more tasks wait `queued`. */
  maxConcurrent: int(1, 1024).default(8),
  /** Tasks waiting for a slot; beyond it `start_async_agent_task` is refused. */
  maxQueued: int(0, 100_000).default(1000),
  defaultTimeoutS: int(1, 86_400).default(600),
  maxTimeoutS: int(1, 86_400).default(3600),
  /** Grace between a cooperative abort and SIGKILL of the task's process. */
  cancelGraceMs: int(0, 60_000).default(500),
  /** Per-task log buffer; the oldest lines are dropped beyond it. */
  logLimitBytes: int(1024, 1024 ** 3).default(1024 * 1024),
  /** A single log line longer than this is cut and marked. */
  maxLogLineBytes: int(64, 1024 ** 2).default(16 * 1024),
  maxPromptBytes: int(1, 16 * 1024 ** 2).default(64 * 1024),
  maxParamsBytes: int(2, 16 * 1024 ** 2).default(256 * 1024),
  maxResultBytes: int(2, 64 * 1024 ** 2).default(1024 * 1024),
  /** How long finished tasks stay visible, and how many at most. */
  retentionS: int(1, 30 * 86_400).default(3600),
  maxFinished: int(1, 1_000_000).default(1000),
  /** V8 heap cap of each task's process. */
  taskMemoryMb: int(32, 65_536).default(512),
  /** Task processes started ahead of need, so a task's code starts without a spawn. */
  warmSpares: int(0, 64).default(1),
  maxRequestBodyBytes: int(1024, 64 * 1024 ** 2).default(4 * 1024 * 1024),
  sessionIdleS: int(1, 86_400).default(1800),
  maxSessions: int(1, 100_000).default(256),
}).superRefine((c, ctx) => {
  if (c.defaultTimeoutS > c.maxTimeoutS) {
    ctx.addIssue({
      code: "custom",
      path: ["defaultTimeoutS"],
      message: `must not exceed KLYM_MAX_TIMEOUT_S (${c.maxTimeoutS})`,
    });
  }
  if (!c.stdio && !isLoopback(c.host) && !c.authToken) {
    ctx.addIssue({
      code: "custom",
      path: ["authToken"],
      message: `KLYM_AUTH_TOKEN is required when binding to the non-loopback host "${c.host}"`,
    });
  }
});

export type Config = z.infer<typeof ConfigSchema>;

/** Environment variable of each key, the knob a user turns. */
export const ENV_NAMES: Record<keyof Config, string> = {
  host: "KLYM_HOST",
  port: "KLYM_PORT",
  stdio: "KLYM_STDIO",
  authToken: "KLYM_AUTH_TOKEN",
  allowedOrigins: "KLYM_ALLOWED_ORIGINS",
  grynyaUrl: "KLYM_GRYNYA_URL",
  tasksDir: "KLYM_TASKS_DIR",
  maxConcurrent: "KLYM_MAX_CONCURRENT",
  maxQueued: "KLYM_MAX_QUEUED",
  defaultTimeoutS: "KLYM_DEFAULT_TIMEOUT_S",
  maxTimeoutS: "KLYM_MAX_TIMEOUT_S",
  cancelGraceMs: "KLYM_CANCEL_GRACE_MS",
  logLimitBytes: "KLYM_LOG_LIMIT_BYTES",
  maxLogLineBytes: "KLYM_MAX_LOG_LINE_BYTES",
  maxPromptBytes: "KLYM_MAX_PROMPT_BYTES",
  maxParamsBytes: "KLYM_MAX_PARAMS_BYTES",
  maxResultBytes: "KLYM_MAX_RESULT_BYTES",
  retentionS: "KLYM_RETENTION_S",
  maxFinished: "KLYM_MAX_FINISHED",
  taskMemoryMb: "KLYM_TASK_MEMORY_MB",
  warmSpares: "KLYM_WARM_SPARES",
  maxRequestBodyBytes: "KLYM_MAX_REQUEST_BODY_BYTES",
  sessionIdleS: "KLYM_SESSION_IDLE_S",
  maxSessions: "KLYM_MAX_SESSIONS",
};

const FLAGS: Record<string, keyof Config> = {
  "--host": "host",
  "--port": "port",
  "--grynya-url": "grynyaUrl",
  "--tasks-dir": "tasksDir",
  "--max-concurrent": "maxConcurrent",
};

export class ConfigError extends Error {
  override name = "ConfigError";
}

export function isLoopback(host: string): boolean {
  return LOOPBACK_HOSTS.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Builds the config from env and argv; flags win over env. Throws `ConfigError` with every problem. */
export function loadConfig(env: Record<string, string | undefined>, args: string[]): Config {
  const raw: Record<string, unknown> = {};
  for (const [key, name] of Object.entries(ENV_NAMES) as [keyof Config, string][]) {
    const value = env[name];
    if (value === undefined || value === "") continue;
    raw[key] = key === "allowedOrigins"
      ? value.split(",").map((s) => s.trim()).filter(Boolean)
      : key === "stdio"
      ? value === "1" || value === "true"
      : value;
  }
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--stdio") {
      raw.stdio = true;
      continue;
    }
    const [flag, inline] = arg.split(/=(.*)/s, 2) as [string, string | undefined];
    const key = FLAGS[flag];
    if (!key) {
      throw new ConfigError(
        `Unknown option "${arg}"; known: --stdio, ${Object.keys(FLAGS).join(", ")}`,
      );
    }
    const value = inline ?? args[++i];
    if (value === undefined) throw new ConfigError(`Option "${flag}" needs a value`);
    raw[key] = value;
  }
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const key = issue.path[0] as keyof Config | undefined;
      const name = key ? ENV_NAMES[key] : "config";
      return `${name}: ${issue.message}`;
    });
    throw new ConfigError(`Invalid configuration: ${problems.join("; ")}`);
  }
  return parsed.data;
}
