/**
 * Output schemas that clients validate cheaply. A client validates every tool result against the
 * tool's `outputSchema`, and some do it from scratch on every call: the Python MCP SDK checks the
 * schema itself against its dialect's meta-schema each time, and the 2020-12 meta-schema (the
 * default dialect, built of vocabularies joined by `$dynamicRef`) costs it about five times what
 * draft-07's does for the same schema (7.5 ms per `check_task_status` on a quiet machine, see
 * docs/benchmarks.md). The tools' results keep every type and field: the schema is the same one,
 * declared in draft-07, which the MCP SDKs' validators support beside 2020-12 (`$schema` names it,
 * as MCP allows), and uses no keyword whose meaning differs between the two.
 */
import { z } from "zod";

/** The dialect every output schema declares. */
export const OUTPUT_SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#";

/**
 * `schema` as the SDK takes it (validating with zod, typed as before), advertised to clients in
 * draft-07. Converted once, here: a schema that draft-07 cannot express fails at start.
 */
export function leanOutput<T extends z.ZodType>(schema: T): T {
  const json = z.toJSONSchema(schema, { target: "draft-7", io: "output" });
  if (json.$schema !== OUTPUT_SCHEMA_DIALECT) {
    throw new Error(`An output schema converted to ${json.$schema}, not draft-07`);
  }
  const standard = schema["~standard"];
  const jsonSchema = { input: () => json, output: () => json };
  return Object.create(schema, {
    "~standard": { value: { ...standard, jsonSchema }, enumerable: false },
  }) as T;
}
