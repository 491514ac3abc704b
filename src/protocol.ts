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
import { z } from "zod";
import { MAX_FAILURE_CHARS } from "./task_failure.ts";

export const LogStream = z.enum(["stdout", "stderr"]);
export type LogStream = z.infer<typeof LogStream>;

/** How something failed, as plain data; messages are cut to MAX_FAILURE_CHARS on receipt. */
export const Failure = z.object({
  code: z.string().min(1).max(64),
  message: z.string().transform((m) => m.slice(0, MAX_FAILURE_CHARS)),
});
export type Failure = z.infer<typeof Failure>;

/**
 * One call to one of grynya's tools. Strings in `arguments` may hold placeholders (see
 * src/grynya/write_template.ts): a string that is exactly `"{{text}}"`, `"{{value}}"`,
 * `"{{value_json}}"` or `"{{steps.N.structured|json|text.field}}"` becomes that JSON value; only
 * `{{task_id}}`, `{{kind}}`, `{{seq}}` and `{{time}}` may sit inside a longer string.
 */
export const WriteStep = z.strictObject({
  tool: z.string().min(1).max(128),
  arguments: z.record(z.string(), z.unknown()),
  /** The tool may safely run twice: re-sent when the connection drops mid-call. */
  idempotent: z.boolean().optional(),
  /**
   * Lets saved text be the whole of an argument grynya runs as code (a query, SQL, a script):
   * refused by default, since a save of `DELETE FROM …` would then run (src/grynya/code_arguments.ts).
   */
  unsafe_text_as_code: z.literal(true).optional(),
});
export type WriteStep = z.infer<typeof WriteStep>;
const WriteSteps = z.union([WriteStep, z.array(WriteStep).min(1).max(8)]);

/**
 * How `ctx.save` writes into grynya's graph: `create` for a task's first save, `append` for the
 * later ones (`create` again when absent); each one call or a short list of calls. A reply is a
 * failure when grynya says `isError`, when its text matches `failure` (default: it starts with
 * "error" or "failed"), or when `success` is given and the last call's text does not match it.
 */
export const WriteTemplate = z.strictObject({
  create: WriteSteps,
  append: WriteSteps.optional(),
  success: z.string().optional(),
  failure: z.string().optional(),
});
export type WriteTemplate = z.infer<typeof WriteTemplate>;

/** KLYM_GRYNYA_WRITE: pick a preset from grynya's tools, a named preset, or the user's template. */
export const WriteSetting = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("auto") }),
  z.object({ kind: z.literal("preset"), name: z.string() }),
  z.object({ kind: z.literal("template"), template: WriteTemplate }),
]);
export type WriteSetting = z.infer<typeof WriteSetting>;

/** How a task's host reaches grynya. The token lives here, and so only in the host process. */
export const GrynyaSettings = z.object({
  url: z.string(),
  transport: z.enum(["auto", "sse", "http"]),
  headers: z.record(z.string(), z.string()),
  connectTimeoutMs: z.number().int().positive(),
  callTimeoutMs: z.number().int().positive(),
  reconnects: z.number().int().min(0),
  /** How long a dropped connection may take to come back (KLYM_GRYNYA_RECONNECT_S). */
  reconnectMs: z.number().int().positive(),
  write: WriteSetting,
});
export type GrynyaSettings = z.infer<typeof GrynyaSettings>;

/** What the server lets a task spend on the model; enforced by the server, shown to the task. */
export const ModelBudget = z.object({
  calls: z.number().int().positive(),
  tokens: z.number().int().positive(),
});
export type ModelBudget = z.infer<typeof ModelBudget>;

/** What task code sees of its task: no settings, no credentials. */
export const WorkerSpec = z.object({
  taskId: z.string(),
  kind: z.string(),
  prompt: z.string().optional(),
  params: z.record(z.string(), z.unknown()),
  budget: ModelBudget,
});
export type WorkerSpec = z.infer<typeof WorkerSpec>;

/** What a host needs to run a task: the Worker's part, the module, and how to reach grynya. */
export const TaskSpec = WorkerSpec.extend({
  /** A custom kind's entry module in its snapshot (see `KindCatalog.snapshot`); built-in kinds have none. */
  modulePath: z.string().optional(),
  grynya: GrynyaSettings,
});
export type TaskSpec = z.infer<typeof TaskSpec>;

/** The limits a host enforces on what its Worker sends, fixed when the process is spawned. */
export const HostLimits = z.object({
  memoryMb: z.number().int().positive(),
  /** Log bytes that may wait in the host while the server reads slowly (KLYM_LOG_LIMIT_BYTES). */
  logLimitBytes: z.number().int().positive(),
  maxLogLineBytes: z.number().int().positive(),
  maxResultBytes: z.number().int().positive(),
  maxLlmRequestBytes: z.number().int().positive(),
  maxGrynyaCallBytes: z.number().int().positive(),
  /** How long the task's Worker has to answer a cancel before the host ends (KLYM_CANCEL_ACK_MS). */
  cancelAckMs: z.number().int().positive(),
});
export type HostLimits = z.infer<typeof HostLimits>;

/**
 * A host's exit code when it ended its process because the task's Worker did not answer a cancel
 * within KLYM_CANCEL_ACK_MS (its code was stuck in a synchronous loop).
 */
export const HOST_EXIT_CANCEL_UNANSWERED = 4;

/**
 * The first line a host reads: how to frame its output, its limits, and whether it runs its own
 * memory watchdog (`watchdog`: where the server cannot sample its memory, see `memory_sampler.ts`).
 */
export const HostHello = z.object({
  channel: z.string().min(16),
  limits: HostLimits,
  watchdog: z.boolean(),
});
export type HostHello = z.infer<typeof HostHello>;

/** One turn of a model conversation, in Klym's own provider-neutral shape. */
const ToolCall = z.object({ id: z.string(), name: z.string(), args: z.unknown() });
export const LlmMessage = z.discriminatedUnion("role", [
  z.object({ role: z.literal("user"), text: z.string() }),
  z.object({ role: z.literal("assistant"), text: z.string(), toolCalls: z.array(ToolCall) }),
  z.object({
    role: z.literal("tool"),
    results: z.array(z.object({
      id: z.string(),
      name: z.string(),
      output: z.string(),
      isError: z.boolean(),
    })),
  }),
]);
export type LlmMessage = z.infer<typeof LlmMessage>;

export const LlmTool = z.object({
  name: z.string(),
  description: z.string().optional(),
  inputSchema: z.record(z.string(), z.unknown()),
});
export type LlmTool = z.infer<typeof LlmTool>;

/** What a task asks of the model; the server picks the provider, holds the keys and the budget. */
export const LlmRequest = z.object({
  model: z.string().optional(),
  system: z.string().optional(),
  messages: z.array(LlmMessage).min(1),
  tools: z.array(LlmTool).optional(),
  maxTokens: z.number().int().positive().optional(),
  temperature: z.number().min(0).max(2).optional(),
});
export type LlmRequest = z.infer<typeof LlmRequest>;

/** `maxTokens` of a model request that names none. */
export const DEFAULT_MAX_TOKENS = 4096;

export const LlmResponse = z.object({
  model: z.string(),
  text: z.string(),
  toolCalls: z.array(ToolCall),
  usage: z.object({ inputTokens: z.number(), outputTokens: z.number() }),
  finishReason: z.string(),
});
export type LlmResponse = z.infer<typeof LlmResponse>;

const CallId = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const Progress = z.object({
  type: z.literal("progress"),
  done: z.number().finite(),
  total: z.number().finite().optional(),
  message: z.string().transform((m) => m.slice(0, 1024)).optional(),
});
const LlmRequestEvent = z.object({
  type: z.literal("llm_request"),
  id: CallId,
  request: LlmRequest,
});
const LlmCancel = z.object({ type: z.literal("llm_cancel"), id: CallId });

/** A save's reply is kept up to this many characters. */
export const MAX_SAVE_REPLY_CHARS = 2048;
/** One save as the server keeps it (`check_task_status` shows the last ones as `saves`). */
export const SavedSummary = z.object({
  seq: z.number().int().min(0),
  tools: z.array(z.string().max(128)).max(8),
  ok: z.boolean(),
  time: z.string().max(64),
  reply: z.string().max(MAX_SAVE_REPLY_CHARS),
});
export type SavedSummary = z.infer<typeof SavedSummary>;
const FailureEvent = z.object({ type: z.literal("failure"), error: Failure });
const ModelAnswer = z.discriminatedUnion("type", [
  z.object({ type: z.literal("llm_response"), id: CallId, response: LlmResponse }),
  z.object({ type: z.literal("llm_error"), id: CallId, error: Failure }),
]);
export type ModelAnswer = z.infer<typeof ModelAnswer>;

/** Server → host. */
export const HostCommand = z.discriminatedUnion("type", [
  z.object({ type: z.literal("start"), spec: TaskSpec }),
  z.object({ type: z.literal("cancel"), reason: z.string() }),
  ...ModelAnswer.options,
]);
export type HostCommand = z.infer<typeof HostCommand>;

/**
 * What a task's host did with grynya, for the operator's metrics and traces: a connect or
 * reconnect attempt, or one call (`op`: a GrynyaCall's op; `save` is a whole `ctx.save`), with its
 * outcome (`ok` or the error's code) and how long it took.
 */
export const GrynyaActivity = z.object({
  what: z.enum(["connect", "reconnect", "call"]),
  op: z.string().max(32).optional(),
  outcome: z.string().max(64),
  ms: z.number().finite().min(0).max(86_400_000),
});
export type GrynyaActivity = z.infer<typeof GrynyaActivity>;

/** Host → server: everything a task reports, already bounded by its host; the server checks again. */
export const HostEvent = z.discriminatedUnion("type", [
  /** The task's own code is about to run (the server stamps the time). */
  z.object({ type: z.literal("running") }),
  /**
   * After a task's last word: its Worker is gone, its grynya session closed, and this host may
   * take another task of the same principal (`src/tasks/process_pool.ts` decides). A host that is
   * not fit for it (a crash, a cancel, a violation, a kind asking for a fresh process) exits instead.
   */
  z.object({ type: z.literal("idle") }),
  /** Log lines in order, and how many the host had to drop because the server read too slowly. */
  z.object({
    type: z.literal("logs"),
    lines: z.array(z.tuple([LogStream, z.string()])).max(10_000),
    dropped: z.number().int().min(0),
  }),
  Progress,
  /** The result as JSON text: stored as text, so its size in memory is its size in bytes. */
  z.object({ type: z.literal("result"), json: z.string() }),
  FailureEvent,
  LlmRequestEvent,
  LlmCancel,
  /** A save to grynya ended (landed or not), with grynya's reply. */
  z.object({ type: z.literal("saved"), save: SavedSummary }),
  z.object({ type: z.literal("grynya"), activity: GrynyaActivity }),
]);
export type HostEvent = z.infer<typeof HostEvent>;

/** What task code may ask of grynya through its host. */
export const GrynyaCall = z.discriminatedUnion("op", [
  z.object({ op: z.literal("connect") }),
  z.object({ op: z.literal("list_tools") }),
  z.object({ op: z.literal("list_resources") }),
  z.object({ op: z.literal("read_resource"), uri: z.string() }),
  z.object({ op: z.literal("list_prompts") }),
  z.object({
    op: z.literal("get_prompt"),
    name: z.string(),
    args: z.record(z.string(), z.string()),
  }),
  z.object({
    op: z.literal("call_tool"),
    name: z.string(),
    args: z.record(z.string(), z.unknown()),
  }),
  z.object({ op: z.literal("save"), value: z.unknown() }),
  z.object({ op: z.literal("write_strategy") }),
]);
export type GrynyaCall = z.infer<typeof GrynyaCall>;

/** Worker → host: what task code reports or asks for. Untrusted: the host validates and bounds it. */
export const WorkerEvent = z.discriminatedUnion("type", [
  /** `freshProcess`: the kind exports `freshProcess = true`, so its host is never used again. */
  z.object({ type: z.literal("running"), freshProcess: z.literal(true).optional() }),
  z.object({ type: z.literal("log"), stream: LogStream, text: z.string() }),
  Progress,
  z.object({ type: z.literal("result"), json: z.string() }),
  FailureEvent,
  LlmRequestEvent,
  LlmCancel,
  z.object({ type: z.literal("grynya"), id: CallId, call: GrynyaCall }),
  /** The Worker's event loop turned after a cancel: the echo of the cancel's `nonce`. */
  z.object({ type: z.literal("cancel_ack"), nonce: z.string().max(64) }),
]);
export type WorkerEvent = z.infer<typeof WorkerEvent>;

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
