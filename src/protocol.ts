/**
 * The typed messages between the main isolate, a task's host process and the Worker inside it.
 * Each direction is one discriminated union, validated on receipt: nothing crosses as `any`.
 *
 * Main → host travels as JSON lines on the host's stdin. Host → main travels as JSON lines on the
 * host's stdout, each prefixed with a per-process channel marker, so that anything else the task
 * writes to the raw stdout is still captured as a log line and can never pass for a message.
 */
import { z } from "zod";

export const LogStream = z.enum(["stdout", "stderr"]);
export type LogStream = z.infer<typeof LogStream>;

const Failure = z.object({ code: z.string().max(64), message: z.string().max(64 * 1024) });

/** A call to one of grynya's tools, its arguments with `{{task_id}}`, `{{kind}}`, `{{text}}`, `{{time}}` placeholders. */
export const ToolTemplate = z.object({
  tool: z.string().min(1),
  arguments: z.record(z.string(), z.unknown()),
});

/** How `ctx.save` writes into grynya's graph: `create` for a task's first save, `append` after. */
export const WriteTemplate = z.object({ create: ToolTemplate, append: ToolTemplate });
export type WriteTemplate = z.infer<typeof WriteTemplate>;

/** Fits `@modelcontextprotocol/server-memory`: one entity per task, one observation per save. */
export const DEFAULT_WRITE_TEMPLATE: WriteTemplate = {
  create: {
    tool: "create_entities",
    arguments: {
      entities: [{
        name: "klym-task-{{task_id}}",
        entityType: "klym_task",
        observations: ["{{time}} {{kind}}: {{text}}"],
      }],
    },
  },
  append: {
    tool: "add_observations",
    arguments: {
      observations: [{ entityName: "klym-task-{{task_id}}", contents: ["{{time}} {{text}}"] }],
    },
  },
};

/** How a task reaches grynya. */
export const GrynyaSettings = z.object({
  url: z.string(),
  transport: z.enum(["auto", "sse", "http"]),
  headers: z.record(z.string(), z.string()),
  connectTimeoutMs: z.number().int().positive(),
  callTimeoutMs: z.number().int().positive(),
  reconnects: z.number().int().min(0),
  write: WriteTemplate,
});
export type GrynyaSettings = z.infer<typeof GrynyaSettings>;

/** What a task needs to run; identical for the host process and its Worker. */
export const TaskSpec = z.object({
  taskId: z.string(),
  kind: z.string(),
  prompt: z.string().optional(),
  params: z.record(z.string(), z.unknown()),
  /** Absolute path of a custom kind's module; built-in kinds have none. */
  modulePath: z.string().optional(),
  grynya: GrynyaSettings,
  agent: z.object({
    maxSteps: z.number().int().positive(),
    maxTokens: z.number().int().positive(),
  }),
  maxLogLineBytes: z.number().int().positive(),
  maxResultBytes: z.number().int().positive(),
});
export type TaskSpec = z.infer<typeof TaskSpec>;

/** The first line a host process reads: how to frame its output, and whom its Worker may reach. */
export const HostHello = z.object({
  channel: z.string().min(8),
  grynyaUrl: z.string(),
  /** Custom kinds' folder: a spare Worker may read it until its task's module is loaded. */
  tasksDir: z.string().optional(),
});
export type HostHello = z.infer<typeof HostHello>;

/** One turn of a model conversation, in Klym's own provider-neutral shape. */
export const LlmMessage = z.discriminatedUnion("role", [
  z.object({ role: z.literal("user"), text: z.string() }),
  z.object({
    role: z.literal("assistant"),
    text: z.string(),
    toolCalls: z.array(z.object({ id: z.string(), name: z.string(), args: z.unknown() })),
  }),
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

/** What a task asks of the model; the main isolate picks the provider and holds the keys. */
export const LlmRequest = z.object({
  model: z.string().optional(),
  system: z.string().optional(),
  messages: z.array(LlmMessage).min(1),
  tools: z.array(LlmTool).optional(),
  maxTokens: z.number().int().positive().optional(),
  temperature: z.number().min(0).max(2).optional(),
});
export type LlmRequest = z.infer<typeof LlmRequest>;

export const LlmResponse = z.object({
  model: z.string(),
  text: z.string(),
  toolCalls: z.array(z.object({ id: z.string(), name: z.string(), args: z.unknown() })),
  usage: z.object({ inputTokens: z.number(), outputTokens: z.number() }),
  finishReason: z.string(),
});
export type LlmResponse = z.infer<typeof LlmResponse>;

/** Main isolate → host process (and host → Worker). */
export const HostCommand = z.discriminatedUnion("type", [
  z.object({ type: z.literal("start"), spec: TaskSpec }),
  z.object({ type: z.literal("cancel"), reason: z.string() }),
  z.object({ type: z.literal("llm_response"), id: z.number().int(), response: LlmResponse }),
  z.object({ type: z.literal("llm_error"), id: z.number().int(), error: Failure }),
]);
export type HostCommand = z.infer<typeof HostCommand>;

/** Worker → host → main isolate: everything a task reports. */
export const TaskEvent = z.discriminatedUnion("type", [
  /** The host is up and waiting for its task. */
  z.object({ type: z.literal("ready") }),
  /** The task's own code is about to run. */
  z.object({ type: z.literal("running"), time: z.number() }),
  z.object({ type: z.literal("log"), stream: LogStream, time: z.number(), text: z.string() }),
  z.object({
    type: z.literal("progress"),
    done: z.number().finite(),
    total: z.number().finite().optional(),
    message: z.string().max(1024).optional(),
  }),
  z.object({ type: z.literal("result"), value: z.unknown() }),
  /** The task asks the model something through the main isolate (one id per call). */
  z.object({ type: z.literal("llm_request"), id: z.number().int(), request: LlmRequest }),
  z.object({ type: z.literal("llm_cancel"), id: z.number().int() }),
  z.object({ type: z.literal("failure"), error: Failure }),
]);
export type TaskEvent = z.infer<typeof TaskEvent>;

/** Cuts `text` to at most `maxBytes` UTF-8 bytes, marking the cut. */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (text.length * 3 <= maxBytes) return text;
  const bytes = new TextEncoder().encode(text);
  if (bytes.length <= maxBytes) return text;
  const marker = ` …[${bytes.length - maxBytes} bytes cut]`;
  const keep = new TextDecoder().decode(
    bytes.subarray(0, Math.max(0, maxBytes - utf8Length(marker))),
  );
  return keep.replace(/\uFFFD$/, "") + marker;
}

/** The problem with a text over its byte limit, naming the field and the knob; `undefined` if it fits. */
export function byteLimitProblem(
  field: string,
  text: string,
  maxBytes: number,
  knob: string,
): string | undefined {
  const bytes = utf8Length(text);
  return bytes > maxBytes
    ? `"${field}" is ${bytes} bytes, the limit is ${maxBytes} (${knob})`
    : undefined;
}

/** UTF-8 length without allocating. */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c < 0xdc00) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/** Kinds built into the task worker; the main isolate knows them by name only. */
export const BUILTIN_KIND_NAMES: readonly string[] = ["agent", "report", "graph_write"];
