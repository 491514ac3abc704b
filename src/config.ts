/**
 * One validated configuration object. Every knob has its default here, is read from the
 * environment (`KLYM_*`) and, for the common ones, from a command-line flag.
 */
import { z } from "zod";
import { DEFAULT_WRITE_TEMPLATE, type GrynyaSettings, WriteTemplate } from "./protocol.ts";
import { parseModelId } from "./llm/model_catalog.ts";

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

export const ConfigSchema = z.object({
  host: z.string().min(1).default("127.0.0.1"),
  port: int(0, 65535).default(8765),
  stdio: z.boolean().default(false),
  authToken: z.string().min(16, "must be at least 16 characters").optional(),
  allowedOrigins: z.array(z.string()).default([]),
  /** Host names clients may use in the Host header, beyond localhost and the bind address. */
  allowedHosts: z.array(z.string()).default([]),
  grynyaUrl: z.url({ protocol: /^https?$/ }).default("http://127.0.0.1:8000/sse"),
  grynyaTransport: z.enum(["auto", "sse", "http"]).default("auto"),
  grynyaToken: z.string().min(1).optional(),
  /** Extra HTTP headers for grynya, as a JSON object of strings. */
  grynyaHeaders: z.record(z.string(), z.string()).default({}),
  grynyaConnectTimeoutMs: int(100, 600_000).default(10_000),
  grynyaCallTimeoutMs: int(100, 3_600_000).default(60_000),
  /** Reconnect attempts (with backoff) after the connection to grynya is lost. */
  grynyaReconnects: int(0, 20).default(3),
  /** How `ctx.save` writes into grynya's graph: a JSON file path or inline JSON (see README). */
  grynyaWrite: WriteTemplate.default(DEFAULT_WRITE_TEMPLATE),
  tasksDir: z.string().min(1).optional(),
  /** The default model, `provider:model`; `models` are more a task may name. */
  model: z.string().min(3).optional(),
  models: z.array(z.string().min(3)).default([]),
  openaiCompatibleUrl: z.url({ protocol: /^https?$/ }).optional(),
  openaiCompatibleKey: z.string().min(1).optional(),
  /** One model call, retries included. */
  llmTimeoutMs: int(1000, 3_600_000).default(120_000),
  /** Retries of a model call on 429/5xx and network errors, with backoff. */
  llmRetries: int(0, 10).default(2),
  /** Agent loop limits: model turns, and input+output tokens across them. */
  agentMaxSteps: int(1, 1000).default(30),
  agentMaxTokens: int(1000, 100_000_000).default(500_000),
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
  /** Klym's own log: human lines (`pretty`) or JSON lines; unset, pretty on a terminal only. */
  logFormat: z.enum(["pretty", "json"]).optional(),
}).superRefine((c, ctx) => {
  if (c.defaultTimeoutS > c.maxTimeoutS) {
    ctx.addIssue({
      code: "custom",
      path: ["defaultTimeoutS"],
      message: `must not exceed KLYM_MAX_TIMEOUT_S (${c.maxTimeoutS})`,
    });
  }
  for (const [key, id] of [["model", c.model], ...c.models.map((m) => ["models", m])] as const) {
    if (id === undefined) continue;
    try {
      parseModelId(id, c);
    } catch (error) {
      ctx.addIssue({ code: "custom", path: [key], message: (error as Error).message });
    }
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
  allowedHosts: "KLYM_ALLOWED_HOSTS",
  grynyaUrl: "KLYM_GRYNYA_URL",
  grynyaTransport: "KLYM_GRYNYA_TRANSPORT",
  grynyaToken: "KLYM_GRYNYA_TOKEN",
  grynyaHeaders: "KLYM_GRYNYA_HEADERS",
  grynyaConnectTimeoutMs: "KLYM_GRYNYA_CONNECT_TIMEOUT_MS",
  grynyaCallTimeoutMs: "KLYM_GRYNYA_CALL_TIMEOUT_MS",
  grynyaReconnects: "KLYM_GRYNYA_RECONNECTS",
  grynyaWrite: "KLYM_GRYNYA_WRITE",
  tasksDir: "KLYM_TASKS_DIR",
  model: "KLYM_MODEL",
  models: "KLYM_MODELS",
  openaiCompatibleUrl: "KLYM_OPENAI_COMPATIBLE_URL",
  openaiCompatibleKey: "KLYM_OPENAI_COMPATIBLE_KEY",
  llmTimeoutMs: "KLYM_LLM_TIMEOUT_MS",
  llmRetries: "KLYM_LLM_RETRIES",
  agentMaxSteps: "KLYM_AGENT_MAX_STEPS",
  agentMaxTokens: "KLYM_AGENT_MAX_TOKENS",
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
  logFormat: "KLYM_LOG_FORMAT",
};

const FLAGS: Record<string, keyof Config> = {
  "--host": "host",
  "--port": "port",
  "--grynya-url": "grynyaUrl",
  "--grynya-transport": "grynyaTransport",
  "--tasks-dir": "tasksDir",
  "--model": "model",
  "--max-concurrent": "maxConcurrent",
};

function fromEnv(key: keyof Config, value: string, name: string): unknown {
  switch (key) {
    case "allowedOrigins":
    case "allowedHosts":
    case "models":
      return value.split(",").map((s) => s.trim()).filter(Boolean);
    case "stdio":
      return value === "1" || value === "true";
    case "grynyaHeaders":
      return parseJson(value, name);
    case "grynyaWrite":
      return parseJson(value.trimStart().startsWith("{") ? value : readFile(value, name), name);
    default:
      return value;
  }
}

function parseJson(text: string, name: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ConfigError(
      `Invalid configuration: ${name} is not valid JSON (${(error as Error).message})`,
    );
  }
}

function readFile(path: string, name: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    throw new ConfigError(
      `Invalid configuration: ${name} names the file "${path}", which cannot be read (${
        (error as Error).message
      })`,
    );
  }
}

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
    raw[key] = fromEnv(key, value, name);
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
      const [key, ...rest] = issue.path as [keyof Config | undefined, ...PropertyKey[]];
      const name = key ? ENV_NAMES[key] : "config";
      const where = rest.length ? ` at ${rest.join(".")}` : "";
      return `${name}${where}: ${issue.message}`;
    });
    throw new ConfigError(`Invalid configuration: ${problems.join("; ")}`);
  }
  return parsed.data;
}

/** What a task needs to know to reach grynya. */
export function grynyaSettings(config: Config): GrynyaSettings {
  return {
    url: config.grynyaUrl,
    transport: config.grynyaTransport,
    headers: {
      ...config.grynyaHeaders,
      ...(config.grynyaToken ? { authorization: `Bearer ${config.grynyaToken}` } : {}),
    },
    connectTimeoutMs: config.grynyaConnectTimeoutMs,
    callTimeoutMs: config.grynyaCallTimeoutMs,
    reconnects: config.grynyaReconnects,
    write: config.grynyaWrite,
  };
}
