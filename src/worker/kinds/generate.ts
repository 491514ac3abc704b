/**
 * Kind `generate`: one completion of `prompt` (with `params.system`, `params.max_tokens`,
 * `params.temperature`), answered as `llm_generate` answers. It is what `llm_generate` runs when
 * called as an MCP task, so that call is a registry task like any other.
 */
import type { TaskContext } from "../task_context.ts";
import { KlymError } from "../../errors.ts";

export async function generate(ctx: TaskContext) {
  const { system, max_tokens, temperature } = ctx.params;
  if (typeof ctx.prompt !== "string" || ctx.prompt === "") {
    throw new KlymError("invalid_params", 'generate needs a "prompt" to complete');
  }
  const optional = <T>(
    value: unknown,
    is: (v: unknown) => v is T,
    field: string,
  ): T | undefined => {
    if (value === undefined || is(value)) return value as T | undefined;
    throw new KlymError("invalid_params", `generate: "params.${field}" is not valid`);
  };
  const isString = (v: unknown): v is string => typeof v === "string";
  const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
  const systemText = optional(system, isString, "system");
  const maxTokens = optional(max_tokens, isNumber, "max_tokens");
  const temp = optional(temperature, isNumber, "temperature");
  const answer = await ctx.llm.generate({
    messages: [{ role: "user", text: ctx.prompt }],
    ...(systemText === undefined ? {} : { system: systemText }),
    ...(maxTokens === undefined ? {} : { maxTokens }),
    ...(temp === undefined ? {} : { temperature: temp }),
  });
  return {
    text: answer.text,
    model: answer.model,
    usage: { input_tokens: answer.usage.inputTokens, output_tokens: answer.usage.outputTokens },
    finish_reason: answer.finishReason,
  };
}
