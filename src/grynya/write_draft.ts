/**
 * A template drafted from grynya's tool list when no preset fits, for a message saying what to set.
 * A draft keeps every save and never runs saved text as code:
 * - one record per save: names, keys and ids get the task's id and the save's number;
 * - the text goes in a value (content, text, value, …), never in a key, a name or a query;
 * - a tool that takes a query and its parameters gets a fixed statement with the text as a
 *   parameter; a tool that takes only a whole query is never used;
 * - the draft, filled with a sample save, is checked against the tool's input schema first.
 * When no tool can take the text safely, the answer says so plainly.
 */
import type { WriteStep, WriteTemplate } from "../protocol.ts";
import { isCodeDescription, isCodeName } from "./code_arguments.ts";
import { fillStep } from "./write_template.ts";
import type { ToolSchema } from "./write_presets.ts";

export interface DraftTool extends ToolSchema {
  readonly annotations?: { readonly readOnlyHint?: boolean | undefined } | undefined;
}

export type Draft =
  | { readonly kind: "template"; readonly template: WriteTemplate }
  | { readonly kind: "none"; readonly reason: string };

interface Schema {
  type?: unknown;
  properties?: Record<string, Schema>;
  required?: unknown;
  items?: Schema;
  enum?: unknown;
  pattern?: unknown;
  maxLength?: unknown;
  minLength?: unknown;
  description?: unknown;
}

const RECORD_ID = "klym-{{task_id}}-{{seq}}";
const WRITES = /create|add|write|store|save|remember|insert|upsert|append|memor|put|set|record/i;
const READS =
  /read|get|list|search|delete|remove|drop|clear|schema|find|recall|open|stats|explain|describe|query_?graph_?readonly|update|edit|rename|move/i;
/** Arguments that name or identify a record. */
const ID_NAME = /(^|_|[a-z])(name|id|key|file|filename|path|title|slug|uri|url)$/i;
/** Arguments that pick where records go (one place for every save). */
const CONTAINER_NAME =
  /project|graph|database|^db|collection|namespace|bucket|table|index|folder|directory|dir$|category|scope|space|kind|type|label|tag/i;
/** Arguments that hold a record's text. */
const TEXT_NAME =
  /^(content|contents|text|body|value|note|notes|memory|memories|observation|observations|insight|message|data|description|information|fact|facts|entry|summary|document|details)$/i;
/** Parameters of a query: values, never code. */
const PARAMS_NAME = /^(params|parameters|query_params|values|bindings|args|arguments|variables)$/i;
const SAMPLE = {
  task_id: "t_0123abcd",
  kind: "report",
  seq: 2,
  time: "2026-01-01T00:00:00.000Z",
  text: "It's a sample, with spaces; DELETE FROM notes --\nsecond line",
  value: "sample",
};

const typeOf = (s: Schema | undefined) =>
  Array.isArray(s?.type) ? s.type.find((t) => t !== "null") : s?.type;
const requiredOf = (s: Schema | undefined): string[] =>
  Array.isArray(s?.required) ? s.required.filter((r): r is string => typeof r === "string") : [];

/** Whether an argument is one grynya runs as code, by its name or its description. */
const isCode = (name: string, schema: Schema | undefined) =>
  isCodeName(name) || isCodeDescription(schema?.description);

/**
 * The likeliest safe write for grynya, or why there is none. Tools are tried from the likeliest
 * writer down; the first whose draft passes its own schema wins.
 */
export function draftTemplate(tools: readonly DraftTool[]): Draft {
  const score = (t: DraftTool) => (WRITES.test(t.name) ? 2 : 0) - (READS.test(t.name) ? 3 : 0);
  const candidates = tools
    .filter((t) => t.annotations?.readOnlyHint !== true && score(t) >= 0)
    .sort((a, b) => score(b) - score(a));
  const codeOnly: string[] = [];
  for (const tool of candidates) {
    const template = sqlDraft(tool) ?? valueDraft(tool);
    if (!template) {
      if (Object.entries(tool.inputSchema.properties ?? {}).some(([k, s]) => isCode(k, s))) {
        codeOnly.push(tool.name);
      }
      continue;
    }
    if (stepsFit(template, tool)) return { kind: "template", template };
  }
  const why = codeOnly.length
    ? `its writes (${
      codeOnly.join(", ")
    }) take a whole query or statement, where saved text would run as code`
    : "none of its tools takes a text as a value";
  return {
    kind: "none",
    reason:
      `grynya has no tool that can store text safely: ${why}. Saves stay in the task's journal (check_task_status shows them) but do not reach grynya; give grynya a tool that takes the text as a value (a notes or memory tool, or a query tool with parameters)`,
  };
}

/** A query tool with parameters: a fixed table of saves, the text one of the parameters. */
function sqlDraft(tool: DraftTool): WriteTemplate | undefined {
  const props = (tool.inputSchema.properties ?? {}) as Record<string, Schema>;
  const query = Object.keys(props).find((k) =>
    isCode(k, props[k]) && typeOf(props[k]) === "string"
  );
  const params = Object.keys(props).find((k) => PARAMS_NAME.test(k));
  if (!query || !params) return undefined;
  const about = `${tool.name} ${tool.description ?? ""} ${props[query]?.description ?? ""}`;
  if (/cypher|graph/i.test(about) && !/sql/i.test(about)) return undefined; // the cypher preset
  const positional = typeOf(props[params]) === "array";
  const others = requiredOf(tool.inputSchema as Schema).filter((r) => r !== query && r !== params);
  if (others.some((o) => typeOf(props[o]) !== "string")) return undefined;
  const fixed = Object.fromEntries(others.map((o) => [o, "klym"]));
  const columns = ["task_id", "kind", "seq", "text", "time"];
  const insert: WriteStep = {
    tool: tool.name,
    arguments: {
      ...fixed,
      [query]: `INSERT INTO klym_saves (${columns.join(", ")}) VALUES (${
        columns.map((c) => positional ? "?" : `:${c}`).join(", ")
      })`,
      [params]: positional
        ? columns.map((c) => `{{${c}}}`)
        : Object.fromEntries(columns.map((c) => [c, `{{${c}}}`])),
    },
  };
  return {
    create: [
      {
        tool: tool.name,
        arguments: {
          ...fixed,
          [query]:
            "CREATE TABLE IF NOT EXISTS klym_saves (task_id TEXT NOT NULL, kind TEXT, seq INTEGER NOT NULL, text TEXT NOT NULL, time TEXT, PRIMARY KEY (task_id, seq))",
          [params]: positional ? [] : {},
        },
        idempotent: true,
      },
      insert,
    ],
    append: insert,
  };
}

/** A tool that takes the text as a value: the text in its text field, one record per save. */
function valueDraft(tool: DraftTool): WriteTemplate | undefined {
  const schema = tool.inputSchema as Schema;
  if (Object.entries(schema.properties ?? {}).some(([k, s]) => isCode(k, s))) return undefined;
  const placed = { text: false };
  const args = objectFor(schema, placed, 0);
  if (!placed.text || !args) return undefined;
  return { create: { tool: tool.name, arguments: args } };
}

/** Values for an object schema's required properties (and its text field), or undefined. */
function objectFor(
  schema: Schema,
  placed: { text: boolean },
  depth: number,
): Record<string, unknown> | undefined {
  const props = schema.properties ?? {};
  const required = requiredOf(schema);
  const names = Object.keys(props);
  // The text goes in the first text-like field; failing that, in the one free string field.
  const textField = names.find((k) => TEXT_NAME.test(k) && !ID_NAME.test(k)) ??
    (() => {
      const free = names.filter((k) =>
        typeOf(props[k]) === "string" && !ID_NAME.test(k) && !CONTAINER_NAME.test(k) &&
        props[k]?.enum === undefined
      );
      return free.length === 1 ? free[0] : undefined;
    })();
  const keys = [...new Set([...required, ...(textField ? [textField] : [])])];
  const out: Record<string, unknown> = {};
  for (const key of keys) {
    const value = valueFor(key, props[key], key === textField && !placed.text, placed, depth);
    if (value === undefined) {
      if (required.includes(key)) return undefined;
      continue;
    }
    out[key] = value;
  }
  return out;
}

function valueFor(
  key: string,
  schema: Schema | undefined,
  isText: boolean,
  placed: { text: boolean },
  depth: number,
): unknown {
  const type = typeOf(schema);
  if (Array.isArray(schema?.enum)) return schema.enum[0];
  if (type === "number" || type === "integer") return "{{seq}}";
  if (type === "boolean") return false;
  if (type === "array") {
    const item = schema?.items;
    const inner = valueFor(key, item, isText, placed, depth);
    return inner === undefined ? undefined : [inner];
  }
  if (type === "object" || schema?.properties) {
    if (depth >= 3) return undefined;
    if (schema?.properties && Object.keys(schema.properties).length) {
      return objectFor(schema, placed, depth + 1);
    }
    if (!isText) return undefined;
    placed.text = true;
    return { task_id: "{{task_id}}", seq: "{{seq}}", text: "{{text}}" };
  }
  if (isText) {
    placed.text = true;
    return "{{text}}";
  }
  if (ID_NAME.test(key) && !CONTAINER_NAME.test(key)) return RECORD_ID;
  if (type === "string" || type === undefined) return "klym";
  return undefined;
}

/** Whether the draft's calls, filled with a sample save, satisfy the tool's input schema. */
function stepsFit(template: WriteTemplate, tool: DraftTool): boolean {
  const steps = [template.create, template.append ?? []].flat() as WriteStep[];
  return steps.every((step) =>
    schemaProblems(fillStep(step.arguments, SAMPLE, []), tool.inputSchema).length === 0
  );
}

/** What is wrong with a value for a JSON schema (the common keywords only), one line each. */
export function schemaProblems(value: unknown, json: unknown, path = "$"): string[] {
  const schema = (json && typeof json === "object" ? json : {}) as Schema;
  const problems: string[] = [];
  const type = typeOf(schema);
  const actual = Array.isArray(value)
    ? "array"
    : value === null
    ? "null"
    : Number.isInteger(value)
    ? "integer"
    : typeof value;
  if (
    typeof type === "string" && type !== actual && !(type === "number" && actual === "integer")
  ) {
    return [`${path} is ${actual}, the schema wants ${type}`];
  }
  if (Array.isArray(schema.enum) && !schema.enum.includes(value)) {
    problems.push(`${path} is not one of ${JSON.stringify(schema.enum)}`);
  }
  if (typeof value === "string") {
    if (typeof schema.pattern === "string") {
      try {
        if (!new RegExp(schema.pattern, "u").test(value)) {
          problems.push(`${path} does not match ${schema.pattern}`);
        }
      } catch { /* a pattern this engine cannot read is not held against the draft */ }
    }
    if (typeof schema.maxLength === "number" && value.length > schema.maxLength) {
      problems.push(`${path} is longer than ${schema.maxLength}`);
    }
    if (typeof schema.minLength === "number" && value.length < schema.minLength) {
      problems.push(`${path} is shorter than ${schema.minLength}`);
    }
  }
  if (Array.isArray(value) && schema.items) {
    value.forEach((v, i) => problems.push(...schemaProblems(v, schema.items!, `${path}[${i}]`)));
  }
  if (value && typeof value === "object" && !Array.isArray(value)) {
    const record = value as Record<string, unknown>;
    for (const r of requiredOf(schema)) {
      if (!(r in record)) problems.push(`${path}.${r} is required`);
    }
    for (const [k, v] of Object.entries(record)) {
      const sub = schema.properties?.[k];
      if (sub) problems.push(...schemaProblems(v, sub, `${path}.${k}`));
    }
  }
  return problems;
}
