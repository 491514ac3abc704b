/** Where the journal lives (`KLYM_STATE`, else the platform's state folder) and opening it. */
import { join } from "node:path";
import type { Journal } from "./journal.ts";
import { MemoryJournal } from "./memory_journal.ts";
import { SqliteJournal } from "./sqlite_journal.ts";

const STATE_FILE_NAME = "klym.db";

/**
 * The default state file: `$XDG_STATE_HOME/klym/` else `~/.local/state/klym/` on Linux and other
 * Unixes, `~/Library/Application Support/klym/` on macOS, `%LOCALAPPDATA%\klym\` on Windows.
 */
export function defaultStatePath(
  env: Record<string, string | undefined>,
  os: typeof Deno.build.os = Deno.build.os,
): string {
  if (os === "windows") {
    const base = env.LOCALAPPDATA ?? join(env.USERPROFILE ?? ".", "AppData", "Local");
    return join(base, "klym", STATE_FILE_NAME);
  }
  const home = env.HOME ?? ".";
  if (os === "darwin") return join(home, "Library", "Application Support", "klym", STATE_FILE_NAME);
  return join(env.XDG_STATE_HOME || join(home, ".local", "state"), "klym", STATE_FILE_NAME);
}

/** `memory`, the file `state` names, or the default file; throws `JOURNAL_*` saying why not. */
export function openJournal(
  state: string | undefined,
  env: Record<string, string | undefined> = Deno.env.toObject(),
): Journal {
  if (state === "memory") return new MemoryJournal();
  if (state !== undefined) return new SqliteJournal(state);
  return new SqliteJournal(defaultStatePath(env), { defaultFolder: true });
}
