/**
 * `ctx.save`: writes an intermediate result into grynya's graph through grynya's own write tool,
 * shaped by the configured template (the graph's schema is the user's, not Klym's).
 */
import type { SaveRecord, WriteTemplate } from "../protocol.ts";
import type { GrynyaClient } from "./grynya_client.ts";
import { TaskFailure } from "../task_failure.ts";

export interface TemplateValues {
  readonly task_id: string;
  readonly kind: string;
  readonly text: string;
  readonly time: string;
}

/** Replaces `{{name}}` placeholders in every string of a JSON value. */
export function fillTemplate(value: unknown, values: TemplateValues): unknown {
  if (typeof value === "string") {
    return value.replace(
      /\{\{(task_id|kind|text|time)\}\}/g,
      (_, key: keyof TemplateValues) => values[key],
    );
  }
  if (Array.isArray(value)) return value.map((v) => fillTemplate(v, values));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fillTemplate(v, values)]));
  }
  return value;
}

export class GraphWriter {
  #saves = 0;

  constructor(
    readonly grynya: GrynyaClient,
    readonly template: WriteTemplate,
    readonly task: { taskId: string; kind: string },
  ) {}

  async save(value: unknown): Promise<SaveRecord> {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    if (text === undefined) throw new TypeError("ctx.save needs text or a JSON value");
    const step = this.#saves === 0 ? this.template.create : this.template.append;
    const time = new Date().toISOString();
    const args = fillTemplate(step.arguments, {
      task_id: this.task.taskId,
      kind: this.task.kind,
      text,
      time,
    }) as Record<string, unknown>;
    const result = await this.grynya.callTool(step.tool, args);
    if (result.isError) {
      const message = result.content?.map((c) => c.type === "text" ? c.text : `[${c.type}]`).join(
        " ",
      );
      throw new TaskFailure(
        "grynya_write_rejected",
        `grynya at ${this.grynya.settings.url} rejected ${step.tool}: ${message || "no message"}`,
      );
    }
    this.#saves++;
    return { tool: step.tool, time };
  }
}
