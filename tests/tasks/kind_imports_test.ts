import assert from "node:assert/strict";
import { TaskError } from "../../src/errors.ts";
import { KindImports } from "../../src/tasks/kind_imports.ts";

async function withFolder(files: Record<string, string>, fn: (root: string) => void) {
  const root = await Deno.realPath(await Deno.makeTempDir());
  try {
    for (const [name, text] of Object.entries(files)) {
      await Deno.mkdir(`${root}/${name}`.replace(/\/[^/]+$/, ""), { recursive: true });
      await Deno.writeTextFile(`${root}/${name}`, text);
    }
    fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

const refused = (fn: () => void, pattern: RegExp) =>
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof TaskError && e.code === "KIND_IMPORT_REFUSED", String(e));
    assert.match(e.message, pattern);
    return true;
  });

Deno.test("a kind may import its own modules, JSON beside them and computation-only built-ins", async () => {
  await withFolder({
    "k/main.ts":
      `import { a } from "./a.ts";\nimport data from "./d.json" with { type: "json" };\n` +
      `import * as path from "node:path";\nexport { b } from "./b/b.ts";\nexport default () => a;\n`,
    "k/a.ts": `import { createHash } from "node:crypto";\nexport const a = 1;\n`,
    "k/b/b.ts": `export * from "../a.ts";\nexport const b = 2;\n`,
    "k/d.json": `{"x": 1}`,
  }, (root) => new KindImports().check("k", `${root}/k/main.ts`, root));
});

Deno.test("anything else a kind imports is refused with its file, line and specifier", async () => {
  const cases: [string, RegExp][] = [
    [`import fs from "node:fs";`, /main\.ts:1 imports "node:fs", which is not available/],
    [`\n\nimport { z } from "zod";`, /main\.ts:3 imports "zod", which is not a relative path/],
    [`import x from "npm:left-pad@1.3.0";`, /"npm:left-pad@1\.3\.0", which is not a relative/],
    [`export * from "https://example.com/x.ts";`, /"https:\/\/example\.com\/x\.ts"/],
    [`import "../outside.ts";`, /"\.\.\/outside\.ts", which leads to .*outside\.ts, outside/],
    [`import "./missing.ts";`, /"\.\/missing\.ts", which does not exist/],
    [`import "\\u006eode:fs";`, /which is written with escapes/],
    [`const m = await import("node:v8");`, /"node:v8", which is not available/],
    [`import "./helper.ts";`, /helper\.ts:1 imports "node:child_process"/],
  ];
  for (const [source, pattern] of cases) {
    await withFolder({
      "outside.ts": "export {};",
      "k/main.ts": source,
      "k/helper.ts": `import cp from "node:child_process";\n`,
    }, (root) => {
      // The folder is the kind's, one level down, so "../outside.ts" leaves it.
      refused(() => new KindImports().check("k", `${root}/k/main.ts`, `${root}/k`), pattern);
    });
  }
});

Deno.test("a changed module is read again; an unchanged one is not", async () => {
  const root = await Deno.realPath(await Deno.makeTempDir());
  try {
    const imports = new KindImports();
    await Deno.writeTextFile(`${root}/k.ts`, `export default () => 1;\n`);
    imports.check("k", `${root}/k.ts`, root);
    await Deno.writeTextFile(`${root}/k.ts`, `import "node:os";\nexport default () => 2;\n`);
    refused(() => imports.check("k", `${root}/k.ts`, root), /"node:os"/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
