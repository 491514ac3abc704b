/**
 * One validated configuration object. Every knob has its default here, is read from the
 * environment (`KLYM_*`) and, for the common ones, from a command-line flag. Nothing is guessed:
 * an empty, malformed or out-of-range value, an unknown `KLYM_*` variable or an unknown flag is a
 * `CONFIG_INVALID` error naming the variable or flag, and Klym does not start.
 */
import { z } from "zod";
import { type GrynyaSettings, WriteSetting, WriteTemplate } from "./protocol.ts";
import { describeIssues } from "./shape.ts";
import { PRESET_NAMES } from "./grynya/write_presets.ts";
import { templateProblems } from "./grynya/write_template.ts";
import { parseModelId } from "./llm/model_id.ts";
import { isKlymError, KlymError } from "./errors.ts";

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "::1", "[::1]"]);

/** A whole number in [min, max]; from the environment, only plain decimal digits are accepted. */
const int = (min: number, max: number) =>
  z.preprocess(
    (value) => typeof value === "string" && /^[+-]?\d+$/.test(value) ? Number(value) : value,
    z.number({ error: (issue) => `must be a whole number, received ${show(issue.input)}` })
      .int({ error: (issue) => `must be a whole number, received ${show(issue.input)}` })
      .refine((n) => n >= min && n <= max, {
        error: (issue) => `must be between ${min} and ${max}, received ${show(issue.input)}`,
      }),
  );

const BOOLEAN_TEXT = new Map([["1", true], ["true", true], ["0", false], ["false", false]]);

/** A switch: exactly `1`, `true`, `0` or `false` from the environment. */
const bool = () =>
  z.preprocess(
    (value) => typeof value === "string" ? BOOLEAN_TEXT.get(value) ?? value : value,
    z.boolean({ error: (issue) => `must be 1, true, 0 or false, received ${show(issue.input)}` }),
  );

function show(value: unknown): string {
  return JSON.stringify(value) ?? String(value);
}

/** Levels of Klym's own log, lowest first. */
export const LOG_LEVELS = ["trace", "debug", "info", "warning", "error", "fatal"] as const;

export const ConfigSchema = z.object({
  host: z.string().min(1).default("127.0.0.1"),
  port: int(0, 65535).default(8765),
  stdio: bool().default(false),
  authToken: z.string().min(16, "must be at least 16 characters").optional(),
  /** Named bearer tokens, one principal each: `alice:<token>,bob:<token>`. */
  authTokens: z.array(z.object({
    name: z.string().regex(
      /^[A-Za-z0-9_.-]{1,64}$/,
      "names must be 1-64 letters, digits, '_', '.' or '-', as in alice:<token>",
    ),
    token: z.string().min(16, "tokens must be at least 16 characters"),
  })).default([]),
  /** Principals who see and may cancel every principal's tasks (operators). */
  admins: z.array(z.string()).default([]),
  /** Dashboard logins one principal may hold; at the cap its own oldest gives way. */
  uiMaxLogins: int(1, 100_000).default(64),
  /** Dashboard logins of all principals; at the cap the principal holding the most gives way. */
  uiMaxLoginsTotal: int(1, 100_000).default(1024),
  /** Open `/ui/events` streams one principal may hold; one more gets 503. */
  uiMaxStreams: int(1, 10_000).default(16),
  /** Open `/ui/events` streams of all principals; at the cap the one holding the most gives way. */
  uiMaxStreamsTotal: int(1, 100_000).default(64),
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
  /** Most connect attempts (with backoff) in one connect or reconnect; 0 tries once. */
  grynyaReconnects: int(0, 1000).default(100),
  /** How long a dropped connection to grynya may take to come back (grynya restarting). */
  grynyaReconnectS: int(1, 3600).default(30),
  /**
   * How `ctx.save` writes into grynya's graph: `auto` (a preset chosen from grynya's tools), a
   * preset's name, a JSON template file's path, or inline JSON (see docs/graph_servers.md).
   * `parseWriteSetting` reads it and names each issue; the protocol's shape checks it again here.
   */
  grynyaWrite: z.custom<WriteSetting>((value) => WriteSetting.check(value).success)
    .default({ kind: "auto" }),
  tasksDir: z.string().min(1).optional(),
  /** A custom kind and every file it imports, all together, in bytes and in modules. */
  maxKindBytes: int(1024, 1024 ** 3).default(64 * 1024 ** 2),
  maxKindModules: int(1, 100_000).default(1000),
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
  /** Model calls and tokens of a task of any other kind, counted by the server. */
  taskMaxLlmCalls: int(1, 100_000).default(100),
  taskMaxTokens: int(1000, 100_000_000).default(500_000),
  /** Model calls one task may have in flight at once. */
  taskLlmConcurrency: int(1, 64).default(4),
  /** Ceiling of `maxTokens` in any model call a task makes. */
  llmMaxOutputTokens: int(1, 1_000_000).default(32_768),
  /** One model request from a task, as JSON. */
  maxLlmRequestBytes: int(1024, 64 * 1024 ** 2).default(4 * 1024 ** 2),
  /** One grynya call from a task (tool arguments, a save's value), as JSON. */
  maxGrynyaCallBytes: int(1024, 64 * 1024 ** 2).default(1024 ** 2),
  /** Running task processes; more tasks wait `queued`. */
  maxConcurrent: int(1, 1024).default(8),
  /** Tasks one principal may have waiting for a slot; beyond it its `start` is refused. */
  maxQueued: int(0, 100_000).default(1000),
  /** Tasks waiting, all principals together (default: ten principals' worth, 10 × maxQueued). */
  maxQueuedTotal: int(0, 10_000_000).optional(),
  /** UTF-8 bytes of prompts plus JSON bytes of params one principal may have waiting. */
  maxQueuedBytes: int(1024, 1024 ** 4).default(32 * 1024 ** 2),
  /** The same, all principals together (default: four principals' worth, 4 × maxQueuedBytes). */
  maxQueuedBytesTotal: int(1024, 1024 ** 4).optional(),
  /** Running task processes of one principal (default: maxConcurrent, all of them). */
  maxRunningPerPrincipal: int(1, 1024).optional(),
  defaultTimeoutS: int(1, 86_400).default(600),
  maxTimeoutS: int(1, 86_400).default(3600),
  /** Grace between a cooperative abort and SIGKILL of the task's process. */
  cancelGraceMs: int(0, 60_000).default(500),
  /**
   * How long a task's Worker has to answer a cancel from its event loop; one that does not (stuck
   * in synchronous code) has its process ended at once, without the grace.
   */
  cancelAckMs: int(1, 60_000).default(50),
  /** Per-task log buffer; the oldest lines are dropped beyond it. */
  logLimitBytes: int(1024, 1024 ** 3).default(1024 * 1024),
  /** A single log line longer than this is cut and marked. */
  maxLogLineBytes: int(64, 1024 ** 2).default(16 * 1024),
  maxPromptBytes: int(1, 16 * 1024 ** 2).default(64 * 1024),
  maxParamsBytes: int(2, 16 * 1024 ** 2).default(256 * 1024),
  maxResultBytes: int(2, 64 * 1024 ** 2).default(1024 * 1024),
  /** How long finished tasks stay visible, and how many at most. */
  retentionS: int(1, 30 * 86_400).default(3600),
  /**
   * A task created through the 2026-07-28 Tasks extension is cancelled when no `tasks/get`,
   * `tasks/update` or `tasks/cancel` names it for this long (its client is gone); 0: never.
   */
  taskPollLeaseS: int(0, 30 * 86_400).default(60),
  maxFinished: int(1, 1_000_000).default(1000),
  /** Bytes of logs, results and inputs kept for finished tasks, all together. */
  retainedBytes: int(1024 ** 2, 64 * 1024 ** 3).default(256 * 1024 ** 2),
  /** One tool answer; `check_task_status` and `list_tasks` return fewer items to stay within it. */
  maxAnswerBytes: int(64 * 1024, 256 * 1024 ** 2).default(4 * 1024 ** 2),
  /** V8 heap cap of each task's process. */
  taskMemoryMb: int(128, 65_536).default(512),
  /** Task processes started ahead of need, so a task's code starts without a spawn. */
  warmSpares: int(0, 64).default(1),
  /**
   * Task processes kept idle after a clean end for their principal's next task, all principals
   * together (0: every process exits with its task).
   */
  idleHosts: int(0, 1024).default(4),
  /** How long a process is kept idle for its principal before it exits. */
  idleHostS: int(1, 86_400).default(30),
  /**
   * CPU time a kept process may use while idle (Linux; elsewhere only idleHostS bounds it): its
   * prepared Worker runs the kind's top-level code outside any slot. Preparing one, from the idle
   * message until its CPU time stops growing, measured 20–40 ms for the test fixtures' kinds
   * (`folder_kind`, the largest graph, and `grynya_calls`, the largest file, alike) and 70–100 ms
   * for a kind of 101 modules and 1.6 MB, 5 runs each at a load average of about 30 on 2 cores:
   * 1000 ms leaves ten times that, and ends a spinning host within a second of its CPU. At least
   * 1: preparing always costs some CPU, so 0 would end every kept process (KLYM_IDLE_HOSTS=0
   * keeps none).
   */
  idleHostCpuMs: int(1, 86_400_000).default(1000),
  maxRequestBodyBytes: int(1024, 64 * 1024 ** 2).default(4 * 1024 * 1024),
  sessionIdleS: int(1, 86_400).default(1800),
  maxSessions: int(1, 100_000).default(256),
  /** Failed authentications one client address may make at once, and per minute after that. */
  authFailuresBurst: int(1, 10_000).default(10),
  authFailuresPerMin: int(1, 100_000).default(10),
  /** Failed authentications from all addresses together per minute (also their burst). */
  authFailuresAllPerMin: int(1, 1_000_000).default(120),
  /** Open MCP sessions of one principal (default: maxSessions). */
  maxSessionsPerPrincipal: int(1, 100_000).optional(),
  /** The journal's SQLite file, or `memory` to keep nothing across a restart (default: the platform's state folder). */
  state: z.string().min(1).optional(),
  /** Lowest level of Klym's own log on stderr. */
  logLevel: z.enum(LOG_LEVELS).default("info"),
  /** Klym's own log: human lines (`pretty`) or JSON lines; unset, pretty on a terminal only. */
  logFormat: z.enum(["pretty", "json"]).optional(),
  /** `--stdio` serves its client in-process (a private Klym) instead of bridging to the service. */
  standalone: bool().default(false),
  /**
   * How long a service may go without a client or a task before it exits; 0 never. Unset, a
   * service started by a bridge uses `SERVICE_IDLE_DEFAULT_S` and a foreground Klym never exits.
   */
  serviceIdleS: int(0, 7 * 86_400).optional(),
  /** How long a bridge waits for the service it started to listen. */
  serviceStartS: int(1, 600).default(30),
  /** This node's id in a shared store (`KLYM_STATE=postgres://…`); default `<host name>:<port>`. */
  nodeId: z.string().regex(
    /^[A-Za-z0-9_.:-]{1,128}$/,
    "must be 1-128 letters, digits, '_', '.', ':' or '-'",
  ).optional(),
  /** The URL other nodes reach this one at (2025 sessions are forwarded there). */
  nodeUrl: z.string().regex(/^https?:\/\/[^\s/]+(\/\S*)?$/, "must be an http:// or https:// URL")
    .optional(),
  /** A node that has not renewed its lease for this long is lost: its tasks are settled. */
  nodeLeaseMs: int(1000, 60_000).default(10_000),
  /** How often a node renews its lease (and re-reads the tasks it runs: a missed cancel). */
  nodeRenewMs: int(100, 30_000).default(1000),
  /** Writes that may wait for an unreachable PostgreSQL; log lines beyond it are dropped. */
  sharedBufferBytes: int(1024 ** 2, 1024 ** 3).default(64 * 1024 ** 2),
  /** How long `start` and `cancel` wait for PostgreSQL to confirm their write. */
  sharedWaitMs: int(100, 60_000).default(5000),
  /** Runs a retryable kind's task may have when nodes running it are lost. */
  maxAttempts: int(1, 100).default(3),
  /** Distinct values a metric label from outside (principal, model, kind) takes; more are `other`. */
  metricsMaxLabelValues: int(1, 10_000).default(50),
  /** How long model spend per principal is kept in the journal, in days (the longest window). */
  spendRetentionDays: int(1, 3660).default(90),
}).superRefine((c, ctx) => {
  if (c.nodeRenewMs * 2 > c.nodeLeaseMs) {
    ctx.addIssue({
      code: "custom",
      path: ["nodeRenewMs"],
      message:
        `must be at most half of KLYM_NODE_LEASE_MS (${c.nodeLeaseMs}), so one late renewal does not lose a node, received ${c.nodeRenewMs}`,
    });
  }
  if (c.state !== undefined && /^postgres(ql)?:/i.test(c.state)) {
    let ok = false;
    try {
      ok = new URL(c.state).hostname !== "";
    } catch {
      // Reported below.
    }
    if (!ok) {
      ctx.addIssue({
        code: "custom",
        path: ["state"],
        message: "must be a URL such as postgres://user@host:5432/klym",
      });
    }
  }
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
  const answerFloor = 2 * (c.maxResultBytes + c.maxLogLineBytes) + 64 * 1024;
  if (c.maxAnswerBytes < answerFloor) {
    ctx.addIssue({
      code: "custom",
      path: ["maxAnswerBytes"],
      message:
        `must be at least ${answerFloor} (twice KLYM_MAX_RESULT_BYTES and KLYM_MAX_LOG_LINE_BYTES, plus 64 KiB), received ${c.maxAnswerBytes}`,
    });
  }
  const tokens = [...(c.authToken ? [c.authToken] : []), ...c.authTokens.map((t) => t.token)];
  // KLYM_AUTH_TOKEN is the principal "default": a KLYM_AUTH_TOKENS entry of that name would make
  // two tokens one principal, each seeing the other's tasks.
  const names = [...(c.authToken ? ["default"] : []), ...c.authTokens.map((t) => t.name)];
  if (new Set(tokens).size !== tokens.length || new Set(names).size !== names.length) {
    ctx.addIssue({
      code: "custom",
      path: ["authTokens"],
      message: "each token and each name must appear once (KLYM_AUTH_TOKEN included)",
    });
  }
  const atLeast = (key: keyof typeof c, value: number | undefined, floor: number, why: string) => {
    if (value !== undefined && value < floor) {
      ctx.addIssue({
        code: "custom",
        path: [key],
        message: `must be at least ${why}, received ${value}`,
      });
    }
  };
  atLeast(
    "maxQueuedTotal",
    c.maxQueuedTotal,
    c.maxQueued,
    `KLYM_MAX_QUEUED (${c.maxQueued}), one principal's share`,
  );
  const oneTask = c.maxPromptBytes + c.maxParamsBytes;
  atLeast(
    "maxQueuedBytes",
    c.maxQueuedBytes,
    oneTask,
    `KLYM_MAX_PROMPT_BYTES + KLYM_MAX_PARAMS_BYTES (${oneTask}), so that a task with the largest inputs fits`,
  );
  atLeast(
    "maxQueuedBytesTotal",
    c.maxQueuedBytesTotal,
    c.maxQueuedBytes,
    `KLYM_MAX_QUEUED_BYTES (${c.maxQueuedBytes}), one principal's share`,
  );
  const principals = tokens.length === 0 ? ["local"] : names;
  for (const admin of c.admins) {
    if (principals.includes(admin)) continue;
    ctx.addIssue({
      code: "custom",
      path: ["admins"],
      message: `names "${admin}", which is not a configured principal; name one of ${
        principals.join(", ")
      } (KLYM_AUTH_TOKEN is "default", KLYM_AUTH_TOKENS names the others, and "local" is the one principal without tokens)`,
    });
  }
  if (!c.stdio && !isLoopback(c.host) && tokens.length === 0) {
    ctx.addIssue({
      code: "custom",
      path: ["authToken"],
      message:
        `KLYM_AUTH_TOKEN is required when binding to the non-loopback host "${c.host}" (or KLYM_AUTH_TOKENS)`,
    });
  }
}).transform((c) => ({
  ...c,
  // Defaults that follow other knobs: one principal alone may use what a single user had before.
  maxQueuedTotal: c.maxQueuedTotal ?? 10 * c.maxQueued,
  maxQueuedBytesTotal: c.maxQueuedBytesTotal ?? 4 * c.maxQueuedBytes,
  maxRunningPerPrincipal: c.maxRunningPerPrincipal ?? c.maxConcurrent,
  maxSessionsPerPrincipal: c.maxSessionsPerPrincipal ?? c.maxSessions,
}));

export type Config = z.infer<typeof ConfigSchema>;

/** Environment variable of each key, the knob a user turns. */
export const ENV_NAMES: Record<keyof Config, string> = {
  host: "KLYM_HOST",
  port: "KLYM_PORT",
  stdio: "KLYM_STDIO",
  authToken: "KLYM_AUTH_TOKEN",
  authTokens: "KLYM_AUTH_TOKENS",
  admins: "KLYM_ADMINS",
  uiMaxLogins: "KLYM_UI_MAX_LOGINS",
  uiMaxLoginsTotal: "KLYM_UI_MAX_LOGINS_TOTAL",
  uiMaxStreams: "KLYM_UI_MAX_STREAMS",
  uiMaxStreamsTotal: "KLYM_UI_MAX_STREAMS_TOTAL",
  allowedOrigins: "KLYM_ALLOWED_ORIGINS",
  allowedHosts: "KLYM_ALLOWED_HOSTS",
  grynyaUrl: "KLYM_GRYNYA_URL",
  grynyaTransport: "KLYM_GRYNYA_TRANSPORT",
  grynyaToken: "KLYM_GRYNYA_TOKEN",
  grynyaHeaders: "KLYM_GRYNYA_HEADERS",
  grynyaConnectTimeoutMs: "KLYM_GRYNYA_CONNECT_TIMEOUT_MS",
  grynyaCallTimeoutMs: "KLYM_GRYNYA_CALL_TIMEOUT_MS",
  grynyaReconnects: "KLYM_GRYNYA_RECONNECTS",
  grynyaReconnectS: "KLYM_GRYNYA_RECONNECT_S",
  grynyaWrite: "KLYM_GRYNYA_WRITE",
  tasksDir: "KLYM_TASKS_DIR",
  maxKindBytes: "KLYM_MAX_KIND_BYTES",
  maxKindModules: "KLYM_MAX_KIND_MODULES",
  model: "KLYM_MODEL",
  models: "KLYM_MODELS",
  openaiCompatibleUrl: "KLYM_OPENAI_COMPATIBLE_URL",
  openaiCompatibleKey: "KLYM_OPENAI_COMPATIBLE_KEY",
  llmTimeoutMs: "KLYM_LLM_TIMEOUT_MS",
  llmRetries: "KLYM_LLM_RETRIES",
  agentMaxSteps: "KLYM_AGENT_MAX_STEPS",
  agentMaxTokens: "KLYM_AGENT_MAX_TOKENS",
  taskMaxLlmCalls: "KLYM_TASK_MAX_LLM_CALLS",
  taskMaxTokens: "KLYM_TASK_MAX_TOKENS",
  taskLlmConcurrency: "KLYM_TASK_LLM_CONCURRENCY",
  llmMaxOutputTokens: "KLYM_LLM_MAX_OUTPUT_TOKENS",
  maxLlmRequestBytes: "KLYM_MAX_LLM_REQUEST_BYTES",
  maxGrynyaCallBytes: "KLYM_MAX_GRYNYA_CALL_BYTES",
  maxConcurrent: "KLYM_MAX_CONCURRENT",
  maxQueued: "KLYM_MAX_QUEUED",
  maxQueuedTotal: "KLYM_MAX_QUEUED_TOTAL",
  maxQueuedBytes: "KLYM_MAX_QUEUED_BYTES",
  maxQueuedBytesTotal: "KLYM_MAX_QUEUED_BYTES_TOTAL",
  maxRunningPerPrincipal: "KLYM_MAX_RUNNING_PER_PRINCIPAL",
  defaultTimeoutS: "KLYM_DEFAULT_TIMEOUT_S",
  maxTimeoutS: "KLYM_MAX_TIMEOUT_S",
  cancelGraceMs: "KLYM_CANCEL_GRACE_MS",
  cancelAckMs: "KLYM_CANCEL_ACK_MS",
  logLimitBytes: "KLYM_LOG_LIMIT_BYTES",
  maxLogLineBytes: "KLYM_MAX_LOG_LINE_BYTES",
  maxPromptBytes: "KLYM_MAX_PROMPT_BYTES",
  maxParamsBytes: "KLYM_MAX_PARAMS_BYTES",
  maxResultBytes: "KLYM_MAX_RESULT_BYTES",
  retentionS: "KLYM_RETENTION_S",
  taskPollLeaseS: "KLYM_TASK_POLL_LEASE_S",
  maxFinished: "KLYM_MAX_FINISHED",
  retainedBytes: "KLYM_RETAINED_BYTES",
  maxAnswerBytes: "KLYM_MAX_ANSWER_BYTES",
  taskMemoryMb: "KLYM_TASK_MEMORY_MB",
  warmSpares: "KLYM_WARM_SPARES",
  idleHosts: "KLYM_IDLE_HOSTS",
  idleHostS: "KLYM_IDLE_HOST_S",
  idleHostCpuMs: "KLYM_IDLE_HOST_CPU_MS",
  maxRequestBodyBytes: "KLYM_MAX_REQUEST_BODY_BYTES",
  sessionIdleS: "KLYM_SESSION_IDLE_S",
  maxSessions: "KLYM_MAX_SESSIONS",
  authFailuresBurst: "KLYM_AUTH_FAILURES_BURST",
  authFailuresPerMin: "KLYM_AUTH_FAILURES_PER_MIN",
  authFailuresAllPerMin: "KLYM_AUTH_FAILURES_ALL_PER_MIN",
  maxSessionsPerPrincipal: "KLYM_MAX_SESSIONS_PER_PRINCIPAL",
  state: "KLYM_STATE",
  logLevel: "KLYM_LOG_LEVEL",
  logFormat: "KLYM_LOG_FORMAT",
  standalone: "KLYM_STANDALONE",
  serviceIdleS: "KLYM_SERVICE_IDLE_S",
  serviceStartS: "KLYM_SERVICE_START_S",
  nodeId: "KLYM_NODE_ID",
  nodeUrl: "KLYM_NODE_URL",
  nodeLeaseMs: "KLYM_NODE_LEASE_MS",
  nodeRenewMs: "KLYM_NODE_RENEW_MS",
  sharedBufferBytes: "KLYM_SHARED_BUFFER_BYTES",
  sharedWaitMs: "KLYM_SHARED_WAIT_MS",
  maxAttempts: "KLYM_MAX_ATTEMPTS",
  metricsMaxLabelValues: "KLYM_METRICS_MAX_LABEL_VALUES",
  spendRetentionDays: "KLYM_SPEND_RETENTION_DAYS",
};

/**
 * `KLYM_*` variables other parts of Klym read (the CLI, the test suite): the server accepts them
 * in its environment and leaves them alone.
 */
export const OTHER_ENV_NAMES: Record<string, string> = {
  KLYM_URL: "the CLI's Klym URL",
  KLYM_CHROMIUM: "the dashboard tests' Chromium",
  KLYM_TEST_PG_BIN: "the tests' PostgreSQL binaries",
  KLYM_SCREENSHOTS: "the dashboard tests' README screenshots",
  KLYM_TEST_JOBS: "how many end-to-end test files run at once",
};

/**
 * What an MCP bundle's host passes for an optional setting the user left empty: the manifest's
 * `${user_config.NAME}` itself (see manifest.json). Such a value counts as unset.
 */
const BUNDLE_PLACEHOLDER = /^\$\{user_config\.[A-Za-z0-9_]+\}$/;

/** Switches on the command line that take no value. */
const SWITCHES: Record<string, keyof Config> = { "--stdio": "stdio", "--standalone": "standalone" };

/** Command-line flags, each `--flag value` or `--flag=value`; `--stdio` alone switches stdio on. */
export const FLAGS: Record<string, keyof Config> = {
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
    case "authTokens":
      return value.split(",").map((s) => s.trim()).filter(Boolean).map((pair) => {
        const colon = pair.indexOf(":");
        if (colon < 1) {
          throw new KlymError(
            "CONFIG_INVALID",
            `${name} entries are name:token, received "${pair.slice(0, 20)}…"`,
          );
        }
        return { name: pair.slice(0, colon), token: pair.slice(colon + 1) };
      });
    case "admins":
      return value.split(",").map((s) => s.trim()).map((admin) => {
        if (admin === "") {
          throw new KlymError(
            "CONFIG_INVALID",
            `${name} has an empty name; write principal names comma-separated, as in alice,bob`,
          );
        }
        return admin;
      });
    case "grynyaHeaders":
      return parseJson(value, name);
    case "grynyaWrite":
      return parseWriteSetting(value, name);
    default:
      return value;
  }
}

/** KLYM_GRYNYA_WRITE: `auto`, a preset's name, inline JSON, or a JSON file's path. */
function parseWriteSetting(value: string, name: string): WriteSetting {
  const trimmed = value.trim();
  if (trimmed === "auto") return { kind: "auto" };
  if (PRESET_NAMES.includes(trimmed)) return { kind: "preset", name: trimmed };
  const inline = trimmed.startsWith("{");
  if (!inline && /^[a-z][a-z-]*$/.test(trimmed)) {
    throw new KlymError(
      "CONFIG_INVALID",
      `${name} is "${trimmed}", which is neither a preset (auto, ${
        PRESET_NAMES.join(", ")
      }), inline JSON, nor a file; name a preset, or give a template file's path or inline JSON`,
    );
  }
  const json = parseJson(inline ? value : readFile(value, name), name);
  const parsed = WriteTemplate.check(json);
  if (!parsed.success) {
    throw new KlymError(
      "CONFIG_INVALID",
      `${name} is not a write template: ${
        describeIssues(parsed.issues, "the template")
      } (a template is {"create": {"tool", "arguments"} or a list of them, "append"?, "success"?, "failure"?})`,
    );
  }
  const problems = templateProblems(parsed.data);
  if (problems.length) throw new KlymError("CONFIG_INVALID", `${name}: ${problems.join("; ")}`);
  return { kind: "template", template: parsed.data };
}

function parseJson(text: string, name: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new KlymError(
      "CONFIG_INVALID",
      `${name} is not valid JSON (${(error as Error).message})`,
    );
  }
}

function readFile(path: string, name: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    throw new KlymError(
      "CONFIG_INVALID",
      `${name} names the file "${path}", which cannot be read (${(error as Error).message})`,
    );
  }
}

export function isLoopback(host: string): boolean {
  return LOOPBACK_HOSTS.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * Builds the config from env and argv; flags win over env. Throws one `CONFIG_INVALID` listing
 * every problem, each naming the variable or flag it comes from.
 */
export function loadConfig(env: Record<string, string | undefined>, args: string[]): Config {
  const raw: Record<string, unknown> = {};
  /** Where each key's value came from, to name it in a message. */
  const source: Partial<Record<keyof Config, string>> = {};
  const problems: string[] = [];
  const known = new Set(Object.values(ENV_NAMES));
  for (const name of Object.keys(env).filter((n) => n.startsWith("KLYM_")).sort()) {
    if (known.has(name) || Object.hasOwn(OTHER_ENV_NAMES, name)) continue;
    problems.push(
      `${name} is not a Klym variable; did you mean ${
        closest(name, [...known, ...Object.keys(OTHER_ENV_NAMES)])
      }? ` +
        "(docs/configuration.md lists them all)",
    );
  }
  for (const [key, name] of Object.entries(ENV_NAMES) as [keyof Config, string][]) {
    const value = env[name];
    if (value === undefined || BUNDLE_PLACEHOLDER.test(value)) continue;
    if (value === "") {
      problems.push(`${name} is set but empty; give it a value or unset it`);
      continue;
    }
    try {
      raw[key] = fromEnv(key, value, name);
      source[key] = name;
    } catch (error) {
      if (!isKlymError(error, "CONFIG_INVALID")) throw error;
      problems.push(error.message);
    }
  }
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const switched = Object.hasOwn(SWITCHES, arg) ? SWITCHES[arg] : undefined;
    if (switched) {
      raw[switched] = true;
      source[switched] = arg;
      continue;
    }
    const [flag, inline] = arg.split(/=(.*)/s, 2) as [string, string | undefined];
    if (Object.hasOwn(SWITCHES, flag)) {
      problems.push(`Option "${flag}" takes no value, received "${arg}"; write ${flag} alone`);
      continue;
    }
    const key = Object.hasOwn(FLAGS, flag) ? FLAGS[flag] : undefined;
    if (!key) {
      const options = [...Object.keys(SWITCHES), ...Object.keys(FLAGS)];
      problems.push(
        `Unknown option "${arg}"${
          flag.startsWith("--") ? `; did you mean ${closest(flag, options)}?` : ""
        }; known: ${options.join(", ")}`,
      );
      break; // What follows may be its value: the rest of the line cannot be read reliably.
    }
    let value = inline;
    if (value === undefined && args[i + 1] !== undefined && !args[i + 1]!.startsWith("--")) {
      value = args[++i];
    }
    if (value === undefined || value === "") {
      problems.push(`Option "${flag}" needs a value: ${flag} <value> or ${flag}=<value>`);
      continue;
    }
    raw[key] = value;
    source[key] = flag;
  }
  const parsed = ConfigSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const [key, ...rest] = issue.path as [keyof Config | undefined, ...PropertyKey[]];
      const name = key ? source[key] ?? ENV_NAMES[key] : "config";
      const where = rest.length ? ` at ${rest.join(".")}` : "";
      problems.push(`${name}${where}: ${issue.message}`);
    }
  }
  if (problems.length) {
    throw new KlymError("CONFIG_INVALID", `Invalid configuration: ${problems.join("; ")}`);
  }
  return parsed.data!;
}

/** The candidate nearest to `name` by edit distance, for "did you mean" hints. */
export function closest(name: string, candidates: readonly string[]): string {
  let best = candidates[0] ?? "";
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
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
    reconnectMs: config.grynyaReconnectS * 1000,
    write: config.grynyaWrite,
  };
}
