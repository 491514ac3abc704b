/** Klym's own source, as the rules tests read it: every file of src/ and main.ts, by path from the root. */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** The text of every `.ts`/`.js`/`.mjs` file of src/, and of main.ts, keyed by path from the root. */
export async function sourceFiles(): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(join(ROOT, dir))) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (/\.(ts|js|mjs)$/.test(entry.name)) {
        files.set(path, await Deno.readTextFile(join(ROOT, path)));
      }
    }
  };
  await walk("src");
  files.set("main.ts", await Deno.readTextFile(join(ROOT, "main.ts")));
  return files;
}
