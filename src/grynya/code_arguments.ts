/**
 * Arguments that grynya runs as code: a query, SQL, Cypher, a script, a command. A template that
 * makes saved text the whole of such an argument would run whatever a task or a model saves
 * (`DELETE FROM …` deletes rows), so Klym refuses it unless the step says, on purpose,
 * `"unsafe_text_as_code": true`. Names are checked at start (no server needed); the descriptions
 * in grynya's tool list at the first save.
 */
import type { WriteStep, WriteTemplate } from "../protocol.ts";
import type { ToolSchema } from "./write_presets.ts";

/** Words of an argument's name that mean grynya runs its value. */
const CODE_WORDS = new Set([
  "query",
  "queries",
  "sql",
  "cypher",
  "gql",
  "sparql",
  "statement",
  "statements",
  "stmt",
  "script",
  "command",
  "cmd",
  "code",
  "expression",
  "expr",
  "eval",
  "exec",
]);

/** Words that make a name the values that go with code (`query_params`), not the code. */
const VALUE_WORDS = new Set([
  "param",
  "params",
  "parameters",
  "values",
  "bindings",
  "args",
  "variables",
]);

/** A description that says the value is code to run. */
const CODE_DESCRIPTION =
  /\b(sql|cypher|gql|sparql|statements?|scripts?|shell|commands?|expressions?)\b|\b(execute|run)s?\b[^.]*\bquer(y|ies)\b|\bquer(y|ies)\b[^.]*\b(execute|run)\b|\bquery to\b/i;

/** Placeholders whose value comes from outside Klym: a task's text, its value, a reply. */
const OUTSIDE = /^\{\{\s*(text|value|value_json|steps\.\d+\.(structured|json|text)[^{}]*)\s*\}\}$/;

/** Whether an argument's name says grynya runs it (`query`, `sql`, `cypherQuery`, `run_script`). */
export function isCodeName(name: string): boolean {
  const words = name.replace(/([a-z0-9])([A-Z])/g, "$1 $2").toLowerCase().split(/[^a-z0-9]+/);
  return words.some((w) => CODE_WORDS.has(w)) && !words.some((w) => VALUE_WORDS.has(w));
}

/** Whether an argument's description (or its tool's, when it has none) says it is code to run. */
export function isCodeDescription(description: unknown): boolean {
  return typeof description === "string" && CODE_DESCRIPTION.test(description);
}

/** One place where outside text would become code. */
export interface CodePlacement {
  readonly where: string;
  readonly path: string;
  readonly placeholder: string;
  /** Why the argument counts as code. */
  readonly because: string;
}

/**
 * Every place in a template where a task's text (or a reply) would be the whole value of an argument
 * grynya runs as code. With `tools`, argument and tool descriptions count too; without, names only.
 * Steps marked `"unsafe_text_as_code": true` are skipped.
 */
export function codePlacements(
  template: WriteTemplate,
  tools?: readonly ToolSchema[],
): CodePlacement[] {
  const found: CodePlacement[] = [];
  for (const phase of ["create", "append"] as const) {
    const steps = template[phase];
    if (steps === undefined) continue;
    const list: readonly WriteStep[] = Array.isArray(steps) ? steps : [steps as WriteStep];
    list.forEach((step, index) => {
      if (step.unsafe_text_as_code === true) return;
      const where = `${phase}${Array.isArray(steps) ? `[${index}]` : ""} (${step.tool})`;
      const tool = tools?.find((t) => t.name === step.tool);
      const props = propertiesOf(tool?.inputSchema);
      for (const [arg, value] of Object.entries(step.arguments)) {
        const schema = props[arg] as { description?: unknown } | undefined;
        const because = isCodeName(arg)
          ? `its name "${arg}" says grynya runs it`
          : isCodeDescription(schema?.description)
          ? `grynya describes it as "${String(schema!.description).slice(0, 80)}"`
          : tool && schema?.description === undefined && Object.keys(props).length === 1 &&
              isCodeDescription(tool.description)
          ? `grynya describes ${tool.name} as "${String(tool.description).slice(0, 80)}"`
          : undefined;
        if (!because) continue;
        visitOutside(
          value,
          `$.${arg}`,
          (path, placeholder) => found.push({ where, path, placeholder, because }),
        );
      }
    });
  }
  return found;
}

/** The sentence a refusal gives for one placement: what would happen, and the fix. */
export function codePlacementProblem(p: CodePlacement): string {
  return `${p.where} at ${p.path}: ${p.placeholder} would be the whole argument, which grynya runs as code (${p.because}), so a save of "DELETE FROM …" would run it; pass the text as a value instead: a fixed statement with the text as one of its parameters (e.g. "INSERT INTO notes (text) VALUES (?)" with "{{text}}" in the parameters), or a tool that takes the text itself (a notes or memory tool). To run saved text as code on purpose, set "unsafe_text_as_code": true on that step`;
}

function visitOutside(
  node: unknown,
  path: string,
  visit: (path: string, placeholder: string) => void,
): void {
  if (typeof node === "string") {
    if (OUTSIDE.test(node)) visit(path, node);
    return;
  }
  if (Array.isArray(node)) node.forEach((v, i) => visitOutside(v, `${path}[${i}]`, visit));
  // An object under a code argument is its parameters (values, not code): nothing to check.
}

function propertiesOf(schema: unknown): Record<string, unknown> {
  const p = (schema as { properties?: unknown } | undefined)?.properties;
  return p && typeof p === "object" ? p as Record<string, unknown> : {};
}
