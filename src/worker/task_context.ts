/**
 * The `ctx` a task kind receives: its inputs, its abort signal and the ways to report back. Every
 * capability goes through the host: grynya and graph writes are made by the host process, model
 * calls by the server. Task code holds no connection, no permission and no credential.
 */
import type { CallToolResult } from "@modelcontextprotocol/client";
import type {
  GrynyaInfo,
  LlmRequest,
  LlmResponse,
  ModelBudget,
  SaveRecord,
  WorkerSpec,
  WriteStrategyInfo,
} from "../protocol.ts";
import type { HostLink } from "./host_link.ts";

export interface ToolInfo {
  readonly name: string;
  readonly description?: string;
  readonly inputSchema: Record<string, unknown>;
}

/** The task's view of grynya: each call is made by the host, bounded by its timeouts. */
export interface GrynyaHandle {
  readonly info: GrynyaInfo;
  capabilities(): Record<string, unknown>;
  listTools(): Promise<{ tools: ToolInfo[] }>;
  listResources(): Promise<{ resources: { uri: string; name?: string }[] }>;
  readResource(uri: string): Promise<{ contents: unknown[] }>;
  listPrompts(): Promise<{ prompts: { name: string; description?: string }[] }>;
  getPrompt(name: string, args?: Record<string, string>): Promise<{ messages: unknown[] }>;
  callTool(name: string, args?: Record<string, unknown>): Promise<CallToolResult>;
  /** How `ctx.save` writes into grynya (lists grynya's tools the first time), or why it cannot. */
  writeStrategy(): Promise<WriteStrategyInfo>;
}

export interface TaskContext {
  readonly taskId: string;
  readonly kind: string;
  readonly prompt: string | undefined;
  readonly params: Readonly<Record<string, unknown>>;
  /** Aborts on cancel, on the task's deadline and on server shutdown. */
  readonly signal: AbortSignal;
  /** Shows in `check_task_status` as `progress`. */
  progress(done: number, total?: number, message?: string): void;
  /** grynya, reached through the host (connected on first use, closed when the task ends). */
  grynya(): Promise<GrynyaHandle>;
  /**
   * Stores an intermediate result in grynya's graph through its write tools. Resolves with the
   * save's record, `ok: false` (with grynya's reply, an error and maybe a hint) when grynya refused
   * or no write strategy fits; rejects only when grynya is lost (`grynya_unreachable`, `grynya_timeout`)
   * or, with a TypeError, when `value` is neither text nor JSON.
   */
  save(value: unknown): Promise<SaveRecord>;
  /** The model, reached through the server (keys never enter a task). */
  readonly llm: {
    generate(request: LlmRequest, options?: { signal?: AbortSignal }): Promise<LlmResponse>;
  };
  /** What the server lets this task spend on the model (it refuses calls beyond it). */
  readonly budget: ModelBudget;
}

export type TaskKind = (ctx: TaskContext) => unknown;

export type ReportProgress = (done: number, total?: number, message?: string) => void;

export function createTaskContext(
  spec: WorkerSpec,
  signal: AbortSignal,
  progress: ReportProgress,
  link: HostLink,
): TaskContext {
  let handle: Promise<GrynyaHandle> | undefined;
  const op = <T>(call: Parameters<HostLink["grynya"]>[0]) => link.grynya(call) as Promise<T>;
  const connect = async (): Promise<GrynyaHandle> => {
    const { info, capabilities } = await op<{
      info: GrynyaInfo;
      capabilities: Record<string, unknown>;
    }>({ op: "connect" });
    return {
      info,
      capabilities: () => capabilities,
      listTools: () => op({ op: "list_tools" }),
      listResources: () => op({ op: "list_resources" }),
      readResource: (uri) => op({ op: "read_resource", uri }),
      listPrompts: () => op({ op: "list_prompts" }),
      getPrompt: (name, args = {}) => op({ op: "get_prompt", name, args }),
      callTool: async (name, args = {}) =>
        await op({
          op: "call_tool",
          name,
          args: toJson(args, "grynya.callTool needs JSON arguments") as Record<string, unknown>,
        }),
      writeStrategy: () => op({ op: "write_strategy" }),
    };
  };
  return {
    taskId: spec.taskId,
    kind: spec.kind,
    prompt: spec.prompt,
    params: spec.params,
    signal,
    progress(done, total, message) {
      if (!Number.isFinite(done) || (total !== undefined && !Number.isFinite(total))) {
        throw new TypeError(`ctx.progress needs finite numbers, received ${done}, ${total}`);
      }
      progress(done, total, message === undefined ? undefined : String(message).slice(0, 1024));
    },
    grynya: () =>
      handle ??= connect().catch((error) => {
        handle = undefined;
        throw error;
      }),
    save: async (value) =>
      await op<SaveRecord>({
        op: "save",
        value: typeof value === "string"
          ? value
          : toJson(value, "ctx.save needs text or a JSON value"),
      }),
    llm: {
      generate: async (request, options) =>
        await link.generate(
          toJson(request, "ctx.llm.generate needs a JSON request") as LlmRequest,
          options,
        ),
    },
    budget: spec.budget,
  };
}

/**
 * `value` as JSON data, as the host takes it: a Date becomes text, functions are dropped, an object
 * in two places becomes two copies. Throws a TypeError (`refusal`) where JSON has nothing to write,
 * and JSON.stringify's own on a BigInt or a cycle: the ctx methods calling it are async, so either
 * is their promise's rejection, not a throw.
 */
function toJson(value: unknown, refusal: string): unknown {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError(refusal);
  return JSON.parse(text);
}
