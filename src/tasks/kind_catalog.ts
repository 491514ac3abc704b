/** Which task kinds exist: the built-in ones and one `<kind>.ts` module per custom kind. */
import { join, resolve } from "node:path";
import { TaskError } from "../errors.ts";
import { BUILTIN_KIND_NAMES } from "../protocol.ts";

const KIND_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

export class KindCatalog {
  readonly tasksDir: string | undefined;

  constructor(tasksDir: string | undefined) {
    this.tasksDir = tasksDir === undefined ? undefined : resolve(tasksDir);
  }

  /** The module path of a custom kind, `undefined` for a built-in one; throws for an unknown kind. */
  resolve(kind: string): string | undefined {
    if (!KIND_NAME.test(kind)) {
      throw new TaskError(
        "UNKNOWN_KIND",
        `Cannot start task: "kind" must be a name of letters, digits, "_" or "-" starting with a letter (at most 64), received ${
          JSON.stringify(kind.slice(0, 80))
        }`,
      );
    }
    if (BUILTIN_KIND_NAMES.includes(kind)) return undefined;
    if (this.tasksDir) {
      const path = join(this.tasksDir, `${kind}.ts`);
      try {
        if (Deno.statSync(path).isFile) return path;
      } catch {
        // Not there: reported below with the list of known kinds.
      }
    }
    throw new TaskError(
      "UNKNOWN_KIND",
      `Cannot start task: unknown "kind" ${JSON.stringify(kind)}; known kinds: ${
        this.list().join(", ") || "none"
      }${this.tasksDir ? "" : " (set KLYM_TASKS_DIR to add custom kinds)"}`,
    );
  }

  list(): string[] {
    const custom: string[] = [];
    if (this.tasksDir) {
      try {
        for (const entry of Deno.readDirSync(this.tasksDir)) {
          const name = entry.name.replace(/\.ts$/, "");
          if (entry.isFile && entry.name.endsWith(".ts") && KIND_NAME.test(name)) custom.push(name);
        }
      } catch {
        // A missing folder means no custom kinds; startup already warned about it.
      }
    }
    return [...BUILTIN_KIND_NAMES, ...custom.sort()];
  }
}
