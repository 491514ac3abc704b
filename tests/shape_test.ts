/**
 * The shapes that check the messages of a task's process (src/shape.ts): each combinator at its
 * edges, what they copy and leave out, the paths and messages of their issues, and data no
 * well-behaved sender would send.
 */
import assert from "node:assert/strict";
import * as s from "../src/shape.ts";
import {
  Failure,
  GrynyaCall,
  HostEvent,
  HostHello,
  LlmRequest,
  TaskSpec,
  WorkerEvent,
  WriteTemplate,
} from "../src/protocol.ts";
import { MAX_FAILURE_CHARS } from "../src/task_failure.ts";

/** The data a shape accepts, or a failed assertion naming its issues. */
function accepted<T>(shape: s.Shape<T>, value: unknown): T {
  const checked = shape.check(value);
  assert.ok(checked.success, `accepted: ${checked.success || s.describeIssues(checked.issues)}`);
  return checked.data;
}

/** The issues of a value a shape refuses. */
function issues(shape: s.Shape<unknown>, value: unknown): s.Issue[] {
  const checked = shape.check(value);
  if (checked.success) assert.fail(`refused: ${Deno.inspect(value, { depth: 2 })}`);
  return checked.issues;
}

const refused = (shape: s.Shape<unknown>, value: unknown) => issues(shape, value).length > 0;

Deno.test("strings: min and max at their edges, and a cut that keeps the first characters", () => {
  const code = s.string().min(1).max(3);
  assert.equal(accepted(code, "a"), "a");
  assert.equal(accepted(code, "abc"), "abc");
  assert.deepEqual(issues(code, ""), [
    { path: [], message: "too short: expected at least 1 characters" },
  ]);
  assert.deepEqual(issues(code, "abcd"), [
    { path: [], message: "too long: expected at most 3 characters" },
  ]);
  assert.deepEqual(issues(code, 5), [{ path: [], message: "expected string, received 5" }]);
  const cut = s.string().cut(4);
  assert.equal(accepted(cut, "abcd"), "abcd");
  assert.equal(accepted(cut, "abcdef"), "abcd");
  assert.equal(
    accepted(Failure, { code: "x", message: "m".repeat(MAX_FAILURE_CHARS + 9) })
      .message.length,
    MAX_FAILURE_CHARS,
  );
});

Deno.test("numbers: int, positive, min and max at their edges; never NaN or Infinity", () => {
  const plain = s.number();
  assert.equal(accepted(plain, -1.5), -1.5);
  // JSON reads 1e999 as Infinity; structured clone carries NaN and Infinity as they are.
  for (const bad of [NaN, Infinity, -Infinity, JSON.parse("1e999"), structuredClone(NaN)]) {
    assert.deepEqual(issues(plain, bad), [
      { path: [], message: `expected number, received ${bad}` },
    ]);
  }
  assert.ok(refused(plain, "1"));
  assert.ok(refused(plain, 1n));
  const int = s.number().int();
  assert.equal(accepted(int, Number.MAX_SAFE_INTEGER), Number.MAX_SAFE_INTEGER);
  assert.equal(accepted(int, -Number.MAX_SAFE_INTEGER), -Number.MAX_SAFE_INTEGER);
  for (const bad of [0.5, 2 ** 53, -(2 ** 53), 1e300, Infinity, NaN]) {
    assert.deepEqual(issues(int, bad), [
      { path: [], message: `expected a whole number, received ${bad}` },
    ]);
  }
  const positive = s.number().int().positive();
  assert.equal(accepted(positive, 1), 1);
  assert.deepEqual(issues(positive, 0), [
    { path: [], message: "expected more than 0, received 0" },
  ]);
  assert.ok(refused(positive, -0));
  const ranged = s.number().min(0).max(2);
  assert.equal(accepted(ranged, 0), 0);
  assert.equal(accepted(ranged, 2), 2);
  assert.deepEqual(issues(ranged, -0.1), [
    { path: [], message: "expected at least 0, received -0.1" },
  ]);
  assert.deepEqual(issues(ranged, 2.1), [
    { path: [], message: "expected at most 2, received 2.1" },
  ]);
});

Deno.test("booleans, literals, enums and unknown accept exactly their values", () => {
  assert.equal(accepted(s.boolean(), false), false);
  assert.ok(refused(s.boolean(), 0));
  assert.equal(accepted(s.literal(true), true), true);
  assert.deepEqual(issues(s.literal(true), false), [
    { path: [], message: "expected true, received false" },
  ]);
  assert.deepEqual(issues(s.literal("auto"), "Auto"), [
    { path: [], message: 'expected "auto", received "Auto"' },
  ]);
  const stream = s.enum(["stdout", "stderr"]);
  assert.equal(accepted(stream, "stderr"), "stderr");
  assert.deepEqual(issues(stream, "stdin"), [
    { path: [], message: 'expected one of "stdout" | "stderr", received "stdin"' },
  ]);
  for (const value of [undefined, null, 0, "", [], {}]) {
    assert.equal(accepted(s.unknown(), value), value);
  }
});

Deno.test("objects: a fresh copy without unknown keys; strict objects refuse them", () => {
  const point = s.object({ x: s.number(), label: s.string().optional() });
  const given = { x: 1, extra: "dropped" };
  const copy = accepted(point, given);
  assert.deepEqual(copy, { x: 1 });
  assert.notEqual(copy, given);
  // An optional key absent stays absent; present as undefined (a clone can carry it) it stays.
  assert.ok(!("label" in copy));
  assert.ok("label" in accepted(point, { x: 1, label: undefined }));
  assert.deepEqual(issues(point, {}), [{ path: ["x"], message: "missing: expected number" }]);
  assert.deepEqual(issues(point, { x: 1, label: 2 }), [
    { path: ["label"], message: "expected string, received 2" },
  ]);
  // An `unknown` field must be there, whatever it holds.
  const save = s.object({ value: s.unknown() });
  assert.deepEqual(issues(save, {}), [{ path: ["value"], message: "missing: expected a value" }]);
  assert.deepEqual(accepted(save, { value: undefined }), { value: undefined });

  const strict = s.strictObject({ x: s.number() });
  assert.deepEqual(accepted(strict, { x: 1 }), { x: 1 });
  assert.deepEqual(issues(strict, { x: 1, b: 2, c: 3 }), [
    { path: [], message: 'unknown keys: "b", "c"' },
  ]);

  const wider = point.extend({ x: s.string(), y: s.boolean() });
  assert.deepEqual(accepted(wider, { x: "1", y: true }), { x: "1", y: true });
  assert.ok(refused(wider, { x: 1, y: true }));
});

Deno.test("objects and records take plain objects only, and never a prototype from the data", () => {
  const shapes = [s.object({}), s.strictObject({}), s.record(s.unknown())];
  for (const shape of shapes) {
    for (const value of [null, [], [1], "{}", 1, new Map(), new Date(0), /x/]) {
      assert.ok(refused(shape, value), `${shape.constructor.name} refuses ${String(value)}`);
    }
    accepted(shape, Object.create(null));
  }
  // Inherited keys are not the object's: only own properties count.
  const inherited = Object.create({ x: 1 });
  assert.ok(refused(s.object({ x: s.number() }), inherited));
  const bare = Object.assign(Object.create(null), { x: 1 });
  assert.deepEqual(accepted(s.object({ x: s.number() }), bare), { x: 1 });

  // JSON.parse makes `__proto__` an own key: copied, it would set the copy's prototype.
  const hostile = JSON.parse('{"a": 1, "__proto__": {"polluted": true}}');
  const record = accepted(s.record(s.unknown()), hostile);
  assert.deepEqual(Object.keys(record), ["a"]);
  assert.equal(Object.getPrototypeOf(record), Object.prototype);
  assert.equal((record as Record<string, unknown>).polluted, undefined);
  const event = accepted(
    WorkerEvent,
    JSON.parse('{"type": "log", "stream": "stdout", "text": "t", "__proto__": {"x": 1}}'),
  );
  assert.equal(Object.getPrototypeOf(event), Object.prototype);
  assert.deepEqual(Object.keys(event), ["type", "stream", "text"]);
  assert.ok(refused(s.strictObject({ a: s.number() }), hostile));
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

Deno.test("records check every value and name its key", () => {
  const headers = s.record(s.string());
  assert.deepEqual(accepted(headers, { a: "1", b: "2" }), { a: "1", b: "2" });
  assert.deepEqual(accepted(headers, {}), {});
  assert.deepEqual(issues(headers, { a: "1", b: 2 }), [
    { path: ["b"], message: "expected string, received 2" },
  ]);
});

Deno.test("arrays: min and max at their edges, checked before any item", () => {
  const list = s.array(s.string()).min(1).max(2);
  assert.deepEqual(accepted(list, ["a"]), ["a"]);
  assert.deepEqual(accepted(list, ["a", "b"]), ["a", "b"]);
  assert.deepEqual(issues(list, []), [{
    path: [],
    message: "expected at least 1 items, received 0",
  }]);
  assert.deepEqual(issues(list, ["a", "b", 3]), [
    { path: [], message: "expected at most 2 items, received 3" },
  ]);
  assert.deepEqual(issues(list, ["a", 2]), [{ path: [1], message: "expected string, received 2" }]);
  assert.deepEqual(issues(list, { 0: "a", length: 1 }), [
    { path: [], message: "expected array, received object" },
  ]);
  // A sparse list as long as a list can be (structured clone carries it in a few bytes).
  const huge = new Array(2 ** 32 - 1);
  const started = performance.now();
  assert.equal(issues(s.array(s.string()).max(10), huge).length, 1);
  // With no maximum, its holes are issues, and the walk ends at MAX_ISSUES of them.
  assert.equal(issues(s.array(s.string()), huge).length, s.MAX_ISSUES);
  assert.ok(performance.now() - started < 1000);
});

Deno.test("tuples take exactly their items", () => {
  const line = s.tuple([s.enum(["stdout", "stderr"]), s.string()]);
  assert.deepEqual(accepted(line, ["stdout", "x"]), ["stdout", "x"]);
  assert.deepEqual(issues(line, ["stdout"]), [{
    path: [],
    message: "expected 2 items, received 1",
  }]);
  assert.deepEqual(issues(line, ["stdout", "x", "y"]), [
    { path: [], message: "expected 2 items, received 3" },
  ]);
  assert.deepEqual(issues(line, ["stdin", "x"]), [
    { path: [0], message: 'expected one of "stdout" | "stderr", received "stdin"' },
  ]);
});

Deno.test("unions: the first option that fits; else what is wrong within the one of its type", () => {
  const step = s.strictObject({ tool: s.string() });
  const steps = s.union([step, s.array(step).min(1)]);
  assert.deepEqual(accepted(steps, { tool: "t" }), { tool: "t" });
  assert.deepEqual(accepted(steps, [{ tool: "t" }]), [{ tool: "t" }]);
  assert.deepEqual(issues(steps, {}), [{ path: ["tool"], message: "missing: expected string" }]);
  assert.deepEqual(issues(steps, { tool: "t", more: 1 }), [
    { path: [], message: 'unknown keys: "more"' },
  ]);
  assert.deepEqual(issues(steps, []), [
    { path: [], message: "expected at least 1 items, received 0" },
  ]);
  assert.deepEqual(issues(steps, 3), [
    { path: [], message: "expected object or array, received 3" },
  ]);
});

Deno.test("discriminated unions check the one option their key names", () => {
  const shape = s.discriminatedUnion("type", [
    s.object({ type: s.literal("a") }),
    s.object({ type: s.literal("b"), x: s.string() }),
  ]);
  assert.deepEqual(shape.values, ["a", "b"]);
  assert.deepEqual(accepted(shape, { type: "a", x: 1 }), { type: "a" });
  assert.deepEqual(issues(shape, { type: "b" }), [
    { path: ["x"], message: "missing: expected string" },
  ]);
  assert.deepEqual(issues(shape, { type: "c" }), [
    { path: ["type"], message: 'expected one of "a" | "b", received "c"' },
  ]);
  assert.deepEqual(issues(shape, {}), [
    { path: ["type"], message: 'expected one of "a" | "b", received undefined' },
  ]);
  // Keys of Object.prototype are no tag: only the object's own key is read.
  assert.ok(refused(s.discriminatedUnion("k", [s.object({ k: s.literal("toString") })]), {}));
  assert.deepEqual(issues(shape, [{ type: "a" }]), [
    { path: [], message: "expected object, received array" },
  ]);
  assert.deepEqual(GrynyaCall.values, [
    "connect",
    "list_tools",
    "list_resources",
    "read_resource",
    "list_prompts",
    "get_prompt",
    "call_tool",
    "save",
    "write_strategy",
  ]);
});

Deno.test("issues carry the path to the value, as one line too", () => {
  const lines = [["stdout", "a"], ["stderr", "b"], ["stdout", 3]];
  const found = issues(HostEvent, { type: "logs", lines, dropped: -1 });
  assert.deepEqual(found, [
    { path: ["lines", 2, 1], message: "expected string, received 3" },
    { path: ["dropped"], message: "expected at least 0, received -1" },
  ]);
  assert.equal(
    s.describeIssues(found),
    "lines.2.1: expected string, received 3; dropped: expected at least 0, received -1",
  );
  assert.equal(s.describeIssues(issues(HostEvent, 1)), "(root): expected object, received 1");
  const template = issues(WriteTemplate, { create: { tool: "", arguments: [] } });
  assert.deepEqual(template.map((i) => i.path.join(".")), ["create.tool", "create.arguments"]);
  const request = issues(LlmRequest, { messages: [{ role: "user", text: "hi" }, { role: "x" }] });
  assert.deepEqual(request, [
    {
      path: ["messages", 1, "role"],
      message: 'expected one of "user" | "assistant" | "tool", received "x"',
    },
  ]);
});

Deno.test("no value that JSON or structured clone can carry makes a check throw", () => {
  const values: unknown[] = [
    undefined,
    null,
    true,
    0,
    -0,
    NaN,
    Infinity,
    1e308,
    2n ** 70n,
    "",
    "x".repeat(10_000),
    [],
    [[[]]],
    new Array(5),
    {},
    Object.create(null),
    JSON.parse('{"__proto__": null, "constructor": {"prototype": 1}, "type": "start"}'),
    { type: "start", spec: { grynya: [] } },
    { type: "logs", lines: [[]], dropped: NaN },
    { type: "grynya", id: 1, call: { op: "save" } },
    new Map([["type", "running"]]),
    new Set([1]),
    new Date(NaN),
    new Uint8Array(4),
    new ArrayBuffer(8),
    /./g,
    new Error("x"),
  ];
  const shapes = [HostHello, TaskSpec, HostEvent, WorkerEvent, WriteTemplate, LlmRequest];
  for (const value of values) {
    for (const wrapped of [value, structuredClone({ type: "result", json: value, value })]) {
      for (const shape of shapes) {
        const checked = shape.check(wrapped);
        if (!checked.success) assert.ok(checked.issues.length > 0);
      }
    }
  }
});

/** A task's events whose `unknown`-typed data is `value`, in each field that carries such data. */
function carrying(value: unknown): unknown[] {
  const request = (toolArgs: unknown, inputSchema: unknown) => ({
    type: "llm_request",
    id: 1,
    request: {
      messages: [{
        role: "assistant",
        text: "",
        toolCalls: [{ id: "c", name: "n", args: toolArgs }],
      }],
      tools: [{ name: "t", inputSchema }],
    },
  });
  return [
    { type: "grynya", id: 1, call: { op: "save", value } },
    { type: "grynya", id: 1, call: { op: "call_tool", name: "t", args: { a: value } } },
    request(value, {}),
    request({}, { a: value }),
  ];
}

Deno.test("data a task sends for grynya or the model is JSON: what JSON.stringify would throw on or blow up is refused", () => {
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  // A list whose two items are one object, 40 times over: structured clone carries each object
  // once, so a few hundred bytes would stand for 2^40 leaves.
  let shared: unknown = ["leaf"];
  for (let i = 0; i < 40; i++) shared = [shared, shared];
  const growable = new SharedArrayBuffer(4, { maxByteLength: 1024 });
  let deep: unknown = "bottom";
  for (let i = 0; i <= s.MAX_JSON_DEPTH; i++) deep = [deep];
  const hostile = [
    1n,
    cyclic,
    new Array(2 ** 32 - 1),
    shared,
    // Shared with the Worker: it could grow after its host measured it.
    new Uint8Array(growable),
    growable,
    new Map([["a", 1]]),
    new Set([1]),
    new Date(0),
    NaN,
    undefined,
    deep,
  ];
  const started = performance.now();
  for (const value of hostile) {
    for (const event of carrying(value)) {
      assert.ok(refused(WorkerEvent, event), `refused: ${Deno.inspect(event, { depth: 1 })}`);
    }
  }
  assert.ok(performance.now() - started < 1000);
});

Deno.test("JSON data a task sends is a fresh copy, as deep as MAX_JSON_DEPTH, without __proto__ keys", () => {
  let deep: unknown = "bottom";
  for (let i = 0; i < s.MAX_JSON_DEPTH; i++) deep = [deep];
  assert.equal(JSON.stringify(accepted(s.json(), deep)), JSON.stringify(deep));
  const value = { a: [1, -0, "x", null, true, { b: "c" }], c: {}, d: [[], {}] };
  for (const event of [...carrying(value), ...carrying(deep)]) {
    const data = accepted(WorkerEvent, event);
    assert.equal(JSON.stringify(data), JSON.stringify(event));
  }
  const save = { type: "grynya", id: 1, call: { op: "save", value } } as const;
  const copy = accepted(WorkerEvent, save) as typeof save;
  assert.notEqual(copy.call.value, value);
  assert.notEqual(copy.call.value.a, value.a);
  const polluted = JSON.parse('{"a": 1, "__proto__": {"polluted": true}}');
  const kept = accepted(s.json(), polluted) as Record<string, unknown>;
  assert.deepEqual(Object.keys(kept), ["a"]);
  assert.equal(Object.getPrototypeOf(kept), Object.prototype);
  assert.equal(kept.polluted, undefined);
});

Deno.test("an issue's path shows a long key cut, and strict objects name a few unknown keys", () => {
  const key = "k".repeat(1_000_000);
  const found = issues(s.record(s.string()), { [key]: 1 });
  const line = s.describeIssues(found);
  assert.ok(line.length < 200, `${line.length} characters`);
  assert.match(line, /^k{40}…: expected string, received 1$/);
  const many = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`key${i}`, i]));
  const strict = s.describeIssues(issues(s.strictObject({}), many));
  assert.ok(strict.length < 200, `${strict.length} characters`);
  assert.match(strict, /and 9995 more$/);
});
