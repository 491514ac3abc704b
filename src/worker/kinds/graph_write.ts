// deno-lint-ignore-file no-console -- task code: console is how a task writes its log
/** Kind `graph_write`: store `params.text` (or the prompt, or `params.value` as JSON) in grynya's graph. */
import type { TaskContext } from "../task_context.ts";
import { type ErrorCode, KlymError } from "../../errors.ts";

export async function graphWrite(ctx: TaskContext) {
  const { text, value } = ctx.params;
  const content = typeof text === "string" ? text : value !== undefined ? value : ctx.prompt;
  if (content === undefined || content === "") {
    throw new KlymError(
      "invalid_params",
      'graph_write needs something to save: "params.text" (a string), "params.value" (any JSON) or a "prompt"',
    );
  }
  const saved = await ctx.save(content);
  if (!saved.ok) {
    const error = saved.error ??
      { code: "grynya_write_rejected", message: "the save did not land" };
    // The host's save reports one of Klym's codes (grynya_*).
    throw new KlymError(
      error.code as ErrorCode,
      saved.hint ? `${error.message}; ${saved.hint}` : error.message,
    );
  }
  console.log(`saved to grynya with ${saved.tools.join(" + ")} (strategy ${saved.strategy})`);
  return { saved };
}
