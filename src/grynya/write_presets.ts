/**
 * Write presets: templates for the common shapes of graph servers, each built from grynya's own
 * tool list and input schemas. With `KLYM_GRYNYA_WRITE` unset (`auto`), the one preset that fits
 * grynya is used; when none or several fit, the write fails with grynya's tools and a template
 * drafted from the likeliest tool, ready to put in `KLYM_GRYNYA_WRITE`.
 */
import type { WriteTemplate } from "../protocol.ts";

export interface ToolSchema {
  readonly name: string;
  readonly description?: string | undefined;
  readonly inputSchema: Record<string, unknown>;
}

export interface Preset {
  readonly name: string;
  readonly description: string;
  /** The template for this grynya, or why the preset does not fit it (a clause about grynya). */
  fit(tools: readonly ToolSchema[]): WriteTemplate | string;
}

const TASK_ENTITY = "klym-task-{{task_id}}";

type Props = Record<string, { type?: unknown; items?: unknown; properties?: unknown }>;

function props(schema: unknown): Props {
  const p = (schema as { properties?: unknown } | undefined)?.properties;
  return p && typeof p === "object" ? p as Props : {};
}

function required(schema: unknown): string[] {
  const r = (schema as { required?: unknown } | undefined)?.required;
  return Array.isArray(r) ? r.filter((x): x is string => typeof x === "string") : [];
}

const typeOf = (p: { type?: unknown } | undefined) =>
  Array.isArray(p?.type) ? p.type.find((t) => t !== "null") : p?.type;

/** The item schema of an array property, e.g. `entities` → one entity. */
function itemOf(schema: unknown, key: string): unknown {
  return props(schema)[key]?.items;
}

function pick(names: readonly string[], candidates: readonly string[]): string | undefined {
  return candidates.find((c) => names.includes(c));
}

const find = (tools: readonly ToolSchema[], name: string) => tools.find((t) => t.name === name);

/** `@modelcontextprotocol/server-memory` and its kin: one entity per task, an observation per save. */
const memory: Preset = {
  name: "memory",
  description: "create_entities for the task's entity, add_observations for each later save",
  fit(tools) {
    if (!find(tools, "create_entities") || !find(tools, "add_observations")) {
      return "grynya lacks create_entities or add_observations, which it needs";
    }
    return {
      create: {
        tool: "create_entities",
        arguments: {
          entities: [{ name: TASK_ENTITY, entityType: "klym_task", observations: ["{{text}}"] }],
        },
      },
      append: {
        tool: "add_observations",
        arguments: { observations: [{ entityName: TASK_ENTITY, contents: ["{{text}}"] }] },
      },
    };
  },
};

/**
 * Memory graphs without add_observations (e.g. libSQL/SQLite-backed ones, whose create_entities
 * replaces an entity's observations): an entity per save, linked from the task's entity.
 */
const memoryLinked: Preset = {
  name: "memory-linked",
  description: "create_entities for each save, create_relations to link it to the task's entity",
  fit(tools) {
    const create = find(tools, "create_entities");
    const relate = find(tools, "create_relations");
    if (!create || !relate) {
      return "grynya lacks create_entities or create_relations, which it needs";
    }
    if (find(tools, "add_observations")) {
      return "grynya has add_observations, so the memory preset fits it instead";
    }
    const relation = Object.keys(props(itemOf(relate.inputSchema, "relations")));
    const from = pick(relation, ["from", "source", "from_entity", "source_entity"]);
    const to = pick(relation, ["to", "target", "to_entity", "target_entity"]);
    const type = pick(relation, ["relationType", "relation_type", "type", "relation"]);
    if (!from || !to || !type) {
      return `grynya's create_relations takes relations of ${
        relation.join(", ") || "an unknown shape"
      }, with no from, to and type fields`;
    }
    const saveEntity = {
      name: `${TASK_ENTITY}-save-{{seq}}`,
      entityType: "klym_save",
      observations: ["{{text}}"],
    };
    const link = {
      tool: "create_relations",
      arguments: {
        relations: [{ [from]: TASK_ENTITY, [to]: `${TASK_ENTITY}-save-{{seq}}`, [type]: "saved" }],
      },
    };
    return {
      create: [
        {
          tool: "create_entities",
          arguments: {
            entities: [
              { name: TASK_ENTITY, entityType: "klym_task", observations: ["task {{task_id}}"] },
              saveEntity,
            ],
          },
        },
        link,
      ],
      append: [{ tool: "create_entities", arguments: { entities: [saveEntity] } }, link],
    };
  },
};

const REMEMBER = /remember|store_?memory|add_?memory|save_?memory|memorize|create_?memory/i;
const TEXT_FIELDS = ["content", "text", "memory", "information", "fact", "note", "body"];

/** Memory servers with one "remember this text" tool (embedded graph or vector stores). */
const remember: Preset = {
  name: "remember",
  description: "the server's one remember-this-text tool, with the saved text",
  fit(tools) {
    const fits = tools.flatMap((t) => {
      if (!REMEMBER.test(t.name)) return [];
      const p = props(t.inputSchema);
      const field = pick(Object.keys(p), TEXT_FIELDS);
      if (!field || typeOf(p[field]) !== "string") return [];
      const others = required(t.inputSchema).filter((r) => r !== field);
      return others.length ? [] : [{ tool: t.name, field }];
    });
    if (fits.length !== 1) {
      return fits.length
        ? `grynya has several remember-like tools (${
          fits.map((f) => f.tool).join(", ")
        }): name one in a template`
        : "grynya has no remember-like tool that takes a text";
    }
    const [{ tool, field }] = fits as [{ tool: string; field: string }];
    return { create: { tool, arguments: { [field]: "{{text}}" } } };
  },
};

const QUERY_FIELDS = ["query", "cypher", "statement", "cypher_query"];
const PARAM_FIELDS = ["params", "parameters", "query_params"];
const READ_ONLY = /read|schema|explain|list|get_|search/i;
const GRAPH_FIELDS = /graph|database|db/i;

/** Graph databases whose write tool takes a Cypher query and its parameters. */
const cypher: Preset = {
  name: "cypher",
  description:
    "the server's Cypher write tool: MERGE the task's node, CREATE a save node; every value a query parameter",
  fit(tools) {
    const fits = tools.flatMap((t) => {
      if (READ_ONLY.test(t.name)) return [];
      const p = props(t.inputSchema);
      const query = pick(Object.keys(p), QUERY_FIELDS);
      const params = pick(Object.keys(p), PARAM_FIELDS);
      if (!query || !params || typeOf(p[query]) !== "string") return [];
      const others = required(t.inputSchema).filter((r) => r !== query && r !== params);
      if (others.some((o) => typeOf(p[o]) !== "string" || !GRAPH_FIELDS.test(o))) return [];
      return [{ tool: t.name, query, params, graph: others }];
    });
    if (fits.length !== 1) {
      return fits.length
        ? `grynya has several query tools with parameters (${
          fits.map((f) => f.tool).join(", ")
        }): name one in a template`
        : "grynya has no write tool that takes a query and its parameters";
    }
    const [{ tool, query, params, graph }] = fits as [
      { tool: string; query: string; params: string; graph: string[] },
    ];
    return {
      create: {
        tool,
        arguments: {
          ...Object.fromEntries(graph.map((g) => [g, "klym"])),
          [query]: "MERGE (t:KlymTask {id: $task_id}) ON CREATE SET t.kind = $kind " +
            "CREATE (t)-[:SAVED]->(s:KlymSave {seq: $seq, text: $text, time: $time}) RETURN s.seq",
          [params]: {
            task_id: "{{task_id}}",
            kind: "{{kind}}",
            seq: "{{seq}}",
            text: "{{text}}",
            time: "{{time}}",
          },
        },
      },
    };
  },
};

export const PRESETS: readonly Preset[] = [memory, memoryLinked, remember, cypher];
export const PRESET_NAMES: readonly string[] = PRESETS.map((p) => p.name);
