import assert from "node:assert/strict";
import { KindCatalog } from "../../src/tasks/kind_catalog.ts";
import { DEFAULT_KIND_LIMITS } from "../../src/tasks/kind_imports.ts";
import { identityOf, type KindFile, SETTLE_MS, withKindFile } from "../../src/tasks/kind_files.ts";

async function tasksFolder(files: Record<string, string>): Promise<string> {
  const root = await Deno.realPath(await Deno.makeTempDir());
  for (const [name, text] of Object.entries(files)) {
    await Deno.mkdir(`${root}/${name}`.replace(/\/[^/]+$/, ""), { recursive: true });
    await Deno.writeTextFile(`${root}/${name}`, text);
  }
  return root;
}

Deno.test("a kind's snapshot holds its module graph, in a folder only Klym may enter, one per content", async () => {
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
    const again = kinds.snapshot("k");
    assert.ok("modulePath" in again && again.modulePath === first.modulePath, "same content");
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

/** The clock a minute ahead: every file written by the test counts as settled (see SETTLE_MS). */
const later = () => Date.now() + 60_000;

function launched(kinds: KindCatalog, kind: string) {
  const snapshot = kinds.snapshot(kind);
  if ("code" in snapshot) throw new Error(`${snapshot.code}: ${snapshot.message}`);
  return snapshot;
}

Deno.test("an unchanged kind's next launch reuses its snapshot unread; a new content, link or rename is read", async (t) => {
  const root = await tasksFolder({
    "k/main.ts":
      `import d from "./d.json" with { type: "json" };\nimport "./h.ts";\nexport default () => d;\n`,
    "k/d.json": `{"v": 1}`,
    "k/h.ts": `export const h = 1;\n`,
    "spare/h.ts": `export const h = 1;\n`,
  });
  const outside = await tasksFolder({ "h.ts": `export const h = 1;\n` });
  const kinds = new KindCatalog(root, { ...DEFAULT_KIND_LIMITS, now: later });
  const read = (path: string) => Deno.readTextFileSync(path.replace(/main\.ts$/, "d.json"));
  try {
    const first = launched(kinds, "k");
    assert.equal(first.reused, false);
    const second = launched(kinds, "k");
    assert.equal(second.reused, true, "nothing changed: no file is read again");
    assert.equal(second.modulePath, first.modulePath);

    await t.step("a new content", async () => {
      await Deno.writeTextFile(`${root}/k/d.json`, `{"v": 22}`);
      const changed = launched(kinds, "k");
      assert.equal(changed.reused, false);
      assert.notEqual(changed.modulePath, first.modulePath);
      assert.equal(read(changed.modulePath), `{"v": 22}`);
      assert.equal(launched(kinds, "k").reused, true);
    });

    await t.step("a file swapped for a link to the same bytes, inside", async () => {
      const before = launched(kinds, "k");
      await Deno.remove(`${root}/k/h.ts`);
      await Deno.symlink(`${root}/spare/h.ts`, `${root}/k/h.ts`);
      const linked = launched(kinds, "k");
      assert.equal(linked.reused, false, "another file is another identity, whatever it holds");
      assert.equal(linked.modulePath, before.modulePath, "the same bytes: the same snapshot");
    });

    await t.step("a file swapped for a link leading outside", async () => {
      await Deno.remove(`${root}/k/h.ts`);
      await Deno.symlink(`${outside}/h.ts`, `${root}/k/h.ts`);
      const failed = kinds.snapshot("k");
      assert.ok("code" in failed, "a reusable snapshot does not skip the check");
      assert.equal(failed.code, "KIND_OUTSIDE_TASKS_DIR");
      assert.match(failed.message, /k\/h\.ts leads outside the tasks folder/);
      await Deno.remove(`${root}/k/h.ts`);
      await Deno.writeTextFile(`${root}/k/h.ts`, `export const h = 1;\n`);
    });

    await t.step("a file renamed into another's place, of the same size", async () => {
      assert.equal(launched(kinds, "k").reused, false, "h.ts was written again");
      assert.equal(launched(kinds, "k").reused, true);
      await Deno.writeTextFile(`${root}/spare/d.json`, `{"v": 33}`);
      await Deno.rename(`${root}/spare/d.json`, `${root}/k/d.json`);
      const renamed = launched(kinds, "k");
      assert.equal(renamed.reused, false);
      assert.equal(read(renamed.modulePath), `{"v": 33}`);
    });
  } finally {
    kinds.close();
    await Deno.remove(root, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});

Deno.test("a snapshot is removed once it is not its kind's latest and every launch of it has ended", async () => {
  const root = await tasksFolder({ "k.ts": `export default () => 1;\n` });
  const kinds = new KindCatalog(root, { ...DEFAULT_KIND_LIMITS, now: later });
  const dirOf = (path: string) => path.replace(/\/k\.ts$/, "");
  try {
    const a = launched(kinds, "k");
    const b = launched(kinds, "k");
    await Deno.writeTextFile(`${root}/k.ts`, `export default () => 22;\n`);
    const c = launched(kinds, "k");
    assert.ok(Deno.statSync(dirOf(a.modulePath)).isDirectory, "still held by two launches");
    a.release();
    a.release(); // a second release counts once
    assert.ok(Deno.statSync(dirOf(a.modulePath)).isDirectory, "still held by one launch");
    b.release();
    assert.throws(() => Deno.statSync(dirOf(a.modulePath)), Deno.errors.NotFound);
    c.release();
    assert.ok(Deno.statSync(dirOf(c.modulePath)).isDirectory, "the latest stays for the next");
    assert.equal(launched(kinds, "k").reused, true);
  } finally {
    kinds.close();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a file changed less than SETTLE_MS ago is read at each launch, even at its size and mtime", async () => {
  const root = await tasksFolder({ "k/main.ts": `export { default } from "./d.ts";\n` });
  const write = (v: number) => Deno.writeTextFileSync(`${root}/k/d.ts`, `export default ${v};\n`);
  write(1);
  const mtime = Deno.statSync(`${root}/k/d.ts`).mtime!;
  const kinds = new KindCatalog(root);
  try {
    const first = launched(kinds, "k");
    // The same size, the mtime put back: within one second, only the ctime's rule can tell.
    write(2);
    Deno.utimeSync(`${root}/k/d.ts`, mtime, mtime);
    const second = launched(kinds, "k");
    assert.equal(second.reused, false);
    assert.notEqual(second.modulePath, first.modulePath);
    assert.equal(
      Deno.readTextFileSync(second.modulePath.replace(/main\.ts$/, "d.ts")),
      "export default 2;\n",
    );
  } finally {
    kinds.close();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a file's identity is trusted from SETTLE_MS after its last change, not a millisecond sooner", () => {
  const changed = 1_800_000_000_000;
  const file = (ctime: Date | null, ino: number | null = 7): KindFile => ({
    real: "/tasks/k.ts",
    info: { isFile: true, size: 10, dev: 1, ino, mtime: new Date(changed), ctime },
    read: () => new Uint8Array(),
  });
  assert.equal(identityOf(file(new Date(changed)), changed + SETTLE_MS - 1), undefined);
  const settled = identityOf(file(new Date(changed)), changed + SETTLE_MS);
  assert.ok(settled !== undefined);
  assert.notEqual(identityOf(file(new Date(changed - 1000)), changed + SETTLE_MS), settled);
  assert.equal(identityOf(file(null), changed + 60_000), undefined, "no ctime: never trusted");
  assert.equal(identityOf(file(new Date(changed), null), changed + 60_000), undefined);
});
