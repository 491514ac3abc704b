/**
 * The directions of Klym's layout, read from the import lines of every file in src/ and main.ts:
 * the task side knows nothing of the faces, mcp/ is protocol (no transport, dashboard or CLI), http/
 * is transport (no tasks, protocol, dashboard or CLI), the two protocol eras never import each
 * other, one file touches the MCP SDK's internals, the Worker's code loads only what a Worker with
 * no permissions may load, and a task's process loads no zod. The rules are data (the tables
 * below); a failure names the file, the line, the import and the rule.
 */
import assert from "node:assert/strict";
import { dirname, join, normalize } from "node:path";
import { sourceFiles } from "./helpers/source_files.ts";

/** An import direction that must not be taken. */
interface Rule {
  /** What the rule keeps true, in the failure message. */
  readonly rule: string;
  /** The importing files it applies to (paths from the repository root). */
  readonly from: RegExp;
  /** The imports it refuses: resolved paths from the root, or bare specifiers as written. */
  readonly refuse: RegExp;
}

const RULES: readonly Rule[] = [
  {
    rule: "the task side (tasks/, journal/, llm/, grynya/) knows nothing of the faces",
    from: /^src\/(tasks|journal|llm|grynya)\//,
    refuse: /^src\/(mcp|server|http|ui|cli|service)\//,
  },
  {
    rule: "mcp/ is protocol: it imports no transport (server/, http/), dashboard or CLI",
    from: /^src\/mcp\//,
    refuse: /^src\/(server|http|ui|cli)\//,
  },
  {
    rule:
      "http/ is transport: it knows nothing of tasks (tasks/, journal/, llm/, grynya/, host/), mcp/, the dashboard or the CLI (servers come from its createServer)",
    from: /^src\/http\//,
    refuse: /^src\/(tasks|journal|llm|grynya|host|mcp|ui|cli)\//,
  },
  {
    rule:
      "the dashboard (ui/) and the CLI (cli/) import no protocol (mcp/): what they share with the tools lives on the task side",
    from: /^src\/(ui|cli)\//,
    refuse: /^src\/(mcp|server)\//,
  },
  {
    rule: "the 2025-11-25 era never imports the 2026-07-28 era (both use the task core)",
    from: /^src\/mcp\/era_2025\.ts$/,
    refuse: /^src\/mcp\/era_2026\.ts$/,
  },
  {
    rule: "the 2026-07-28 era never imports the 2025-11-25 era (both use the task core)",
    from: /^src\/mcp\/era_2026\.ts$/,
    refuse: /^src\/mcp\/era_2025\.ts$/,
  },
  {
    rule:
      "metrics/ is told what happens (the registry calls the TaskObserver it is given; http/ serves what klym.ts hands it): neither the task side nor http/ imports it",
    from: /^src\/(tasks|journal|llm|grynya|http)\//,
    refuse: /^src\/metrics\//,
  },
  {
    rule: "the worker/ code runs in the task's Worker: nothing on the server side imports it",
    from: /^src\/(?!worker\/)/,
    refuse: /^src\/worker\//,
  },
];

/** Text only one file may contain: reaching into the MCP SDK's private state. */
const SDK_INTERNALS = {
  rule: "only src/mcp/sdk_seam.ts touches the MCP SDK's internals (add what you need to its API)",
  allowed: "src/mcp/sdk_seam.ts",
  pattern: new RegExp(
    String.raw`\b_(requestHandlers|notificationHandlers|responseHandlers|progressHandlers|` +
      String.raw`requestHandlerAbortControllers|wrapHandler|getRequestHandler|onrequest|` +
      String
        .raw`onnotification|onresponse|transport|capabilities|clientCapabilities|serverInfo)\b` +
      String.raw`|\bserver\b[^\n;]*\bas unknown as\b`,
  ),
};

/**
 * What the Worker's code may load at run time (the closure of its value imports): a Worker with
 * no permissions, so Klym's own small pure modules (`abort.ts` combines signals the project's
 * way) and nothing else: no npm package (the SDK, zod), no Node or Deno built-in module. Type-only
 * imports (`import type`) are erased and may name any.
 */
const WORKER = {
  rule: "worker/ loads only what a Worker with no permissions may load",
  entries: /^src\/worker\//,
  mayLoad: [
    /^src\/worker\//,
    /^src\/text\.ts$/,
    /^src\/task_failure\.ts$/,
    /^src\/errors\.ts$/,
    /^src\/abort\.ts$/,
  ],
};

/**
 * What a task's process loads. Its host and its Worker check their messages with shapes
 * (src/shape.ts), not zod, which costs each waiting task several MB. The MCP SDK's client loads
 * zod too: a host loads it on its task's first grynya call only (an `import()`), so the static
 * imports of the process's entries (the host's, its Workers', and main.ts, which a compiled binary
 * runs as the host) reach neither.
 */
const TASK_PROCESS = {
  rule: "a task's process (host/, worker/) loads no zod: src/shape.ts checks its messages",
  entries: /^src\/(host|worker)\//,
  refuse: /^zod(\/|$)/,
  eager: {
    rule:
      "the static imports of a task process's entries (main.ts, the host's, its Workers') reach neither zod nor the MCP SDK's client (which loads zod): import() them where needed",
    entries:
      /^(main\.ts|src\/host\/host\.ts|src\/host\/memory_watchdog_worker\.ts|src\/worker\/task_worker\.ts)$/,
    refuse: /^(zod|@modelcontextprotocol\/)/,
  },
};

interface Import {
  readonly line: number;
  readonly specifier: string;
  /** The path from the root for a relative import, else the specifier. */
  readonly target: string;
  readonly typeOnly: boolean;
  /** An `import()`: loaded when the code reaches it, not with its importer. */
  readonly dynamic: boolean;
}

const STATIC_IMPORT =
  /^[ \t]*(import|export)\b(\s+type\b)?[^;]*?\bfrom\s*["']([^"']+)["']|^[ \t]*import\s*["']([^"']+)["']/gm;
const DYNAMIC_IMPORT = /^(?![ \t]*(?:\*|\/\/)).*?\bimport\(\s*["']([^"']+)["']\s*\)/gm;

/** The imports of `source` (the file `path` from the root), with their line numbers. */
function importsOf(path: string, source: string): Import[] {
  const found: Import[] = [];
  const add = (index: number, specifier: string, typeOnly: boolean, dynamic: boolean) => {
    const line = source.slice(0, index).split("\n").length;
    const target = specifier.startsWith(".")
      ? normalize(join(dirname(path), specifier)).replaceAll("\\", "/")
      : specifier;
    found.push({ line, specifier, target, typeOnly, dynamic });
  };
  for (const m of source.matchAll(STATIC_IMPORT)) {
    add(m.index, (m[3] ?? m[4])!, m[2] !== undefined, false);
  }
  for (const m of source.matchAll(DYNAMIC_IMPORT)) add(m.index, m[1]!, false, true);
  return found;
}

/**
 * The value imports of the files reached from those `entries` names, each with its importer: the
 * walk goes on through the imports `follow` lets on, `import()`s too unless `eager`.
 */
function reached(
  files: ReadonlyMap<string, string>,
  entries: RegExp,
  follow: (i: Import) => boolean,
  eager = false,
): [string, Import][] {
  const found: [string, Import][] = [];
  const seen = new Set<string>();
  const queue = [...files.keys()].filter((path) => entries.test(path));
  while (queue.length > 0) {
    const path = queue.pop()!;
    if (seen.has(path)) continue;
    seen.add(path);
    for (const i of importsOf(path, files.get(path) ?? "")) {
      if (i.typeOnly || (eager && i.dynamic)) continue;
      found.push([path, i]);
      if (follow(i)) queue.push(i.target);
    }
  }
  return found;
}

/** Every broken rule in `files` (source text by path from the root), as a readable line each. */
function violations(files: ReadonlyMap<string, string>): string[] {
  const problems: string[] = [];
  const said = (path: string, i: Import, rule: string) =>
    `${path}:${i.line} imports "${i.specifier}"${
      i.target === i.specifier ? "" : ` (${i.target})`
    }: ${rule}`;
  for (const [path, source] of files) {
    for (const i of importsOf(path, source)) {
      for (const rule of RULES) {
        if (rule.from.test(path) && rule.refuse.test(i.target)) {
          problems.push(said(path, i, rule.rule));
        }
      }
    }
    if (path !== SDK_INTERNALS.allowed) {
      source.split("\n").forEach((text, at) => {
        const hit = text.match(SDK_INTERNALS.pattern);
        if (hit) problems.push(`${path}:${at + 1} has "${hit[0]}": ${SDK_INTERNALS.rule}`);
      });
    }
  }
  // The Worker's load closure: from each worker/ file, through every value import it may load.
  const mayLoad = (i: Import) => WORKER.mayLoad.some((allowed) => allowed.test(i.target));
  for (const [path, i] of reached(files, WORKER.entries, mayLoad)) {
    if (!mayLoad(i)) {
      problems.push(
        said(path, i, `${WORKER.rule} (${WORKER.mayLoad.map((r) => r.source).join(", ")})`),
      );
    }
  }
  // A task process's load closure, and what it loads before its first grynya call.
  const { eager } = TASK_PROCESS;
  for (const [path, i] of reached(files, TASK_PROCESS.entries, () => true)) {
    if (TASK_PROCESS.refuse.test(i.target)) problems.push(said(path, i, TASK_PROCESS.rule));
  }
  for (const [path, i] of reached(files, eager.entries, () => true, true)) {
    if (eager.refuse.test(i.target)) problems.push(said(path, i, eager.rule));
  }
  return problems;
}

Deno.test("src/ and main.ts keep the layering rules", async () => {
  const files = await sourceFiles();
  const problems = violations(files);
  assert.deepEqual(problems, [], `Layering rules broken:\n${problems.join("\n")}`);
});

Deno.test("the import reader sees static, re-exported, side-effect, type-only and dynamic imports", async () => {
  const files = await sourceFiles();
  const edges = (path: string) => importsOf(path, files.get(path)!).map((i) => i.target);
  assert.ok(edges("src/mcp/era_2025.ts").includes("src/mcp/task_core.ts"));
  assert.ok(edges("src/mcp/era_2026.ts").includes("src/mcp/sdk_seam.ts"));
  assert.ok(edges("main.ts").includes("src/klym.ts"), "main.ts loads src/klym.ts with import()");
  assert.ok(edges("src/worker/task_worker.ts").includes("src/worker/lockdown.ts"));

  const sample = [
    'import type { A } from "../protocol.ts";',
    'export { b } from "./b.ts";',
    "import {",
    "  c,",
    '} from "node:fs";',
    ' * import("./in_a_comment.ts") is not an import',
    'const d = await import("./d.ts");',
  ].join("\n");
  assert.deepEqual(
    importsOf("src/worker/x.ts", sample).map(({ line, target, typeOnly, dynamic }) => ({
      line,
      target,
      typeOnly,
      dynamic,
    })),
    [
      { line: 1, target: "src/protocol.ts", typeOnly: true, dynamic: false },
      { line: 2, target: "src/worker/b.ts", typeOnly: false, dynamic: false },
      { line: 3, target: "node:fs", typeOnly: false, dynamic: false },
      { line: 7, target: "src/worker/d.ts", typeOnly: false, dynamic: true },
    ],
  );
});

Deno.test("each rule refuses its import and names the file, the line, the import and the rule", () => {
  const broken = new Map([
    ["src/tasks/a.ts", 'import { x } from "../mcp/task_core.ts";'],
    ["src/mcp/era_2025.ts", '\nimport { y } from "./era_2026.ts";'],
    ["src/mcp/era_2026.ts", 'import { z } from "./era_2025.ts";'],
    ["src/mcp/b.ts", 'import type { H } from "../http/http_app.ts";'],
    ["src/http/g.ts", 'import type { M } from "../mcp/mcp_server.ts";\nimport "../tasks/t.ts";'],
    ["src/ui/c.ts", 'import { w } from "../worker/task_context.ts";'],
    ["src/ui/u.ts", 'import { summary } from "../mcp/task_tools.ts";'],
    ["src/cli/k.ts", 'import type { S } from "../mcp/task_tools.ts";'],
    ["src/mcp/d.ts", "const h = (server.server as unknown as P)._requestHandlers;"],
    ["src/worker/task_context.ts", 'import { z } from "zod";\nimport "../protocol.ts";'],
    ["src/worker/e.ts", 'import type { T } from "zod";\nimport { f } from "../text.ts";'],
    ["src/text.ts", 'import { readFileSync } from "node:fs";'],
    // A host that loads zod: by itself, through a module it loads on demand, or at once.
    [
      "src/host/host.ts",
      'import { c } from "./grynya_client.ts";\nawait import("./graph_writer.ts");',
    ],
    ["src/host/grynya_client.ts", 'import { Client } from "@modelcontextprotocol/client";'],
    [
      "src/host/graph_writer.ts",
      'import type { R } from "@modelcontextprotocol/client";\nimport "../p.ts";',
    ],
    ["src/p.ts", 'export * from "zod";'],
    [
      "main.ts",
      'import { loadConfig } from "./src/c.ts";\nimport type { Config } from "./src/c.ts";',
    ],
    ["src/c.ts", 'import { z } from "zod";'],
  ]);
  const worker = `${WORKER.rule} (${WORKER.mayLoad.map((r) => r.source).join(", ")})`;
  assert.deepEqual(
    violations(broken).sort(),
    [
      'src/tasks/a.ts:1 imports "../mcp/task_core.ts" (src/mcp/task_core.ts): the task side (tasks/, journal/, llm/, grynya/) knows nothing of the faces',
      'src/mcp/era_2025.ts:2 imports "./era_2026.ts" (src/mcp/era_2026.ts): the 2025-11-25 era never imports the 2026-07-28 era (both use the task core)',
      'src/mcp/era_2026.ts:1 imports "./era_2025.ts" (src/mcp/era_2025.ts): the 2026-07-28 era never imports the 2025-11-25 era (both use the task core)',
      'src/mcp/b.ts:1 imports "../http/http_app.ts" (src/http/http_app.ts): mcp/ is protocol: it imports no transport (server/, http/), dashboard or CLI',
      'src/http/g.ts:1 imports "../mcp/mcp_server.ts" (src/mcp/mcp_server.ts): http/ is transport: it knows nothing of tasks (tasks/, journal/, llm/, grynya/, host/), mcp/, the dashboard or the CLI (servers come from its createServer)',
      'src/http/g.ts:2 imports "../tasks/t.ts" (src/tasks/t.ts): http/ is transport: it knows nothing of tasks (tasks/, journal/, llm/, grynya/, host/), mcp/, the dashboard or the CLI (servers come from its createServer)',
      'src/ui/c.ts:1 imports "../worker/task_context.ts" (src/worker/task_context.ts): the worker/ code runs in the task\'s Worker: nothing on the server side imports it',
      'src/ui/u.ts:1 imports "../mcp/task_tools.ts" (src/mcp/task_tools.ts): the dashboard (ui/) and the CLI (cli/) import no protocol (mcp/): what they share with the tools lives on the task side',
      'src/cli/k.ts:1 imports "../mcp/task_tools.ts" (src/mcp/task_tools.ts): the dashboard (ui/) and the CLI (cli/) import no protocol (mcp/): what they share with the tools lives on the task side',
      `src/mcp/d.ts:1 has "server.server as unknown as": ${SDK_INTERNALS.rule}`,
      `src/text.ts:1 imports "node:fs": ${worker}`,
      `src/worker/task_context.ts:1 imports "zod": ${worker}`,
      `src/worker/task_context.ts:2 imports "../protocol.ts" (src/protocol.ts): ${worker}`,
      `src/worker/task_context.ts:1 imports "zod": ${TASK_PROCESS.rule}`,
      `src/p.ts:1 imports "zod": ${TASK_PROCESS.rule}`,
      `src/host/grynya_client.ts:1 imports "@modelcontextprotocol/client": ${TASK_PROCESS.eager.rule}`,
      `src/c.ts:1 imports "zod": ${TASK_PROCESS.eager.rule}`,
    ].sort(),
  );
});
