/**
 * Write templates: how one `ctx.save` becomes a short list of calls to grynya's own tools.
 *
 * Values go in as JSON values, never spliced into text. A string that is exactly `"{{text}}"`
 * becomes the saved text; `"{{value}}"` the saved JSON value itself; `"{{steps.0.json.id}}"` a field
 * of an earlier call's reply. Only Klym's own scalars (`task_id`, `kind`, `seq`, `time`), whose
 * characters Klym controls, may sit inside a longer string. So no text a task or a model produces
 * can ever become part of a query: put it in the server's own query parameters instead.
 */
import type { CallToolResult } from "@modelcontextprotocol/client";
import type { WriteStep, WriteTemplate } from "../protocol.ts";
import { KlymError } from "../errors.ts";
import { codePlacementProblem, codePlacements } from "./code_arguments.ts";

/** Placeholders that stand for a whole JSON value. */
const WHOLE_ONLY = ["text", "value", "value_json"] as const;
/** Klym's own scalars: safe inside a longer string (ids, kind names, numbers, ISO times). */
const INLINE_SAFE = ["task_id", "kind", "seq", "time"] as const;
const PLACEHOLDERS: readonly string[] = [...INLINE_SAFE, ...WHOLE_ONLY];

const PLACEHOLDER = /\{\{([^{}]*)\}\}/g;
const WHOLE = /^\{\{([^{}]*)\}\}$/;
const STEP_REF = /^steps\.(\d+)\.(structured|json|text)((?:\.[A-Za-z0-9_$-]+)*)$/;

/** The reply of one call, kept for later steps and for the save's record. */
export interface StepReply {
  readonly structured: unknown;
  readonly json: unknown;
  readonly text: string;
}

export interface SaveValues {
  readonly task_id: string;
  readonly kind: string;
  readonly seq: number;
  readonly time: string;
  readonly text: string;
  readonly value: unknown;
}

export function stepsOf(steps: WriteStep | readonly WriteStep[]): readonly WriteStep[] {
  return Array.isArray(steps) ? steps : [steps as WriteStep];
}

/** Every tool a template calls. */
export function templateTools(template: WriteTemplate): string[] {
  return [
    ...new Set([...stepsOf(template.create), ...stepsOf(template.append ?? [])].map((s) => s.tool)),
  ];
}

/**
 * What is wrong with a template, one sentence per problem (empty when it is sound): unknown or
 * misspelled placeholders, a text-like placeholder inside a longer string or as the whole of an
 * argument grynya runs as code, a step reference to a step that does not come earlier, a regex that
 * does not compile.
 */
export function templateProblems(template: WriteTemplate): string[] {
  const problems: string[] = [];
  for (const phase of ["create", "append"] as const) {
    const steps = template[phase];
    if (steps === undefined) continue;
    stepsOf(steps).forEach((step, index) => {
      const where = `${phase}${Array.isArray(steps) ? `[${index}]` : ""} (${step.tool})`;
      walkStrings(step.arguments, (s, path) => {
        if (path.endsWith(" key")) {
          problems.push(`${where} at ${path}: placeholders are not filled in object keys ("${s}")`);
          return;
        }
        const whole = WHOLE.exec(s);
        for (const [, inner] of s.matchAll(PLACEHOLDER)) {
          const name = inner!.trim();
          const ref = STEP_REF.exec(name);
          if (ref) {
            if (Number(ref[1]) >= index) {
              problems.push(
                `${where} at ${path}: {{${name}}} refers to a step that does not come before it`,
              );
            } else if (!whole) {
              problems.push(
                `${where} at ${path}: {{${name}}} must be the whole string (a reply's field goes in as a JSON value)`,
              );
            }
            continue;
          }
          if (!PLACEHOLDERS.includes(name)) {
            const guess = closest(name);
            problems.push(
              `${where} at ${path}: unknown placeholder {{${name}}}${
                guess ? `; did you mean {{${guess}}}?` : ""
              } (known: ${
                PLACEHOLDERS.map((p) => `{{${p}}}`).join(", ")
              }, {{steps.N.structured|json|text.field}})`,
            );
          } else if (!whole && (WHOLE_ONLY as readonly string[]).includes(name)) {
            problems.push(
              `${where} at ${path}: {{${name}}} must be the whole string "{{${name}}}", not part of "${
                s.slice(0, 60)
              }": it goes in as a JSON value, never spliced into text (use the server's query parameters for it)`,
            );
          }
        }
      });
    });
  }
  problems.push(...codePlacements(template).map(codePlacementProblem));
  for (const key of ["success", "failure"] as const) {
    const pattern = template[key];
    if (pattern === undefined) continue;
    try {
      new RegExp(pattern, "i");
    } catch (error) {
      problems.push(`"${key}" is not a valid regular expression: ${(error as Error).message}`);
    }
  }
  return problems;
}

/** The arguments of one step with every placeholder replaced by its value. */
export function fillStep(
  args: Record<string, unknown>,
  values: SaveValues,
  replies: readonly StepReply[],
): Record<string, unknown> {
  return fill(args, values, replies) as Record<string, unknown>;
}

function fill(node: unknown, values: SaveValues, replies: readonly StepReply[]): unknown {
  if (typeof node === "string") {
    const whole = WHOLE.exec(node);
    if (whole) return wholeValue(whole[1]!.trim(), values, replies);
    return node.replace(PLACEHOLDER, (_, inner: string) => {
      const name = inner.trim();
      if (!(INLINE_SAFE as readonly string[]).includes(name)) {
        // templateProblems refuses this at start; a template that got here anyway is refused too.
        throw new KlymError("TEMPLATE_INVALID", `{{${name}}} may not sit inside a longer string`);
      }
      return String(values[name as keyof SaveValues]);
    });
  }
  if (Array.isArray(node)) return node.map((v) => fill(v, values, replies));
  if (node && typeof node === "object") {
    return Object.fromEntries(
      Object.entries(node).map(([k, v]) => [k, fill(v, values, replies)]),
    );
  }
  return node;
}

function wholeValue(name: string, values: SaveValues, replies: readonly StepReply[]): unknown {
  const ref = STEP_REF.exec(name);
  if (ref) {
    const reply = replies[Number(ref[1])];
    if (!reply) {
      throw new KlymError("TEMPLATE_INVALID", `{{${name}}} refers to a step that has not run`);
    }
    let found: unknown = reply[ref[2] as keyof StepReply];
    for (const key of (ref[3] ?? "").split(".").filter(Boolean)) {
      found = found && typeof found === "object"
        ? (found as Record<string, unknown>)[Array.isArray(found) ? Number(key) : key]
        : undefined;
    }
    if (found === undefined) {
      throw new KlymError(
        "TEMPLATE_INVALID",
        `{{${name}}}: step ${ref[1]}'s reply has no such field (reply: ${
          reply.text.slice(0, 300)
        })`,
      );
    }
    return found;
  }
  switch (name) {
    case "value_json":
      return JSON.stringify(values.value);
    case "task_id":
    case "kind":
    case "seq":
    case "time":
    case "text":
    case "value":
      return values[name];
    default:
      throw new KlymError("TEMPLATE_INVALID", `unknown placeholder {{${name}}}`);
  }
}

/** The reply as later steps see it. */
export function replyOf(result: CallToolResult): StepReply {
  const texts = (result.content ?? []).map((c) => c.type === "text" ? c.text : `[${c.type}]`);
  const text = texts.join("\n") ||
    (result.structuredContent === undefined ? "" : JSON.stringify(result.structuredContent));
  let json: unknown;
  try {
    json = texts[0] === undefined ? result.structuredContent : JSON.parse(texts[0]);
  } catch {
    json = undefined;
  }
  return { structured: result.structuredContent, json, text };
}

/**
 * A reply that plainly reports an error, unless the template says otherwise. `failure` applies to
 * every call's reply, `success` to the last call's (the one that completes the save).
 */
const DEFAULT_FAILURE = /^\s*(error\b|failed\b|failure\b)/i;

/** Why a reply counts as a failed write, or undefined when it counts as a success. */
export function replyFailure(
  result: CallToolResult,
  reply: StepReply,
  template: Pick<WriteTemplate, "success" | "failure">,
  last = true,
): string | undefined {
  if (result.isError) return "grynya answered isError";
  const failure = template.failure === undefined
    ? DEFAULT_FAILURE
    : new RegExp(template.failure, "i");
  if (failure.test(reply.text)) return `the reply matches the failure pattern ${failure}`;
  if (
    last && template.success !== undefined && !new RegExp(template.success, "i").test(reply.text)
  ) {
    return `the reply does not match the success pattern /${template.success}/i`;
  }
  return undefined;
}

function walkStrings(node: unknown, visit: (s: string, path: string) => void, path = "$"): void {
  if (typeof node === "string") return visit(node, path);
  if (Array.isArray(node)) return node.forEach((v, i) => walkStrings(v, visit, `${path}[${i}]`));
  if (node && typeof node === "object") {
    for (const [k, v] of Object.entries(node)) {
      if (k.includes("{{")) visit(k, `${path} key`);
      walkStrings(v, visit, `${path}.${k}`);
    }
  }
}

function closest(name: string): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[^a-z]/g, "");
  const n = norm(name);
  return PLACEHOLDERS.find((p) => norm(p) === n) ??
    PLACEHOLDERS.find((p) => n.includes(norm(p)) || norm(p).includes(n));
}
