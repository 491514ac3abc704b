/** Write templates and presets without a server: filling, reply checks, and which preset fits. */
import assert from "node:assert/strict";
import { fillStep, replyFailure, replyOf, templateProblems } from "../src/grynya/write_template.ts";
import { draftTemplate, PRESETS, type ToolSchema } from "../src/grynya/write_presets.ts";
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

Deno.test("a template is drafted from the likeliest write tool", () => {
  assert.equal(
    draftTemplate(SERVERS["everything"]!),
    '{"create":{"tool":"echo","arguments":{"message":"{{text}}"}}}',
  );
  assert.equal(draftTemplate([]), undefined);
});
