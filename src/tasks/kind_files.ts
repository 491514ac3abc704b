/**
 * Reading one file of a custom kind from the tasks folder so that what is read is what was checked.
 * The file's real path must be inside the folder; the file is then opened, and the opened file must
 * be the one found at that real path by walking down from the folder without following a link (the
 * same device and inode). A link swapped in between the check and the open, in the file's place or
 * in a folder's on its way, is caught and refused as `KIND_OUTSIDE_TASKS_DIR`. Every message names
 * the file relative to the tasks folder, never by its absolute path on the server's machine.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { isAbsolute, join, relative, sep } from "node:path";
import { KlymError } from "../errors.ts";
import { concatBytes } from "../text.ts";

/** Bytes of one kind's files (its modules and the data they import), read at most. */
/** Bytes of a kind and every file it imports, all together (`KLYM_MAX_KIND_BYTES`). */
export const MAX_KIND_BYTES = 64 * 1024 * 1024;

/** Whether `path` is strictly inside `folder` (both absolute, normalized). */
export function inside(path: string, folder: string): boolean {
  const rel = relative(folder, path);
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel);
}

/** A relative path as shown to clients: `/` separated whatever the platform. */
export function shown(rel: string): string {
  return rel.split(sep).join("/");
}

export function outsideError(kind: string, rel: string): KlymError {
  return new KlymError(
    "KIND_OUTSIDE_TASKS_DIR",
    `Cannot start task: kind "${kind}": ${
      shown(rel)
    } leads outside the tasks folder (KLYM_TASKS_DIR) through a link; copy what it points at into the folder instead of linking it`,
  );
}

/** What is known of an opened file. */
export interface KindFileInfo {
  readonly isFile: boolean;
  readonly size: number;
  readonly dev: number;
  readonly ino: number | null;
  readonly mtime: Date | null;
  readonly ctime: Date | null;
}

export interface KindFile {
  /** The file's real path, inside the tasks folder. */
  readonly real: string;
  readonly info: KindFileInfo;
  /** Its bytes, read from the file that was checked. */
  /** Its bytes, read up to just past `max` (a longer result means the file is larger). */
  read(max: number): Uint8Array;
}

/**
 * Opens `rel` (relative to `root`, the tasks folder's real path) and hands it to `use`;
 * `undefined` if there is no such file. Throws a `KlymError` when it leads outside the folder.
 */
export function withKindFile<T>(
  kind: string,
  root: string,
  rel: string,
  use: (file: KindFile) => T,
): T | undefined {
  const path = join(root, rel);
  if (!inside(path, root)) throw outsideError(kind, rel);
  let real: string;
  try {
    real = Deno.realPathSync(path);
  } catch {
    return undefined;
  }
  if (!inside(real, root)) throw outsideError(kind, rel);
  let fd: number;
  try {
    // Without blocking: a FIFO swapped in at this path must not hold the server waiting for a
    // writer (it is refused below, as anything that is not a plain file).
    fd = openSync(real, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch {
    return undefined;
  }
  try {
    const stats = fstatSync(fd);
    const info: KindFileInfo = {
      isFile: stats.isFile(),
      size: stats.size,
      dev: stats.dev,
      ino: stats.ino,
      mtime: stats.mtime,
      ctime: stats.ctime,
    };
    if (!reachedWithoutLinks(root, real, info)) throw outsideError(kind, rel);
    if (!info.isFile) return undefined;
    return use({ real, info, read: (max) => readAll(fd, info.size, max) });
  } finally {
    closeSync(fd);
  }
}

/**
 * How long after its last change a file's identity is trusted to stand for its bytes (2 s). Any
 * write sets the file's ctime to the clock's time, and nobody but root sets a ctime back (`utimes`
 * sets the mtime, and the ctime to now); a file renamed or linked into the path is another inode.
 * But Deno reports the ctime in whole seconds (the mtime in milliseconds), so a rewrite of the same
 * size within the second of the last change is told apart by nothing that an attacker who can
 * write in the tasks folder does not control (the mtime, through `utimes`). Git's rule for "racily
 * clean" files closes that window: an identity is trusted only once the file's ctime is this long
 * before the check that read it began, so a write after that check stamps a ctime in a later
 * second, and the identity changes. A file changed less than 2 s ago is read at every launch.
 */
export const SETTLE_MS = 2000;

/**
 * What tells an opened file's bytes apart without reading them: its real path, device, inode, size,
 * mtime and ctime, as a key; `undefined` while the file changed too recently to be sure of it
 * (`SETTLE_MS` before `since`, when the check that opened it began), or where the system reports
 * no inode or ctime. Even a key that lied would cost only freshness, never what runs being what
 * was checked: the bytes it stands for were read and checked by Klym and copied where only Klym
 * writes, and each launch still opens every file of the kind, so a link swapped in is caught.
 */
export function identityOf(file: KindFile, since: number): string | undefined {
  const { dev, ino, size, mtime, ctime } = file.info;
  if (ino === null || mtime === null || ctime === null) return undefined;
  if (ctime.getTime() > since - SETTLE_MS) return undefined;
  return JSON.stringify([file.real, dev, ino, size, mtime.getTime(), ctime.getTime()]);
}

/** Whether each folder from `root` down to `real` is a folder, and `real` the opened file itself. */
function reachedWithoutLinks(root: string, real: string, opened: KindFileInfo): boolean {
  const parts = relative(root, real).split(sep);
  let at = root;
  for (const [i, part] of parts.entries()) {
    at = join(at, part);
    let info: Deno.FileInfo;
    try {
      info = Deno.lstatSync(at);
    } catch {
      return false;
    }
    if (i < parts.length - 1) {
      if (!info.isDirectory) return false;
    } else if (info.isSymlink || info.dev !== opened.dev || info.ino !== opened.ino) return false;
  }
  try {
    return Deno.realPathSync(real) === real;
  } catch {
    return false;
  }
}

/** The file's bytes; past `max` reading stops (the result is then longer than that). */
function readAll(fd: number, size: number, max: number): Uint8Array {
  const chunks: Uint8Array[] = [];
  let total = 0;
  const buffer = new Uint8Array(Math.min(size, 1 << 20) + 1);
  while (total <= max) {
    const n = readSync(fd, buffer);
    if (n === 0) break;
    chunks.push(buffer.slice(0, n));
    total += n;
  }
  return concatBytes(chunks);
}
