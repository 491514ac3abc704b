import assert from "node:assert/strict";
import { KlymError } from "../../src/errors.ts";
import { KindImports, scan } from "../../src/tasks/kind_imports.ts";

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
    assert.ok(e instanceof KlymError && e.code === "KIND_IMPORT_REFUSED", String(e));
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
  }, (root) => {
    const files = new KindImports().check("k", "k/main.ts", root, true);
    assert.deepEqual([...files.keys()].sort(), ["k/a.ts", "k/b/b.ts", "k/d.json", "k/main.ts"]);
    assert.equal(new TextDecoder().decode(files.get("k/d.json")?.data), `{"x": 1}`);
  });
});

Deno.test("anything else a kind imports is refused with its file, line and specifier", async () => {
  const cases: [string, RegExp][] = [
    [`import fs from "node:fs";`, /main\.ts:1 imports "node:fs", which is not available/],
    [`\n\nimport { z } from "zod";`, /main\.ts:3 imports "zod", which is not a relative path/],
    [`import x from "npm:left-pad@1.3.0";`, /"npm:left-pad@1\.3\.0", which is not a relative/],
    [`export * from "https://example.com/x.ts";`, /"https:\/\/example\.com\/x\.ts"/],
    [`import "../outside.ts";`, /"\.\.\/outside\.ts", which leads outside the tasks folder/],
    [`import "./a.ts?x";`, /"\.\/a\.ts\?x", which has a query or a fragment/],
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
      refused(() => new KindImports().check("k", "main.ts", `${root}/k`), pattern);
    });
  }
});

Deno.test("a changed module is read again; an unchanged one is not", async () => {
  const root = await Deno.realPath(await Deno.makeTempDir());
  try {
    const imports = new KindImports();
    await Deno.writeTextFile(`${root}/k.ts`, `export default () => 1;\n`);
    imports.check("k", "k.ts", root);
    await Deno.writeTextFile(`${root}/k.ts`, `import "node:os";\nexport default () => 2;\n`);
    refused(() => imports.check("k", "k.ts", root), /"node:os"/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("refusals name the kind's files relative to the tasks folder, never by absolute path", async () => {
  await withFolder({ "k/sub/main.ts": `\nimport "node:fs";\n` }, (root) => {
    assert.throws(() => new KindImports().check("k", "k/sub/main.ts", root), (e: unknown) => {
      assert.ok(e instanceof KlymError);
      assert.match(e.message, /kind "k": k\/sub\/main\.ts:2 imports "node:fs"/);
      assert.ok(!e.message.includes(root), e.message);
      return true;
    });
  });
});

Deno.test("a file of the graph that is a link leading outside is refused as KIND_OUTSIDE_TASKS_DIR", async () => {
  const outside = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${outside}/secret.json`, `{"secret": true}`);
    await withFolder({
      "k/main.ts":
        `import data from "./data.json" with { type: "json" };\nexport default () => data;\n`,
    }, (root) => {
      Deno.symlinkSync(`${outside}/secret.json`, `${root}/k/data.json`);
      assert.throws(() => new KindImports().check("k", "k/main.ts", root, true), (e: unknown) => {
        assert.ok(e instanceof KlymError && e.code === "KIND_OUTSIDE_TASKS_DIR", String(e));
        assert.match(e.message, /k\/data\.json leads outside the tasks folder/);
        assert.ok(!e.message.includes(outside) && !e.message.includes(root), e.message);
        return true;
      });
    });
  } finally {
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("imports resolve from the importing file's path, as the module loader does, links inside included", async () => {
  await withFolder({
    "k/main.ts": `import { b } from "./lib/a.ts";\nexport default () => b;\n`,
    "shared/a.ts": `export { b } from "../b.ts";\n`,
    "k/b.ts": `export const b = "k";\n`,
    "b.ts": `export const b = "root";\n`,
  }, (root) => {
    Deno.symlinkSync("../shared", `${root}/k/lib`);
    const files = new KindImports().check("k", "k/main.ts", root, true);
    assert.deepEqual([...files.keys()].sort(), ["k/b.ts", "k/lib/a.ts", "k/main.ts"]);
  });
});

Deno.test("a file of 100,000 imports is scanned in one pass, each line right, each module judged once", async () => {
  const lines = Array.from({ length: 100_000 }, () => `import "./sleepy.ts";`);
  await withFolder({
    "k/main.ts": `${lines.join("\n")}\nimport fs from "node:fs";\n`,
    "k/sleepy.ts": "export {};\n",
  }, (root) => {
    // Quadratic line counting or judging every repeat took minutes here; the refusal names the
    // right line, after all 100,000 lines before it.
    refused(
      () => new KindImports().check("k", "k/main.ts", root),
      /k\/main\.ts:100001 imports "node:fs"/,
    );
  });
  // A file of bare `import` words (no quote, no `from`) is scanned without a match.
  assert.deepEqual(scan("import ".repeat(300_000)), []);
  assert.deepEqual(
    scan(`a\n\nimport "./x.ts"\nimport("./y.ts")`).map((i) => [i.specifier, i.line]),
    [
      ["./x.ts", 3],
      ["./y.ts", 4],
    ],
  );
});

Deno.test("KLYM_MAX_KIND_BYTES and KLYM_MAX_KIND_MODULES hold at their edge", async () => {
  await withFolder({
    "k/main.ts": `import "./a.ts";\nimport "./b.ts";\n`,
    "k/a.ts": "export const a = 1;\n",
    "k/b.ts": "export const b = 2;\n",
  }, (root) => {
    const bytes = ["k/main.ts", "k/a.ts", "k/b.ts"]
      .map((f) => Deno.statSync(`${root}/${f}`).size)
      .reduce((a, b) => a + b);
    const check = (maxKindBytes: number, maxKindModules: number) =>
      new KindImports({ maxKindBytes, maxKindModules }).check("k", "k/main.ts", root);
    check(bytes, 3);
    refused(
      () => check(bytes - 1, 3),
      new RegExp(`more than ${bytes - 1} bytes \\(KLYM_MAX_KIND_BYTES\\)`),
    );
    refused(() => check(bytes, 2), /more than 2 modules \(KLYM_MAX_KIND_MODULES\)/);
  });
});
