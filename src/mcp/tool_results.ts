/** Tool results: structured content mirrored as JSON text, and domain errors as `isError` results. */
import type { CallToolResult, InputRequiredResult } from "@modelcontextprotocol/server";
import { TaskError } from "../errors.ts";
import { LlmError } from "../llm/llm_service.ts";

export function ok<T extends Record<string, unknown>>(structured: T): CallToolResult {
  return {
    content: [{ type: "text", text: JSON.stringify(structured) }],
    structuredContent: structured,
  };
}

/** Runs a tool body; a `TaskError` or `LlmError` becomes an `isError` result naming its code. */
export async function guarded<T extends CallToolResult | InputRequiredResult>(
  run: () => T | Promise<T>,
): Promise<T | CallToolResult> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof TaskError || error instanceof LlmError) {
      return {
        isError: true,
        content: [{ type: "text", text: `${error.code}: ${error.message}` }],
      };
    }
    throw error;
  }
}
