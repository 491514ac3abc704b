/**
 * What a task's process reports names no path of the server's machine. A kind is loaded from a
 * snapshot (`<snapshots>/<hash>/<file>`, see `kind_catalog.ts`), and its files are named as in the
 * tasks folder (`boom.ts:3:9`); Klym's own files are named `[klym]/…`. In a failure's stack, only
 * the task's own frames are kept: Klym's (its `src/` and the Worker's entry) and the runtime's are
 * dropped.
 */
import { fileURLToPath, pathToFileURL } from "node:url";

const SRC_DIR = new URL("../", import.meta.url);
/** A stack frame that is not the task's own: Klym's code, its Worker's entry, or the runtime's. */
const FOREIGN_FRAME = /^\s*at .*(?:\bblob:|\bext:)/;

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

export class ClientPaths {
  readonly #snapshot: RegExp | undefined;
  readonly #src: RegExp;
  readonly #needles: string[];

  /** `snapshots` is the folder of kind snapshots the task processes load kinds from. */
  constructor(snapshots: string | undefined) {
    const src = [SRC_DIR.href, fileURLToPath(SRC_DIR)];
    this.#src = new RegExp(src.map(escape).join("|"), "g");
    this.#needles = [...src];
    if (snapshots !== undefined) {
      const forms = [pathToFileURL(snapshots).href, snapshots].map(escape).join("|");
      this.#snapshot = new RegExp(`(?:${forms})/[0-9a-f]{64}/`, "g");
      this.#needles.push(snapshots);
    }
  }

  /** Any text from the task's process (a log line): its paths relative, nothing dropped. */
  text(text: string): string {
    if (!this.#needles.some((needle) => text.includes(needle))) return text;
    const relative = this.#snapshot ? text.replace(this.#snapshot, "") : text;
    return relative.replace(this.#src, "[klym]/");
  }

  /** A failure's message: the task's own frames, its paths relative; Klym's frames dropped. */
  failure(message: string): string {
    const lines = message.split("\n");
    const kept = lines.filter((line) => !(FOREIGN_FRAME.test(line) || this.#klymFrame(line)));
    return this.text(kept.join("\n"));
  }

  #klymFrame(line: string): boolean {
    this.#src.lastIndex = 0;
    return /^\s*at /.test(line) && this.#src.test(line);
  }
}
