/**
 * The typed messages between the server (main isolate), a task's host process, and the Worker that
 * runs the task's code inside it. Each direction is one discriminated union, validated on receipt:
 * nothing crosses as `any`, and nothing a task sends is trusted for its shape, its size or its time.
 *
 * Server → host travels as JSON lines on the host's stdin. Host → server travels as JSON lines on
 * the host's stdout, each behind a per-process channel marker that task code never sees, so that
 * whatever else reaches that stdout is kept as a log line and can never pass for a message.
 * Host ↔ Worker travels by `postMessage`; the Worker's side is typed by the same unions.
 */
import * as s from "./shape.ts";
import { MAX_FAILURE_CHARS } from "./task_failure.ts";

export const LogStream = s.enum(["stdout", "stderr"]);
export type LogStream = s.Infer<typeof LogStream>;

/** How something failed, as plain data; messages are cut to MAX_FAILURE_CHARS on receipt. */
export const Failure = s.object({
  code: s.string().min(1).max(64),
  message: s.string().cut(MAX_FAILURE_CHARS),
});
export type Failure = s.Infer<typeof Failure>;

/**
 * One call to one of grynya's tools. Strings in `arguments` may hold placeholders (see
 * src/grynya/write_template.ts): a string that is exactly `"{{text}}"`, `"{{value}}"`,
 * `"{{value_json}}"` or `"{{steps.N.structured|json|text.field}}"` becomes that JSON value; only
 * `{{task_id}}`, `{{kind}}`, `{{seq}}` and `{{time}}` may sit inside a longer string.
 */
export const WriteStep = s.strictObject({
  tool: s.string().min(1).max(128),
  arguments: s.record(s.unknown()),
  /** The tool may safely run twice: re-sent when the connection drops mid-call. */
  idempotent: s.boolean().optional(),
  /**
   * Lets saved text be the whole of an argument grynya runs as code (a query, SQL, a script):
   * refused by default, since a save of `DELETE FROM …` would then run (src/grynya/code_arguments.ts).
   */
  unsafe_text_as_code: s.literal(true).optional(),
});
export type WriteStep = s.Infer<typeof WriteStep>;
const WriteSteps = s.union([WriteStep, s.array(WriteStep).min(1).max(8)]);

/**
 * How `ctx.save` writes into grynya's graph: `create` for a task's first save, `append` for the
 * later ones (`create` again when absent); each one call or a short list of calls. A reply is a
 * failure when grynya says `isError`, when its text matches `failure` (default: it starts with
 * "error" or "failed"), or when `success` is given and the last call's text does not match it.
 */
export const WriteTemplate = s.strictObject({
  create: WriteSteps,
  append: WriteSteps.optional(),
  success: s.string().optional(),
  failure: s.string().optional(),
});
export type WriteTemplate = s.Infer<typeof WriteTemplate>;

/** KLYM_GRYNYA_WRITE: pick a preset from grynya's tools, a named preset, or the user's template. */
export const WriteSetting = s.discriminatedUnion("kind", [
  s.object({ kind: s.literal("auto") }),
  s.object({ kind: s.literal("preset"), name: s.string() }),
  s.object({ kind: s.literal("template"), template: WriteTemplate }),
]);
export type WriteSetting = s.Infer<typeof WriteSetting>;

/** How a task's host reaches grynya. The token lives here, and so only in the host process. */
export const GrynyaSettings = s.object({
  url: s.string(),
  transport: s.enum(["auto", "sse", "http"]),
  headers: s.record(s.string()),
  connectTimeoutMs: s.number().int().positive(),
  callTimeoutMs: s.number().int().positive(),
  reconnects: s.number().int().min(0),
  /** How long a dropped connection may take to come back (KLYM_GRYNYA_RECONNECT_S). */
  reconnectMs: s.number().int().positive(),
  write: WriteSetting,
});
export type GrynyaSettings = s.Infer<typeof GrynyaSettings>;

/** What the server lets a task spend on the model; enforced by the server, shown to the task. */
export const ModelBudget = s.object({
  calls: s.number().int().positive(),
  tokens: s.number().int().positive(),
});
export type ModelBudget = s.Infer<typeof ModelBudget>;

/** What task code sees of its task: no settings, no credentials. */
export const WorkerSpec = s.object({
  taskId: s.string(),
  kind: s.string(),
  prompt: s.string().optional(),
  params: s.record(s.unknown()),
  budget: ModelBudget,
});
export type WorkerSpec = s.Infer<typeof WorkerSpec>;

/** What a host needs to run a task: the Worker's part, the module, and how to reach grynya. */
export const TaskSpec = WorkerSpec.extend({
  /** A custom kind's entry module in its snapshot (see `KindCatalog.snapshot`); built-in kinds have none. */
  modulePath: s.string().optional(),
  grynya: GrynyaSettings,
});
export type TaskSpec = s.Infer<typeof TaskSpec>;

/** The limits a host enforces on what its Worker sends, fixed when the process is spawned. */
export const HostLimits = s.object({
  memoryMb: s.number().int().positive(),
  /** Log bytes that may wait in the host while the server reads slowly (KLYM_LOG_LIMIT_BYTES). */
  logLimitBytes: s.number().int().positive(),
  maxLogLineBytes: s.number().int().positive(),
  maxResultBytes: s.number().int().positive(),
  maxLlmRequestBytes: s.number().int().positive(),
  maxGrynyaCallBytes: s.number().int().positive(),
  /** How long the task's Worker has to answer a cancel before the host ends (KLYM_CANCEL_ACK_MS). */
  cancelAckMs: s.number().int().positive(),
});
export type HostLimits = s.Infer<typeof HostLimits>;

/**
 * A host's exit code when it ended its process because the task's Worker did not answer a cancel
 * within KLYM_CANCEL_ACK_MS (its code was stuck in a synchronous loop).
 */
export const HOST_EXIT_CANCEL_UNANSWERED = 4;

/**
 * The first line a host reads: how to frame its output, its limits, and whether it runs its own
 * memory watchdog (`watchdog`: where the server cannot sample its memory, see `memory_sampler.ts`).
 */
export const HostHello = s.object({
  channel: s.string().min(16),
  limits: HostLimits,
  watchdog: s.boolean(),
});
export type HostHello = s.Infer<typeof HostHello>;

/**
 * One turn of a model conversation, in Klym's own provider-neutral shape. A task sends its tool
 * calls' arguments as JSON data (`s.json()`, walked and copied); the server's answer is its own.
 */
const ToolCall = s.object({ id: s.string(), name: s.string(), args: s.json() });
const AnsweredToolCall = s.object({ id: s.string(), name: s.string(), args: s.unknown() });
export const LlmMessage = s.discriminatedUnion("role", [
  s.object({ role: s.literal("user"), text: s.string() }),
  s.object({ role: s.literal("assistant"), text: s.string(), toolCalls: s.array(ToolCall) }),
  s.object({
    role: s.literal("tool"),
    results: s.array(s.object({
      id: s.string(),
      name: s.string(),
      output: s.string(),
      isError: s.boolean(),
    })),
  }),
]);
export type LlmMessage = s.Infer<typeof LlmMessage>;

export const LlmTool = s.object({
  name: s.string(),
  description: s.string().optional(),
  inputSchema: s.record(s.json()),
});
export type LlmTool = s.Infer<typeof LlmTool>;

/** What a task asks of the model; the server picks the provider, holds the keys and the budget. */
export const LlmRequest = s.object({
  model: s.string().optional(),
  system: s.string().optional(),
  messages: s.array(LlmMessage).min(1),
  tools: s.array(LlmTool).optional(),
  maxTokens: s.number().int().positive().optional(),
  temperature: s.number().min(0).max(2).optional(),
});
export type LlmRequest = s.Infer<typeof LlmRequest>;

/** `maxTokens` of a model request that names none. */
export const DEFAULT_MAX_TOKENS = 4096;

export const LlmResponse = s.object({
  model: s.string(),
  text: s.string(),
  toolCalls: s.array(AnsweredToolCall),
  usage: s.object({ inputTokens: s.number(), outputTokens: s.number() }),
  finishReason: s.string(),
});
export type LlmResponse = s.Infer<typeof LlmResponse>;

const CallId = s.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const Progress = s.object({
  type: s.literal("progress"),
  done: s.number(),
  total: s.number().optional(),
  message: s.string().cut(1024).optional(),
});
const LlmRequestEvent = s.object({
  type: s.literal("llm_request"),
  id: CallId,
  request: LlmRequest,
});
const LlmCancel = s.object({ type: s.literal("llm_cancel"), id: CallId });

/** A save's reply is kept up to this many characters. */
export const MAX_SAVE_REPLY_CHARS = 2048;
/** One save as the server keeps it (`check_task_status` shows the last ones as `saves`). */
export const SavedSummary = s.object({
  seq: s.number().int().min(0),
  tools: s.array(s.string().max(128)).max(8),
  ok: s.boolean(),
  time: s.string().max(64),
  reply: s.string().max(MAX_SAVE_REPLY_CHARS),
});
export type SavedSummary = s.Infer<typeof SavedSummary>;
const FailureEvent = s.object({ type: s.literal("failure"), error: Failure });
const ModelAnswer = s.discriminatedUnion("type", [
  s.object({ type: s.literal("llm_response"), id: CallId, response: LlmResponse }),
  s.object({ type: s.literal("llm_error"), id: CallId, error: Failure }),
]);
export type ModelAnswer = s.Infer<typeof ModelAnswer>;

/** Server → host. */
export const HostCommand = s.discriminatedUnion("type", [
  s.object({ type: s.literal("start"), spec: TaskSpec }),
  s.object({ type: s.literal("cancel"), reason: s.string() }),
  ...ModelAnswer.options,
]);
export type HostCommand = s.Infer<typeof HostCommand>;

/**
 * What a task's host did with grynya, for the operator's metrics and traces: a connect or
 * reconnect attempt, or one call (`op`: a GrynyaCall's op; `save` is a whole `ctx.save`), with its
 * outcome (`ok` or the error's code) and how long it took.
 */
export const GrynyaActivity = s.object({
  what: s.enum(["connect", "reconnect", "call"]),
  op: s.string().max(32).optional(),
  outcome: s.string().max(64),
  ms: s.number().min(0).max(86_400_000),
});
export type GrynyaActivity = s.Infer<typeof GrynyaActivity>;

/** Host → server: everything a task reports, already bounded by its host; the server checks again. */
export const HostEvent = s.discriminatedUnion("type", [
  /** The task's own code is about to run (the server stamps the time). */
  s.object({ type: s.literal("running") }),
  /**
   * After a task's last word: its Worker is gone, its grynya session closed, and this host may
   * take another task of the same principal (`src/tasks/process_pool.ts` decides). A host that is
   * not fit for it (a crash, a cancel, a violation, a kind asking for a fresh process) exits instead.
   */
  s.object({ type: s.literal("idle") }),
  /** Log lines in order, and how many the host had to drop because the server read too slowly. */
  s.object({
    type: s.literal("logs"),
    lines: s.array(s.tuple([LogStream, s.string()])).max(10_000),
    dropped: s.number().int().min(0),
  }),
  Progress,
  /** The result as JSON text: stored as text, so its size in memory is its size in bytes. */
  s.object({ type: s.literal("result"), json: s.string() }),
  FailureEvent,
  LlmRequestEvent,
  LlmCancel,
  /** A save to grynya ended (landed or not), with grynya's reply. */
  s.object({ type: s.literal("saved"), save: SavedSummary }),
  s.object({ type: s.literal("grynya"), activity: GrynyaActivity }),
]);
export type HostEvent = s.Infer<typeof HostEvent>;

/** What task code may ask of grynya through its host. */
export const GrynyaCall = s.discriminatedUnion("op", [
  s.object({ op: s.literal("connect") }),
  s.object({ op: s.literal("list_tools") }),
  s.object({ op: s.literal("list_resources") }),
  s.object({ op: s.literal("read_resource"), uri: s.string() }),
  s.object({ op: s.literal("list_prompts") }),
  s.object({
    op: s.literal("get_prompt"),
    name: s.string(),
    args: s.record(s.string()),
  }),
  s.object({
    op: s.literal("call_tool"),
    name: s.string(),
    args: s.record(s.json()),
  }),
  s.object({ op: s.literal("save"), value: s.json() }),
  s.object({ op: s.literal("write_strategy") }),
]);
export type GrynyaCall = s.Infer<typeof GrynyaCall>;

/** Worker → host: what task code reports or asks for. Untrusted: the host validates and bounds it. */
export const WorkerEvent = s.discriminatedUnion("type", [
  /** `freshProcess`: the kind exports `freshProcess = true`, so its host is never used again. */
  s.object({ type: s.literal("running"), freshProcess: s.literal(true).optional() }),
  s.object({ type: s.literal("log"), stream: LogStream, text: s.string() }),
  Progress,
  s.object({ type: s.literal("result"), json: s.string() }),
  FailureEvent,
  LlmRequestEvent,
  LlmCancel,
  s.object({ type: s.literal("grynya"), id: CallId, call: GrynyaCall }),
  /** The Worker's event loop turned after a cancel: the echo of the cancel's `nonce`. */
  s.object({ type: s.literal("cancel_ack"), nonce: s.string().max(64) }),
]);
export type WorkerEvent = s.Infer<typeof WorkerEvent>;

/** Host → Worker. */
export type WorkerCommand =
  | { type: "start"; spec: WorkerSpec; moduleUrl?: string }
  /** `nonce` is fresh for each task's cancel: only a Worker that received it can echo it. */
  | { type: "cancel"; reason: string; nonce: string }
  | ModelAnswer
  | { type: "grynya_result"; id: number; value: unknown }
  | { type: "grynya_error"; id: number; error: Failure };

/** The write strategy a task's saves use, or why none fits grynya. */
export interface WriteStrategyInfo {
  readonly ok: boolean;
  /** A preset's name, or "template" for the user's own. */
  readonly name?: string;
  /** How it was chosen: from grynya's tools, named in KLYM_GRYNYA_WRITE, or the user's template. */
  readonly source: "auto" | "preset" | "template";
  /** The tools it calls. */
  readonly tools?: readonly string[];
  readonly error?: Failure;
  /** A template drafted from grynya's tools, to put in KLYM_GRYNYA_WRITE. */
  readonly hint?: string;
}

/** Who grynya is and how it was reached, as the host tells task code. */
export interface GrynyaInfo {
  readonly name: string;
  readonly version: string;
  readonly transport: "sse" | "http";
}

/** What `ctx.save` answers: every save keeps grynya's reply, and says whether it landed. */
export interface SaveRecord {
  /** 1 for a task's first save, then 2, 3, … (failed saves count too). */
  readonly seq: number;
  readonly ok: boolean;
  /** The write strategy used (a preset's name, or "template"). */
  readonly strategy?: string;
  /** The tools called, in order (the first one of them that failed is the last here). */
  readonly tools: readonly string[];
  readonly time: string;
  /** grynya's reply (the last call's), cut to 2 KiB. */
  readonly reply: string;
  readonly error?: Failure;
  /** What to do about a failure, e.g. a template drafted from grynya's tools. */
  readonly hint?: string;
}

/** Kinds built into the task worker; the server knows them by name only. */
export const BUILTIN_KIND_NAMES: readonly string[] = ["agent", "report", "graph_write", "generate"];
