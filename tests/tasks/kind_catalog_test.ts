import assert from "node:assert/strict";
import { KindCatalog } from "../../src/tasks/kind_catalog.ts";
import { withKindFile } from "../../src/tasks/kind_files.ts";

async function tasksFolder(files: Record<string, string>): Promise<string> {
  const root = await Deno.realPath(await Deno.makeTempDir());
  for (const [name, text] of Object.entries(files)) {
    await Deno.mkdir(`${root}/${name}`.replace(/\/[^/]+$/, ""), { recursive: true });
    await Deno.writeTextFile(`${root}/${name}`, text);
  }
  return root;
}

Deno.test("a kind's snapshot holds its module graph, in a folder only Klym may enter, reused while unchanged", async () => {
  const root = await tasksFolder({
    "k/main.ts": `import d from "./d.json" with { type: "json" };\nexport default () => d;\n`,
    "k/d.json": `{"v": 1}`,
    "k/unused.ts": `export {};\n`,
  });
  const kinds = new KindCatalog(root);
  try {
    assert.equal(kinds.resolve("k"), "k/main.ts");
    const first = kinds.snapshot("k");
    assert.ok("modulePath" in first, JSON.stringify(first));
    const snapshots = kinds.snapshotDir()!;
    assert.equal((await Deno.stat(snapshots)).mode! & 0o777, 0o700);
    assert.match(first.modulePath, new RegExp(`^${snapshots}/[0-9a-f]{64}/k/main\\.ts$`));
    const dir = first.modulePath.replace(/\/k\/main\.ts$/, "");
    const copied = [...Deno.readDirSync(`${dir}/k`)].map((e) => e.name).sort();
    assert.deepEqual(copied, ["d.json", "main.ts"], "only the graph is copied");
    assert.deepEqual(kinds.snapshot("k"), first, "unchanged files reuse the snapshot");
    await Deno.writeTextFile(`${root}/k/d.json`, `{"v": 2}`);
    const second = kinds.snapshot("k");
    assert.ok("modulePath" in second && second.modulePath !== first.modulePath);
    assert.equal(
      await Deno.readTextFile(`${dir}/k/d.json`),
      `{"v": 1}`,
      "a snapshot never changes",
    );
    kinds.close();
    await assert.rejects(() => Deno.stat(snapshots), Deno.errors.NotFound);
  } finally {
    kinds.close();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a kind whose file became a link leading outside fails at launch, named relative", async () => {
  const root = await tasksFolder({ "k.ts": `export default () => 1;\n` });
  const outside = await tasksFolder({ "evil.ts": `export default () => "evil";\n` });
  const kinds = new KindCatalog(root);
  try {
    kinds.resolve("k");
    await Deno.remove(`${root}/k.ts`);
    await Deno.symlink(`${outside}/evil.ts`, `${root}/k.ts`);
    const failed = kinds.snapshot("k");
    assert.ok("code" in failed);
    assert.equal(failed.code, "KIND_OUTSIDE_TASKS_DIR");
    assert.match(failed.message, /kind "k": k\.ts leads outside the tasks folder/);
    assert.ok(!failed.message.includes(root) && !failed.message.includes(outside));
    await Deno.remove(`${root}/k.ts`);
    const gone = kinds.snapshot("k");
    assert.ok("code" in gone && gone.code === "UNKNOWN_KIND", JSON.stringify(gone));
  } finally {
    kinds.close();
    await Deno.remove(root, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test({
  name: "a FIFO in a kind's place is refused at once, never waited on for a writer",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    const root = await tasksFolder({
      "k/main.ts": `import d from "./d.json" with { type: "json" };\nexport default () => d;\n`,
      "k/d.json": `{"v": 1}`,
    });
    const kinds = new KindCatalog(root);
    try {
      assert.equal(kinds.resolve("k"), "k/main.ts");
      // Swapped for a FIFO while the task waits. The file is opened without blocking, so this
      // returns; a blocking open would hold the whole server waiting for a writer that never
      // comes (this test would then never end).
      await Deno.remove(`${root}/k/d.json`);
      await new Deno.Command("mkfifo", { args: [`${root}/k/d.json`] }).output();
      assert.ok((await Deno.lstat(`${root}/k/d.json`)).isFifo);
      assert.equal(withKindFile("k", root, "k/d.json", () => true), undefined);
      const failed = kinds.snapshot("k");
      assert.ok("code" in failed, JSON.stringify(failed));
      assert.equal(failed.code, "KIND_IMPORT_REFUSED");
      assert.match(
        failed.message,
        /kind "k": k\/main\.ts:1 imports "\.\/d\.json", which does not exist/,
      );
      assert.ok(!failed.message.includes(root));
    } finally {
      kinds.close();
      await Deno.remove(root, { recursive: true });
    }
  },
});
