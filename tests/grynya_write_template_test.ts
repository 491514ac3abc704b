/** Write templates and presets without a server: filling, reply checks, and which preset fits. */
import assert from "node:assert/strict";
import { fillStep, replyFailure, replyOf, templateProblems } from "../src/grynya/write_template.ts";
import { PRESETS, type ToolSchema } from "../src/grynya/write_presets.ts";
import { draftTemplate, schemaProblems } from "../src/grynya/write_draft.ts";
import { codePlacements } from "../src/grynya/code_arguments.ts";
import { isKlymError } from "../src/errors.ts";

const VALUES = {
  task_id: "t_1",
  kind: "graph_write",
  seq: 3,
  time: "2026-01-01T00:00:00.000Z",
  text: `x'}) CREATE (:Pwned) //`,
  value: { a: [1, 2] },
};

Deno.test("placeholders become JSON values; only Klym's own scalars go inside strings", () => {
  const filled = fillStep(
    {
      query: "MERGE (t {id: $id})",
      params: { id: "{{task_id}}", text: "{{text}}", seq: "{{seq}}", v: "{{value}}" },
      name: "klym-{{task_id}}-{{seq}}",
      json: "{{value_json}}",
      list: ["{{text}}"],
    },
    VALUES,
    [],
  );
  assert.deepEqual(filled, {
    query: "MERGE (t {id: $id})",
    params: { id: "t_1", text: VALUES.text, seq: 3, v: { a: [1, 2] } },
    name: "klym-t_1-3",
    json: '{"a":[1,2]}',
    list: [VALUES.text],
  });
  assert.throws(
    () => fillStep({ q: "say {{text}}" }, VALUES, []),
    (e: unknown) => isKlymError(e, "TEMPLATE_INVALID"),
  );
});

Deno.test("later steps read fields of earlier replies", () => {
  const reply = replyOf({
    content: [{ type: "text", text: '{"data": [{"id": 42}]}' }],
    structuredContent: { id: "s-1" },
  });
  const filled = fillStep(
    { a: "{{steps.0.json.data.0.id}}", b: "{{steps.0.structured.id}}", c: "{{steps.0.text}}" },
    VALUES,
    [reply],
  );
  assert.deepEqual(filled, { a: 42, b: "s-1", c: '{"data": [{"id": 42}]}' });
  assert.throws(
    () => fillStep({ a: "{{steps.0.json.nope}}" }, VALUES, [reply]),
    /step 0's reply has no such field/,
  );
});

Deno.test("template problems name the place and the fix", () => {
  const problems = templateProblems({
    create: [
      { tool: "a", arguments: { id: "{{taskId}}", q: "MATCH (n {t: '{{text}}'})" } },
      { tool: "b", arguments: { x: "{{steps.1.json.id}}" } },
    ],
  });
  assert.equal(problems.length, 3);
  assert.match(
    problems[0]!,
    /create\[0\] \(a\) at \$.id: unknown placeholder \{\{taskId\}\}; did you mean \{\{task_id\}\}/,
  );
  assert.match(problems[1]!, /\{\{text\}\} must be the whole string/);
  assert.match(problems[2]!, /create\[1\] \(b\).*does not come before it/);
});

Deno.test("a reply that reports an error is a failure, with or without isError", () => {
  const check = (text: string, isError = false, template = {}) => {
    const result = { content: [{ type: "text" as const, text }], isError };
    return replyFailure(result, replyOf(result), template);
  };
  assert.equal(check("Stored memory with ID: 1"), undefined);
  assert.match(check("Error: Failed to store memory")!, /failure pattern/);
  assert.match(check("failed: disk full")!, /failure pattern/);
  assert.match(check("ok", true)!, /isError/);
  assert.match(check("done", false, { success: "^Stored" })!, /success pattern/);
  assert.equal(check("Error-free", false, { failure: "^nope" }), undefined);
});

const tool = (name: string, properties: Record<string, unknown>, required: string[] = []) => ({
  name,
  inputSchema: { type: "object", properties, required },
});
const str = { type: "string" };
const SERVERS: Record<string, ToolSchema[]> = {
  "server-memory": [
    tool("create_entities", { entities: { type: "array" } }, ["entities"]),
    tool("create_relations", { relations: { type: "array" } }, ["relations"]),
    tool("add_observations", { observations: { type: "array" } }, ["observations"]),
    tool("read_graph", {}),
  ],
  "mcp-memory-libsql": [
    tool("create_entities", { entities: { type: "array" } }, ["entities"]),
    tool("create_relations", {
      relations: {
        type: "array",
        items: { type: "object", properties: { source: str, target: str, type: str } },
      },
    }, ["relations"]),
    tool("read_graph", {}),
  ],
  "kuzu-memory": [
    tool("kuzu_remember", { content: str, memory_type: str }, ["content"]),
    tool("kuzu_recall", { query: str }, ["query"]),
  ],
  "falkordb": [
    tool("query_graph", { graphName: str, query: str, params: { type: "object" } }, [
      "graphName",
      "query",
    ]),
    tool("query_graph_readonly", { graphName: str, query: str, params: { type: "object" } }),
    tool("list_graphs", {}),
  ],
  "everything": [tool("echo", { message: str }, ["message"]), tool("get-sum", { a: {}, b: {} })],
};

Deno.test("exactly one preset fits each shape of server", () => {
  const fitting = (tools: ToolSchema[]) =>
    PRESETS.filter((p) => typeof p.fit(tools) !== "string").map((p) => p.name);
  assert.deepEqual(fitting(SERVERS["server-memory"]!), ["memory"]);
  assert.deepEqual(fitting(SERVERS["mcp-memory-libsql"]!), ["memory-linked"]);
  assert.deepEqual(fitting(SERVERS["kuzu-memory"]!), ["remember"]);
  assert.deepEqual(fitting(SERVERS["falkordb"]!), ["cypher"]);
  assert.deepEqual(fitting(SERVERS["everything"]!), []);
  // Why a preset does not fit reads as a sentence about grynya.
  const why = (preset: string, server: string) =>
    PRESETS.find((p) => p.name === preset)!.fit(SERVERS[server]!);
  assert.equal(why("remember", "everything"), "grynya has no remember-like tool that takes a text");
  assert.equal(
    why("memory", "falkordb"),
    "grynya lacks create_entities or add_observations, which it needs",
  );
  const linked = PRESETS.find((p) => p.name === "memory-linked")!.fit(
    SERVERS["mcp-memory-libsql"]!,
  );
  assert.match(JSON.stringify(linked), /"source":"klym-task-\{\{task_id\}\}","target"/);
  for (const name of ["server-memory", "mcp-memory-libsql", "kuzu-memory", "falkordb"]) {
    for (const p of PRESETS) {
      const fit = p.fit(SERVERS[name]!);
      if (typeof fit !== "string") assert.deepEqual(templateProblems(fit), [], `${p.name}`);
    }
  }
});

const described = (
  name: string,
  description: string,
  properties: Record<string, unknown>,
  required: string[] = Object.keys(properties),
) => ({ name, description, inputSchema: { type: "object", properties, required } });

/** Tool lists of real servers (names, descriptions and schemas as they list them). */
const DATA_SERVERS: Record<string, ToolSchema[]> = {
  // mcp-server-sqlite (PyPI): its writes take a whole statement; append_insight takes a text.
  "mcp-server-sqlite": [
    described("read_query", "Execute a SELECT query on the SQLite database", {
      query: { type: "string", description: "SELECT SQL query to execute" },
    }),
    described("write_query", "Execute an INSERT, UPDATE, or DELETE query on the SQLite database", {
      query: { type: "string", description: "SQL query to execute" },
    }),
    described("create_table", "Create a new table in the SQLite database", {
      query: { type: "string", description: "CREATE TABLE SQL statement" },
    }),
    described("list_tables", "List all tables in the SQLite database", {}),
    described("append_insight", "Add a business insight to the memo", {
      insight: { type: "string", description: "Business insight discovered from data analysis" },
    }),
  ],
  // A SQL server whose one tool takes a whole query (as mcp-server-duckdb's does).
  "sql-only": [
    described("query", "Execute a query on the DuckDB database", {
      query: { type: "string", description: "SQL query to execute" },
    }),
  ],
  // A SQL server whose query tool takes parameters (as mcp-alchemy's execute_query does).
  "sql-with-params": [
    described("all_table_names", "Return all table names", {}),
    described("execute_query", "Execute a SQL query", {
      query: { type: "string" },
      params: { type: "object" },
    }, ["query"]),
  ],
  "sql-positional": [
    described("run_sql", "Run SQL with bindings", {
      sql: { type: "string" },
      bindings: { type: "array", items: {} },
    }),
  ],
  // @allpepper/memory-bank-mcp (npm): one file per name, never overwritten.
  "memory-bank": [
    described("list_projects", "List all projects in the memory bank", {}),
    described("memory_bank_read", "Read a memory bank file for a specific project", {
      projectName: str,
      fileName: str,
    }),
    described("memory_bank_write", "Create a new memory bank file for a specific project", {
      projectName: str,
      fileName: str,
      content: str,
    }),
    described("memory_bank_update", "Update an existing memory bank file for a specific project", {
      projectName: str,
      fileName: str,
      content: str,
    }),
  ],
  // A key-value context store whose keys allow no spaces.
  "key-value": [
    described("get_context", "Get a value", { key: { type: "string" } }),
    described("set_context", "Store a value under a key", {
      key: { type: "string", pattern: "^[A-Za-z0-9_.-]+$" },
      value: { type: "string" },
    }),
  ],
};

Deno.test("a drafted template never runs text as code, and keeps every save", () => {
  const draft = (server: string) => draftTemplate(DATA_SERVERS[server]!);
  // The SQL server's safe tool is its memo, never write_query.
  assert.deepEqual(draft("mcp-server-sqlite"), {
    kind: "template",
    template: { create: { tool: "append_insight", arguments: { insight: "{{text}}" } } },
  });
  // No tool takes text as a value: said plainly, naming the query tool and the journal.
  const none = draft("sql-only");
  assert.equal(none.kind, "none");
  assert.match(
    (none as { reason: string }).reason,
    /no tool that can store text safely: its writes \(query\) take a whole query .*run as code\. Saves stay in the task's journal/,
  );
  // A query tool with parameters: a fixed statement, the text one of its parameters.
  const params = draft("sql-with-params");
  assert.equal(params.kind, "template");
  const t = (params as { template: { create: { arguments: Record<string, unknown> }[] } })
    .template;
  assert.match(String(t.create[0]!.arguments.query), /^CREATE TABLE IF NOT EXISTS klym_saves/);
  assert.equal(
    t.create[1]!.arguments.query,
    "INSERT INTO klym_saves (task_id, kind, seq, text, time) VALUES (:task_id, :kind, :seq, :text, :time)",
  );
  assert.deepEqual(t.create[1]!.arguments.params, {
    task_id: "{{task_id}}",
    kind: "{{kind}}",
    seq: "{{seq}}",
    text: "{{text}}",
    time: "{{time}}",
  });
  const positional = draft("sql-positional") as { template: { append: unknown } };
  assert.deepEqual(positional.template.append, {
    tool: "run_sql",
    arguments: {
      sql: "INSERT INTO klym_saves (task_id, kind, seq, text, time) VALUES (?, ?, ?, ?, ?)",
      bindings: ["{{task_id}}", "{{kind}}", "{{seq}}", "{{text}}", "{{time}}"],
    },
  });
  // One file per save, the text in its content.
  assert.deepEqual(draft("memory-bank"), {
    kind: "template",
    template: {
      create: {
        tool: "memory_bank_write",
        arguments: {
          projectName: "klym",
          fileName: "klym-{{task_id}}-{{seq}}",
          content: "{{text}}",
        },
      },
    },
  });
  // The text goes in the value, the key is the save's own.
  assert.deepEqual(draft("key-value"), {
    kind: "template",
    template: {
      create: {
        tool: "set_context",
        arguments: { key: "klym-{{task_id}}-{{seq}}", value: "{{text}}" },
      },
    },
  });
  // Every drafted template passes the start-up checks.
  for (const server of Object.keys(DATA_SERVERS)) {
    const d = draft(server);
    if (d.kind === "template") assert.deepEqual(templateProblems(d.template), [], server);
  }
  assert.deepEqual(
    draftTemplate(SERVERS["everything"]!),
    {
      kind: "template",
      template: { create: { tool: "echo", arguments: { message: "{{text}}" } } },
    },
  );
  assert.equal(draftTemplate([]).kind, "none");
});

Deno.test("a draft that its tool's schema refuses is not shown", () => {
  // The only text field is too short for a save, and the key allows no spaces: no draft.
  const tools = [
    described("put", "Store an entry", {
      key: { type: "string", pattern: "^[a-z0-9-]+$" },
      note: { type: "string", maxLength: 16 },
    }),
  ];
  assert.equal(draftTemplate(tools).kind, "none");
  assert.deepEqual(schemaProblems({ key: "a b" }, tools[0]!.inputSchema).sort(), [
    "$.key does not match ^[a-z0-9-]+$",
    "$.note is required",
  ]);
});

Deno.test("text as the whole of an argument grynya runs as code is found by name or description", () => {
  const step = (args: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
    create: { tool: "run", arguments: args, ...extra },
  });
  const paths = (template: Parameters<typeof codePlacements>[0], tools?: ToolSchema[]) =>
    codePlacements(template, tools).map((p) => `${p.path} ${p.placeholder}`);
  assert.deepEqual(paths(step({ sql: "{{text}}" })), ["$.sql {{text}}"]);
  assert.deepEqual(paths(step({ cypherQuery: "{{value_json}}" })), [
    "$.cypherQuery {{value_json}}",
  ]);
  assert.deepEqual(paths(step({ statements: ["{{text}}"] })), ["$.statements[0] {{text}}"]);
  assert.deepEqual(paths(step({ run_script: "{{steps.0.text}}" })), [
    "$.run_script {{steps.0.text}}",
  ]);
  // Values that go with the code, fixed code, Klym's own scalars, and the explicit opt-in pass.
  assert.deepEqual(paths(step({ query: "MATCH (n) RETURN n", params: { t: "{{text}}" } })), []);
  assert.deepEqual(paths(step({ query_params: ["{{text}}"] })), []);
  assert.deepEqual(paths(step({ query: "{{task_id}}" })), []);
  assert.deepEqual(paths(step({ content: "{{text}}" })), []);
  assert.deepEqual(paths(step({ sql: "{{text}}" }, { unsafe_text_as_code: true })), []);
  // An innocent name that grynya describes as code: found once grynya's tool list is known.
  const tools = [
    described("run", "Runs things", { input: { type: "string", description: "SQL statement" } }),
  ];
  assert.deepEqual(paths(step({ input: "{{text}}" })), []);
  assert.deepEqual(paths(step({ input: "{{text}}" }), tools), ["$.input {{text}}"]);
  const bare = [described("exec", "Execute a Cypher query against the graph", { input: str })];
  assert.deepEqual(paths({ create: { tool: "exec", arguments: { input: "{{text}}" } } }, bare), [
    "$.input {{text}}",
  ]);
});
