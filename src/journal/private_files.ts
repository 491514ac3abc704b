/**
 * The journal's files are the user's alone, whatever the umask: its folder is 0700 and its files
 * (the database, its `-wal`, `-shm` and `-journal`, the owner file) are 0600. What an older Klym
 * left looser is tightened at start, with a warning naming the path and the mode it had.
 *
 * Which folder is Klym's: the one it creates, the default state folder, and a folder that holds
 * nothing but this journal's files. A folder that also holds other things (`KLYM_STATE` naming a
 * file in a project folder, say) is the user's: Klym leaves its mode alone and says so; the files
 * are private all the same. A folder owned by another user is never changed.
 *
 * The owner file is never followed: it is created exclusively (`O_CREAT|O_EXCL` refuses any existing
 * path, a dangling link included), and a stale one (this process holds the journal's lock, so its
 * writer is gone) is unlinked first when it is a plain file. A link or anything else that is not a
 * plain file at that path stops Klym with an error naming it: Klym never writes through it.
 *
 * On Windows files have no such modes: only the owner file's exclusive create applies.
 */
import { basename, dirname } from "node:path";
import { getLogger } from "@logtape/logtape";
import { KlymError } from "../errors.ts";

const logger = getLogger(["klym", "journal"]);

const FOLDER_MODE = 0o700;
export const FILE_MODE = 0o600;
const MODES = Deno.build.os !== "windows";

/** The suffixes of the files SQLite keeps next to the journal. */
const SQLITE_SUFFIXES = ["", "-wal", "-shm", "-journal"] as const;
export const OWNER_SUFFIX = ".owner";

const octal = (mode: number) => `0${(mode & 0o777).toString(8).padStart(3, "0")}`;

function statOrUndefined(path: string, follow: boolean): Deno.FileInfo | undefined {
  try {
    return follow ? Deno.statSync(path) : Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/**
 * Whether a folder holds nothing but the files of the journal `file` (and of its service: the
 * socket and log named after it, see src/service/service_paths.ts).
 */
function holdsOnlyJournal(folder: string, file: string): boolean {
  const base = basename(file);
  const stem = base.replace(/\.db$/, "");
  const names = new Set([
    ...[...SQLITE_SUFFIXES, OWNER_SUFFIX].map((suffix) => base + suffix),
    ...[".sock", ".log", ".log.1"].map((suffix) => stem + suffix),
  ]);
  for (const entry of Deno.readDirSync(folder)) if (!names.has(entry.name)) return false;
  return true;
}

/**
 * Creates the journal's folder 0700 when missing, or tightens it to 0700 when it is Klym's and found
 * looser (`isDefault`: it is the default state folder, Klym's whatever it holds).
 */
export function privateFolder(file: string, isDefault: boolean): void {
  const folder = dirname(file);
  const found = statOrUndefined(folder, true);
  if (found === undefined) {
    Deno.mkdirSync(folder, { recursive: true, mode: FOLDER_MODE });
    if (MODES) Deno.chmodSync(folder, FOLDER_MODE);
    return;
  }
  if (!MODES || !found.isDirectory || found.mode === null || (found.mode & 0o077) === 0) return;
  const ours = found.uid === Deno.uid();
  if (ours && (isDefault || holdsOnlyJournal(folder, file))) {
    Deno.chmodSync(folder, FOLDER_MODE);
    logger.warn(
      "The journal's folder {path} was open to other users (mode {old}): made it {mode}",
      { path: folder, old: octal(found.mode), mode: octal(FOLDER_MODE) },
    );
    return;
  }
  logger.info(
    "The journal's folder {path} (mode {old}) holds other files{owner}, so Klym leaves its mode " +
      "alone; the journal's own files are {mode}. Point KLYM_STATE into a folder of its own to keep " +
      "even their names private",
    {
      path: folder,
      old: octal(found.mode),
      owner: ours ? "" : " or belongs to another user",
      mode: octal(FILE_MODE),
    },
  );
}

/**
 * Makes the journal's existing files 0600: `warn` says so for each found looser (at start, before
 * SQLite opens them); without it (after SQLite created its files) they are set quietly.
 */
export function privateFiles(file: string, warn: boolean): void {
  if (!MODES) return;
  for (const suffix of SQLITE_SUFFIXES) {
    const path = file + suffix;
    // The journal may be a link the user made: its target is the file SQLite writes.
    const found = statOrUndefined(path, true);
    if (!found?.isFile || found.mode === null || (found.mode & 0o777) === FILE_MODE) continue;
    try {
      Deno.chmodSync(path, FILE_MODE);
    } catch (error) {
      throw new KlymError(
        "STATE_UNSAFE",
        `its file "${path}" is mode ${octal(found.mode)} and cannot be made ${octal(FILE_MODE)} ` +
          `(${error instanceof Error ? error.message : String(error)})`,
      );
    }
    if (warn && (found.mode & 0o077) !== 0) {
      logger.warn(
        "The journal's file {path} was open to other users (mode {old}): made it {mode}",
        {
          path,
          old: octal(found.mode),
          mode: octal(FILE_MODE),
        },
      );
    }
  }
}

/** Creates the journal file 0600 when missing, so that SQLite's own files take its mode. */
export function createPrivateFile(file: string): void {
  try {
    Deno.openSync(file, { write: true, createNew: true, mode: FILE_MODE }).close();
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) return;
    throw error;
  }
  if (MODES) Deno.chmodSync(file, FILE_MODE);
}

function kindOf(info: Deno.FileInfo): string {
  if (info.isSymlink) return "a symbolic link";
  if (info.isDirectory) return "a folder";
  return "not a plain file";
}

/**
 * Writes the owner file `path` (0600) without following any link: a stale plain file is unlinked
 * first; anything else there is refused with `STATE_UNSAFE` naming it. Call while holding
 * the journal's lock (so any owner file found is stale).
 */
export function writeOwnerFile(path: string, text: string): void {
  const refuse = (info: Deno.FileInfo) =>
    new KlymError(
      "STATE_UNSAFE",
      `its owner file "${path}" is ${kindOf(info)}, which Klym never follows or writes through; ` +
        "remove it (Klym writes a fresh one)",
    );
  const found = statOrUndefined(path, false);
  if (found !== undefined) {
    if (!found.isFile) throw refuse(found);
    Deno.removeSync(path);
  }
  let handle: Deno.FsFile;
  try {
    handle = Deno.openSync(path, { write: true, createNew: true, mode: FILE_MODE });
  } catch (error) {
    const now = error instanceof Deno.errors.AlreadyExists
      ? statOrUndefined(path, false)
      : undefined;
    if (now !== undefined) throw refuse(now);
    throw error;
  }
  try {
    const bytes = new TextEncoder().encode(text);
    for (let at = 0; at < bytes.length;) at += handle.writeSync(bytes.subarray(at));
    const made = handle.statSync();
    // The umask may take bits away from the mode asked for; give them back to this very file.
    if (MODES && made.mode !== null && (made.mode & 0o777) !== FILE_MODE) {
      const there = statOrUndefined(path, false);
      if (there?.ino === made.ino && there.isFile) Deno.chmodSync(path, FILE_MODE);
    }
  } finally {
    handle.close();
  }
}

/** The owner file's text when it is a small plain file (never through a link), else `undefined`. */
export function readOwnerFile(path: string): string | undefined {
  const found = statOrUndefined(path, false);
  if (!found?.isFile || found.size > 4096) return undefined;
  return Deno.readTextFileSync(path);
}
