/** Tool results: structured content mirrored as JSON text, and domain errors as `isError` results. */
import type { CallToolResult, InputRequiredResult } from "@modelcontextprotocol/server";
import { KlymError } from "../errors.ts";

export function ok<T extends Record<string, unknown>>(structured: T): CallToolResult {
  return {
    content: [{ type: "text", text: JSON.stringify(structured) }],
    structuredContent: structured,
  };
}

/** Runs a tool body; a `KlymError` becomes an `isError` result naming its code. */
export async function guarded<T extends CallToolResult | InputRequiredResult>(
  run: () => T | Promise<T>,
): Promise<T | CallToolResult> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof KlymError) {
      return {
        isError: true,
        content: [{ type: "text", text: `${error.code}: ${error.message}` }],
      };
    }
    throw error;
  }
}
