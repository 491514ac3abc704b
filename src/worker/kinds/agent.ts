// deno-lint-ignore-file no-console -- task code: console is how a task writes its log
/**
 * Kind `agent`, the autonomous loop: the model gets the prompt, grynya's tools and two of Klym's own
 * (save progress to the graph, report progress), and the task runs the tool calls it asks for until
 * it gives a final answer, or a step limit, the token budget, a repeated-call loop, cancel or the
 * deadline ends it. Every step is logged; the status shows steps, tokens and the last action.
 */
import type { LlmMessage, LlmTool, SaveRecord } from "../../protocol.ts";
import type { GrynyaHandle, TaskContext } from "../task_context.ts";
import { KlymError } from "../../errors.ts";
import { summarizeNames } from "../../text.ts";

/** The same call (tool and arguments) this many times in a row is a loop. */
const MAX_REPEATED_CALLS = 3;
/** Model turns in a row in which every tool call failed, before giving up. */
const MAX_FAILING_TURNS = 3;
/** A tool's output is cut to this before it goes back to the model. */
const MAX_TOOL_OUTPUT_CHARS = 16_384;
const LOG_PREVIEW_CHARS = 300;

const DEFAULT_SYSTEM =
  "You are Klym, an agent working on a knowledge graph through its tools. Use the tools to do what " +
  "the user asks. Save important intermediate findings with save_progress. When you are done, answer " +
  "with the final result as plain text and call no tool.";

const OWN_TOOLS: LlmTool[] = [
  {
    name: "save_progress",
    description: "Save an intermediate finding or result into the knowledge graph.",
    inputSchema: {
      type: "object",
      properties: { text: { type: "string", description: "What to save" } },
      required: ["text"],
    },
  },
  {
    name: "report_progress",
    description: "Tell the user how far along the work is.",
    inputSchema: {
      type: "object",
      properties: {
        done: { type: "number" },
        total: { type: "number" },
        message: { type: "string" },
      },
      required: ["done"],
    },
  },
];

const elapsed = (since: number) => Math.round((performance.now() - since) * 10) / 10;

const preview = (value: unknown) => {
  const text = (typeof value === "string" ? value : JSON.stringify(value)).replace(/\s+/g, " ");
  return text.length > LOG_PREVIEW_CHARS ? `${text.slice(0, LOG_PREVIEW_CHARS)}…` : text;
};

export async function agent(ctx: TaskContext) {
  if (!ctx.prompt) {
    throw new KlymError("invalid_params", 'An agent task needs a "prompt" saying what to do');
  }
  // The server checked params.max_steps and params.max_tokens at start and enforces the budget;
  // the loop stops on its own before the server would refuse a call.
  const maxSteps = ctx.budget.calls;
  const tokenBudget = ctx.budget.tokens;
  const system = typeof ctx.params.system === "string" ? ctx.params.system : DEFAULT_SYSTEM;
  const model = typeof ctx.params.model === "string" ? ctx.params.model : undefined;

  const grynya = await ctx.grynya();
  const offered = (await grynya.listTools()).tools;
  const allow = ctx.params.tools;
  if (allow !== undefined && (!Array.isArray(allow) || allow.some((t) => typeof t !== "string"))) {
    throw new KlymError("invalid_params", '"params.tools" must be a list of grynya tool names');
  }
  const unknown = (allow as string[] | undefined)?.filter((n) =>
    !offered.some((t) => t.name === n)
  );
  if (unknown?.length) {
    throw new KlymError(
      "invalid_params",
      `"params.tools" names tools grynya does not offer: ${unknown.join(", ")}; it offers: ${
        offered.map((t) => t.name).join(", ")
      }`,
    );
  }
  const grynyaTools: LlmTool[] = offered
    .filter((t) => !allow || (allow as string[]).includes(t.name))
    .map((t) => ({
      name: t.name,
      ...(t.description ? { description: t.description } : {}),
      inputSchema: t.inputSchema as Record<string, unknown>,
    }));
  const tools = [...grynyaTools, ...OWN_TOOLS];
  const toolNames = new Set(tools.map((t) => t.name));
  console.log(
    `agent: ${
      summarizeNames("grynya tools", grynyaTools.map((t) => t.name))
    }; up to ${maxSteps} steps`,
  );

  const messages: LlmMessage[] = [{ role: "user", text: ctx.prompt }];
  const usage = { inputTokens: 0, outputTokens: 0 };
  const writes: SaveRecord[] = [];
  const recent: string[] = [];
  let failingTurns = 0;
  let usedModel = model ?? "";

  for (let step = 1; step <= maxSteps; step++) {
    if (usage.inputTokens + usage.outputTokens >= tokenBudget) {
      throw new KlymError(
        "token_budget",
        `Stopped after ${step - 1} steps: ${
          usage.inputTokens + usage.outputTokens
        } tokens used, the budget is ${tokenBudget}`,
      );
    }
    const modelStart = performance.now();
    const response = await ctx.llm.generate({
      system,
      messages,
      tools,
      ...(model ? { model } : {}),
      ...(typeof ctx.params.temperature === "number"
        ? { temperature: ctx.params.temperature }
        : {}),
    });
    usedModel = response.model;
    usage.inputTokens += response.usage.inputTokens;
    usage.outputTokens += response.usage.outputTokens;
    const modelMs = elapsed(modelStart);
    if (response.text) {
      console.log(`step ${step}: model (${modelMs} ms): ${preview(response.text)}`);
    } else console.log(`step ${step}: model answered in ${modelMs} ms`);

    if (response.toolCalls.length === 0) {
      console.log(`step ${step}: final answer`);
      ctx.progress(step, step, `done: final answer after ${step} steps`);
      return { answer: response.text, steps: step, graph_writes: writes, usage, model: usedModel };
    }
    messages.push({ role: "assistant", text: response.text, toolCalls: response.toolCalls });

    const results: Extract<LlmMessage, { role: "tool" }>["results"] = [];
    let failures = 0;
    for (const call of response.toolCalls) {
      console.log(`step ${step}: → ${call.name}(${preview(call.args ?? {})})`);
      const signature = `${call.name} ${JSON.stringify(call.args ?? {})}`;
      recent.push(signature);
      if (recent.length > MAX_REPEATED_CALLS) recent.shift();
      if (
        recent.length >= MAX_REPEATED_CALLS &&
        recent.slice(-MAX_REPEATED_CALLS).every((s) => s === signature)
      ) {
        throw new KlymError(
          "loop_detected",
          `The model called ${call.name} with the same arguments ${MAX_REPEATED_CALLS} times in a row; stopped at step ${step}`,
        );
      }
      const toolStart = performance.now();
      const { output, isError } = await runTool(ctx, grynya, toolNames, call, writes);
      const toolMs = elapsed(toolStart);
      if (isError) failures++;
      console.log(`step ${step}: ← (${toolMs} ms) ${isError ? "error: " : ""}${preview(output)}`);
      results.push({
        id: call.id,
        name: call.name,
        output: output.slice(0, MAX_TOOL_OUTPUT_CHARS),
        isError,
      });
    }
    messages.push({ role: "tool", results });
    failingTurns = failures === response.toolCalls.length ? failingTurns + 1 : 0;
    if (failingTurns >= MAX_FAILING_TURNS) {
      throw new KlymError(
        "tool_errors",
        `Every tool call failed in ${MAX_FAILING_TURNS} model turns in a row; last: ${
          results.at(-1)?.output
        }`,
      );
    }
    const last = response.toolCalls.at(-1)!.name;
    ctx.progress(
      step,
      maxSteps,
      `step ${step}/${maxSteps}, tokens ${usage.inputTokens} in / ${usage.outputTokens} out, last: ${last}`,
    );
  }
  throw new KlymError(
    "max_steps",
    `Stopped after ${maxSteps} steps without a final answer (params.max_steps, KLYM_AGENT_MAX_STEPS)`,
  );
}

async function runTool(
  ctx: TaskContext,
  grynya: GrynyaHandle,
  toolNames: Set<string>,
  call: { name: string; args: unknown },
  writes: SaveRecord[],
): Promise<{ output: string; isError: boolean }> {
  const args = (call.args && typeof call.args === "object" ? call.args : {}) as Record<
    string,
    unknown
  >;
  if (!toolNames.has(call.name)) {
    return {
      output: `There is no tool "${call.name}"; the tools are: ${[...toolNames].join(", ")}`,
      isError: true,
    };
  }
  if (call.name === "save_progress") {
    if (typeof args.text !== "string" || !args.text) {
      return { output: 'save_progress needs "text", a non-empty string', isError: true };
    }
    let saved;
    try {
      saved = await ctx.save(args.text);
    } catch (error) {
      return toolFailure(error);
    }
    writes.push(saved);
    if (!saved.ok) {
      const error = saved.error ?? { code: "grynya_write_rejected", message: "not saved" };
      return { output: `${error.code}: ${error.message}`, isError: true };
    }
    return { output: `saved (#${saved.seq})`, isError: false };
  }
  if (call.name === "report_progress") {
    if (typeof args.done !== "number") {
      return { output: 'report_progress needs "done", a number', isError: true };
    }
    ctx.progress(
      args.done,
      typeof args.total === "number" ? args.total : undefined,
      typeof args.message === "string" ? args.message : undefined,
    );
    return { output: "reported", isError: false };
  }
  let result;
  try {
    result = await grynya.callTool(call.name, args);
  } catch (error) {
    return toolFailure(error);
  }
  const output =
    (result.content ?? []).map((c) => c.type === "text" ? c.text : `[${c.type}]`).join("\n") ||
    JSON.stringify(result.structuredContent ?? null);
  return { output, isError: Boolean(result.isError) };
}

/** grynya refusing a call goes back to the model; losing grynya (or the task's end) ends the task. */
const FATAL_CODES = new Set(["grynya_unreachable", "grynya_timeout"]);

function toolFailure(error: unknown): { output: string; isError: true } {
  if (!(error instanceof KlymError) || FATAL_CODES.has(error.code)) throw error;
  return { output: `${error.code}: ${error.message}`, isError: true };
}
