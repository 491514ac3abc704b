/**
 * One MCP server per client session (2025-11-25) or request (2026-07-28), all sharing the task
 * registry and the one task core of both eras. Each belongs to one principal
 * (`src/principals.ts`): the tasks it starts are that principal's, and it sees no other's.
 */
import type { ModelCall } from "../tasks/task_observer.ts";
import { McpServer, MissingRequiredClientCapabilityError } from "@modelcontextprotocol/server";
import type { z } from "zod";
import type { Config } from "../config.ts";
import type { TaskRegistry } from "../tasks/task_registry.ts";
import type { KindCatalog } from "../tasks/kind_catalog.ts";
import type { LlmService } from "../llm/llm_service.ts";
import { KlymError } from "../errors.ts";
import { askingSampler } from "../llm/sampling.ts";
import { VERSION } from "../version.ts";
import { registerTaskTools, startInput, startTask, type TaskToolsSession } from "./task_tools.ts";
import { generateInput, generateResult, registerLlmTools } from "./llm_tools.ts";
import { registerRunTask } from "./run_task.ts";
import type { McpTaskCore, StartFor } from "./task_core.ts";
import { installNativeTasks } from "./era_2025.ts";
import { installTasksExtension } from "./era_2026.ts";
import { LiveSession } from "./live_session.ts";
import { wrapRequestHandler } from "./sdk_seam.ts";

const SERVER_INFO = { name: "klym", version: VERSION } as const;

/** What every session's server shares: made once, next to the registry (`klym.ts`). */
export interface McpServices {
  readonly registry: TaskRegistry;
  /** The task core of both eras, owned by the registry's lifetime. */
  readonly core: McpTaskCore;
  readonly config: Config;
  /** The kinds the tools name in their descriptions. */
  readonly kinds: KindCatalog;
  /** The model service `llm_generate` and `list_models` answer from. */
  readonly llm: LlmService;
  /** Model calls `llm_generate` makes outside a task, by principal (metrics and spend). */
  readonly modelCalls?: (owner: string, call: ModelCall) => void;
}

export interface SessionOptions {
  /** The principal the session serves. */
  owner: string;
  /**
   * The protocol era the server serves: `legacy` for a 2025-era session (initialize, push-style
   * sampling, `tasks/*` of 2025-11-25), `modern` for 2026-07-28 requests (one server per request,
   * input-required results, the Tasks extension).
   */
  era: "legacy" | "modern";
}

/**
 * Why a task started by `start_async_agent_task` (or a `tasks/*`-less call) in the 2026-07-28 era
 * has no model of its client's: that era's server sends no request outside a call the client
 * holds, and such a task outlives the call that started it.
 */
export const NO_MODEL_IN_2026 =
  "No model is configured (KLYM_MODEL), and a client on protocol 2026-07-28 is sent no request " +
  "outside a call it holds, so a task started with start_async_agent_task cannot ask its model. " +
  "Call run_task instead (it asks your client's model through the call's input-required results, " +
  "or through tasks/update when called as a Tasks-extension task), set KLYM_MODEL=provider:model " +
  "and the provider's API key, or connect with protocol version 2025-11-25";

/** Why a 2026-07-28 request's task has no model: its client capabilities declare no sampling. */
export const NO_SAMPLING_IN_REQUEST =
  "No model is configured (KLYM_MODEL), and this request's client capabilities " +
  '(_meta["io.modelcontextprotocol/clientCapabilities"]) declare no sampling, with tools for an ' +
  "agent. Give your client a sampling handler (FastMCP: sampling_handler=), or set " +
  "KLYM_MODEL=provider:model and the provider's API key";

/**
 * `live` for a task started by a 2026-07-28 request: the client's model, when its request
 * declares `sampling`, is asked through the task's input requests (answered by `tasks/update`).
 */
function askingSession(
  live: LiveSession,
  core: McpTaskCore,
  capabilities: Record<string, unknown>,
): TaskToolsSession {
  return {
    owner: live.owner,
    noModelReason: NO_SAMPLING_IN_REQUEST,
    started: (task) => live.started(task),
    samplerFor: (holder) =>
      askingSampler(capabilities.sampling, (params, signal, timeoutMs) => {
        const task = holder.record;
        if (!task) throw new Error("A task asked the client's model before it was started");
        const request = { method: "sampling/createMessage", params };
        return core.inputs(task).park(request, signal, timeoutMs);
      }),
  };
}

/** The parsed input, or the refusal a plain call would give (naming the field and the fix). */
function validated<T>(
  parsed: { success: true; data: T } | { success: false; error: z.ZodError },
): T {
  if (parsed.success) return parsed.data;
  throw new KlymError(
    "INVALID_INPUT",
    `Input validation error: ${parsed.error.issues.map((i) => i.message).join("; ")}`,
  );
}

/** The server of one session (2025-11-25) or one request (2026-07-28) of `session.owner`. */
export function createMcpServer(services: McpServices, session: SessionOptions): McpServer {
  const { registry, core, config, kinds, llm } = services;
  const server = new McpServer(SERVER_INFO, {
    capabilities: { logging: {} },
    instructions:
      "Klym runs long tasks in the background. start_async_agent_task returns a task_id at once; " +
      "poll check_task_status with it (passing next_log_cursor back) until the status is final; cancel_task stops a task. " +
      "run_task runs one and waits for its result (or, called as an MCP task, returns the task at once).",
  });
  const live = new LiveSession(server, {
    registry,
    core,
    owner: session.owner,
    canRequest: session.era !== "modern",
    ...(session.era === "modern" ? { noModelReason: NO_MODEL_IN_2026 } : {}),
  });
  registerTaskTools(server, { registry, kinds, config, session: live });
  registerRunTask(server, live, {
    ...services,
    era: session.era,
    askingSession: (capabilities) => askingSession(live, core, capabilities),
  });
  registerLlmTools(
    server,
    llm,
    config.maxPromptBytes,
    session.era,
    (call) => services.modelCalls?.(session.owner, call),
  );

  const runInput = startInput(config);
  const generateInputSchema = generateInput(config.maxPromptBytes);
  const startFor: StartFor = (tool, args, capabilities) => {
    if (tool !== "run_task" && tool !== "llm_generate") return undefined;
    // A 2026-07-28 client takes no server requests: its task asks through `tasks/get` instead.
    const starter = capabilities ? askingSession(live, core, capabilities) : live;
    return (async () => {
      if (tool === "llm_generate") {
        const input = validated(await generateInputSchema.safeParseAsync(args));
        // As the plain call: with no model to use, a request that declares no sampling is refused.
        if (capabilities && !capabilities.sampling && !llm.available(undefined)) {
          throw new MissingRequiredClientCapabilityError(
            { requiredCapabilities: { sampling: {} } },
            `Missing required client capability: sampling; llm_generate has no model of Klym's own to use. ${NO_SAMPLING_IN_REQUEST}`,
          );
        }
        const { prompt, model, system, max_tokens, temperature } = input;
        const params = { system, max_tokens, temperature };
        const task = startTask(registry, starter, { kind: "generate", prompt, model, params });
        return { task, resultOf: generateResult };
      }
      return {
        task: startTask(registry, starter, validated(await runInput.safeParseAsync(args))),
      };
    })();
  };
  // Each era has its own tasks: 2025-11-25's `tasks/*` in a session, the 2026-07-28 extension
  // per request. Both read and start the same registry tasks, through the one core.
  const era = { registry, core, owner: session.owner, startFor };
  if (session.era === "modern") installTasksExtension(server, era);
  else {
    installNativeTasks(server, {
      ...era,
      onNativeStart: (task, progressToken) => live.startedNative(task, progressToken),
    });
  }

  wrapRequestHandler(server, "logging/setLevel", (original) => async (request, ctx) => {
    const answer = await original(request, ctx);
    live.setLevel(String(request.params?.level));
    return answer;
  });
  const onclose = server.server.onclose;
  server.server.onclose = () => {
    live.close();
    onclose?.();
  };
  return server;
}
