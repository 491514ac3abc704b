/**
 * `ctx.save`: writes an intermediate result into grynya's graph through grynya's own tools, with
 * the write strategy that fits grynya (a preset chosen from its tools, or the user's template).
 * Every save keeps grynya's reply and says whether it landed: a reply that reports an error is a
 * failed save, never a success. Only losing grynya (unreachable, a timeout) throws.
 */
import type {
  Failure,
  SaveRecord,
  WriteSetting,
  WriteStrategyInfo,
  WriteTemplate,
} from "../protocol.ts";
import { MAX_SAVE_REPLY_CHARS } from "../protocol.ts";
import type { GrynyaClient } from "./grynya_client.ts";
import { isKlymError, KlymError } from "../errors.ts";
import { PRESETS, type ToolSchema } from "../grynya/write_presets.ts";
import { draftTemplate, type DraftTool } from "../grynya/write_draft.ts";
import { codePlacementProblem, codePlacements } from "../grynya/code_arguments.ts";
import { summarizeNames } from "../text.ts";
import {
  fillStep,
  replyFailure,
  replyOf,
  type StepReply,
  stepsOf,
  templateTools,
} from "../grynya/write_template.ts";

/** Codes of failures that end the task: grynya is gone, or did not answer in time. */
const LOST_CODES: ReadonlySet<string> = new Set(["grynya_unreachable", "grynya_timeout"]);

const MAX_MESSAGE_CHARS = 1500;

interface Strategy {
  readonly name: string;
  readonly template: WriteTemplate;
}

export interface WriterHooks {
  /** A line for the task's log. */
  log(stream: "stdout" | "stderr", line: string): void;
  /** Each save, as it ends. */
  saved(record: SaveRecord): void;
}

export class GraphWriter {
  #seq = 0;
  #landed = 0;
  #strategy: Strategy | undefined;

  constructor(
    readonly grynya: GrynyaClient,
    readonly setting: WriteSetting,
    readonly task: { taskId: string; kind: string },
    readonly hooks: WriterHooks,
  ) {}

  /** Which strategy saves use; lists grynya's tools on first use. Throws only when grynya is lost. */
  async strategy(): Promise<WriteStrategyInfo> {
    const source = this.setting.kind;
    const found = await this.#resolve();
    if ("error" in found) return { ok: false, source, ...found };
    return {
      ok: true,
      source,
      name: found.name,
      tools: templateTools(found.template),
    };
  }

  async save(value: unknown): Promise<SaveRecord> {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    if (text === undefined) throw new TypeError("ctx.save needs text or a JSON value");
    const seq = ++this.#seq;
    const time = new Date().toISOString();
    const found = await this.#resolve();
    if ("error" in found) {
      return this.#done({ seq, ok: false, tools: [], time, reply: "", ...found });
    }
    const { name, template } = found;
    const steps = stepsOf(
      this.#landed === 0 ? template.create : template.append ?? template.create,
    );
    const values = { task_id: this.task.taskId, kind: this.task.kind, seq, time, text, value };
    const replies: StepReply[] = [];
    const tools: string[] = [];
    const record = (ok: boolean, reply: string, error?: Failure): SaveRecord => ({
      seq,
      ok,
      strategy: name,
      tools: [...tools],
      time,
      reply: reply.slice(0, MAX_SAVE_REPLY_CHARS),
      ...(error ? { error } : {}),
    });
    for (const [index, step] of steps.entries()) {
      const what = `save #${seq} (strategy ${name}, ${
        steps.length > 1 ? `step ${index + 1} of ${steps.length}, ` : ""
      }${step.tool})`;
      let args;
      try {
        args = fillStep(step.arguments, values, replies);
      } catch (error) {
        if (!isKlymError(error, "TEMPLATE_INVALID")) throw error;
        return this.#done(record(false, replies.at(-1)?.text ?? "", {
          code: "grynya_write_rejected",
          message: cut(`${what} could not be filled: ${error.message} (KLYM_GRYNYA_WRITE)`),
        }));
      }
      tools.push(step.tool);
      let result;
      try {
        result = await this.grynya.callTool(step.tool, args, { idempotent: step.idempotent });
      } catch (error) {
        if (!(error instanceof KlymError) || LOST_CODES.has(error.code)) throw error;
        // grynya refused the call (a JSON-RPC error), or the connection dropped under it.
        return this.#done(record(false, "", {
          code: error.code === "grynya_error" ? "grynya_write_rejected" : error.code,
          message: cut(`${what}: ${error.message}`),
        }));
      }
      const reply = replyOf(result);
      replies.push(reply);
      const why = replyFailure(result, reply, template, index === steps.length - 1);
      if (why) {
        return this.#done(record(false, reply.text, {
          code: "grynya_write_rejected",
          message: cut(
            `grynya at ${this.grynya.settings.url} refused ${what}: ${why}: ${
              reply.text.slice(0, 500) || "no text"
            }`,
          ),
        }));
      }
    }
    this.#landed++;
    return this.#done(record(true, replies.at(-1)?.text ?? ""));
  }

  #done(record: SaveRecord): SaveRecord {
    if (!record.ok) {
      this.hooks.log(
        "stderr",
        `grynya: save #${record.seq} did not land: ${record.error?.message ?? "unknown"}`,
      );
    }
    this.hooks.saved(record);
    return record;
  }

  async #resolve(): Promise<Strategy | { error: Failure; hint?: string }> {
    if (this.#strategy) return this.#strategy;
    const setting = this.setting;
    const { tools } = await this.grynya.listTools();
    const names = tools.map((t) => t.name);
    const listed = `grynya offers ${summarizeNames("tools", names)}`;
    const draft = draftTemplate(tools as DraftTool[]);
    const hint = draft.kind === "template"
      ? `set KLYM_GRYNYA_WRITE to a template such as ${
        JSON.stringify(draft.template)
      } (edit the names to taste), or to a preset (${
        PRESETS.map((p) => p.name).join(", ")
      }); see "Connect your graph server" in docs/graph_servers.md`
      : `${draft.reason}; see "Connect your graph server" in docs/graph_servers.md`;
    const refuse = (message: string) => ({
      error: { code: "grynya_no_write_strategy", message: cut(`${message}; ${listed}`) },
      hint,
    });
    let found: Strategy;
    if (setting.kind === "template") {
      const missing = templateTools(setting.template).filter((t) => !names.includes(t));
      if (missing.length) {
        return refuse(
          `The template in KLYM_GRYNYA_WRITE calls ${
            missing.join(", ")
          }, which grynya at ${this.grynya.settings.url} does not offer`,
        );
      }
      // Names were checked at start; grynya's own descriptions can say an argument is code too.
      const unsafe = codePlacements(setting.template, tools as ToolSchema[]);
      if (unsafe.length) {
        return {
          error: {
            code: "grynya_no_write_strategy",
            message: cut(
              `The template in KLYM_GRYNYA_WRITE would run saved text as code on grynya at ${this.grynya.settings.url}, so Klym refuses it: ${
                unsafe.map(codePlacementProblem).join("; ")
              }`,
            ),
          },
          hint,
        };
      }
      found = { name: "template", template: setting.template };
    } else if (setting.kind === "preset") {
      const preset = PRESETS.find((p) => p.name === setting.name)!;
      const fit = preset.fit(tools as ToolSchema[]);
      if (typeof fit === "string") {
        return refuse(
          `The preset "${preset.name}" named in KLYM_GRYNYA_WRITE does not fit grynya at ${this.grynya.settings.url}: ${fit}`,
        );
      }
      found = { name: preset.name, template: fit };
    } else {
      const fits = PRESETS.flatMap((p) => {
        const fit = p.fit(tools as ToolSchema[]);
        return typeof fit === "string" ? [] : [{ name: p.name, template: fit }];
      });
      if (fits.length !== 1) {
        return refuse(
          fits.length
            ? `Several write presets fit grynya at ${this.grynya.settings.url} (${
              fits.map((f) => f.name).join(", ")
            }): name one in KLYM_GRYNYA_WRITE`
            : `No write preset fits grynya at ${this.grynya.settings.url} (KLYM_GRYNYA_WRITE is unset: presets ${
              PRESETS.map((p) => p.name).join(", ")
            } were tried)`,
        );
      }
      found = fits[0]!;
    }
    this.hooks.log(
      "stdout",
      `grynya: saves use the write strategy "${found.name}" (${
        setting.kind === "auto" ? "chosen from grynya's tools" : "from KLYM_GRYNYA_WRITE"
      }), calling ${templateTools(found.template).join(", ")}`,
    );
    this.#strategy = found;
    return found;
  }
}

function cut(message: string): string {
  return message.length > MAX_MESSAGE_CHARS ? `${message.slice(0, MAX_MESSAGE_CHARS)}…` : message;
}
