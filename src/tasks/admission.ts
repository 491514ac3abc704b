/**
 * Whether a task may start, and with what: its kind's module, its deadline, its inputs and its
 * model budget. Every refusal is a `KlymError` whose message names the field, the limit and its
 * knob. Queue room is the registry's to judge; everything about the request itself is here.
 */
import type { Config } from "../config.ts";
import { join } from "node:path";
import { KlymError } from "../errors.ts";
import type { ModelBudget } from "../protocol.ts";
import { byteLimitProblem, utf8Length } from "../text.ts";
import {
  type LlmService,
  NO_MODEL_MESSAGE,
  NO_SAMPLING_TOOLS_MESSAGE,
} from "../llm/llm_service.ts";
import type { Sampler } from "../llm/sampling.ts";
import type { KindCatalog } from "./kind_catalog.ts";
import type { TraceContext } from "./task_observer.ts";

export interface StartRequest {
  kind: string;
  /** The principal the task belongs to: only it sees, reads and cancels the task (default "local"). */
  owner?: string | undefined;
  /** A configured model for this task's `ctx.llm` calls (default: KLYM_MODEL). */
  model?: string | undefined;
  /** The starting client's own model, for `ctx.llm` when no model is configured. */
  sampler?: Sampler | undefined;
  /**
   * Why the starting client's model cannot be reached, when its session knows better than "it
   * offers no sampling" (a 2026-07-28 client is sent no request outside a call it holds).
   */
  noModelReason?: string | undefined;
  prompt?: string | undefined;
  params?: Record<string, unknown> | undefined;
  timeoutS?: number | undefined;
  /** The W3C trace context of the request that starts it, for the task's trace. */
  trace?: TraceContext | undefined;
}

export type AdmissionLimits = Pick<
  Config,
  | "defaultTimeoutS"
  | "maxTimeoutS"
  | "maxPromptBytes"
  | "maxParamsBytes"
  | "agentMaxSteps"
  | "agentMaxTokens"
  | "taskMaxLlmCalls"
  | "taskMaxTokens"
>;

export interface Admitted {
  readonly modulePath: string | undefined;
  /** The kind's module declares `export const retryable = true`: a lost node's run is redone. */
  readonly retryable: boolean;
  readonly timeoutS: number;
  readonly params: Record<string, unknown>;
  readonly budget: ModelBudget;
  /** The prompt's UTF-8 bytes and the params' JSON bytes, counted toward the queue's byte budget. */
  readonly inputBytes: number;
}

const refuse = (message: string) => new KlymError("INVALID_INPUT", `Cannot start task: ${message}`);

export function admit(
  request: StartRequest,
  limits: AdmissionLimits,
  kinds: KindCatalog,
  llm: LlmService,
): Admitted {
  const modulePath = kinds.resolve(request.kind);
  if (request.model !== undefined) {
    try {
      llm.catalog.get(request.model);
    } catch (error) {
      throw new KlymError(
        "MODEL_NOT_CONFIGURED",
        `Cannot start task: "model": ${(error as Error).message}`,
      );
    }
  }
  if (request.kind === "agent" && !llm.available(request.sampler)) {
    const why = request.noModelReason ?? NO_MODEL_MESSAGE;
    throw new KlymError("NO_MODEL", `Cannot start an agent task: ${why}`);
  }
  // An agent sends tools: with no model of Klym's own, the client's sampling must take them.
  if (request.kind === "agent" && llm.catalog.isEmpty && request.sampler?.tools === false) {
    throw new KlymError("NO_MODEL", `Cannot start an agent task: ${NO_SAMPLING_TOOLS_MESSAGE}`);
  }
  const timeoutS = request.timeoutS ?? limits.defaultTimeoutS;
  if (!Number.isInteger(timeoutS) || timeoutS < 1 || timeoutS > limits.maxTimeoutS) {
    throw refuse(
      `"timeout_s" must be a whole number between 1 and ${limits.maxTimeoutS} (KLYM_MAX_TIMEOUT_S), received ${timeoutS}`,
    );
  }
  const promptProblem = request.prompt === undefined
    ? undefined
    : byteLimitProblem("prompt", request.prompt, limits.maxPromptBytes, "KLYM_MAX_PROMPT_BYTES");
  if (promptProblem) throw refuse(`${promptProblem}; shorten it or pass large data by reference`);
  const params = request.params ?? {};
  const paramsBytes = utf8Length(JSON.stringify(params));
  if (paramsBytes > limits.maxParamsBytes) {
    throw refuse(
      `"params" is ${paramsBytes} bytes as JSON, the limit is ${limits.maxParamsBytes} (KLYM_MAX_PARAMS_BYTES)`,
    );
  }
  return {
    modulePath,
    retryable: modulePath !== undefined && kinds.tasksDir !== undefined &&
      declaresRetryable(join(kinds.tasksDir, modulePath)),
    timeoutS,
    params,
    budget: modelBudget(request.kind, params, limits),
    inputBytes: paramsBytes + (request.prompt === undefined ? 0 : utf8Length(request.prompt)),
  };
}

/** A kind that may safely run twice says so in its module, as a line `export const retryable = true`. */
const RETRYABLE = /^export const retryable = true;?\s*$/m;

function declaresRetryable(modulePath: string): boolean {
  try {
    return RETRYABLE.test(Deno.readTextFileSync(modulePath));
  } catch {
    return false;
  }
}

/** The agent's budget may be lowered by its params; every other kind gets the task-wide one. */
export function modelBudget(
  kind: string,
  params: Record<string, unknown>,
  limits: AdmissionLimits,
): ModelBudget {
  if (kind !== "agent") return { calls: limits.taskMaxLlmCalls, tokens: limits.taskMaxTokens };
  return {
    calls: wholeParam(params, "max_steps", limits.agentMaxSteps, "KLYM_AGENT_MAX_STEPS"),
    tokens: wholeParam(params, "max_tokens", limits.agentMaxTokens, "KLYM_AGENT_MAX_TOKENS"),
  };
}

function wholeParam(
  params: Record<string, unknown>,
  name: string,
  max: number,
  knob: string,
): number {
  const value = params[name];
  if (value === undefined) return max;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > max) {
    throw refuse(
      `"params.${name}" must be a whole number between 1 and ${max} (${knob}), received ${
        JSON.stringify(value)
      }`,
    );
  }
  return value;
}
