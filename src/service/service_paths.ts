/**
 * Where a state folder's service is found: the Unix domain socket bridges connect to and the log
 * file a service started in the background writes, both next to the journal and named after it
 * (`klym.db` → `klym.sock`, `klym.log`). Only a private folder is used: a directory of this user's
 * with no permission for anyone else (0700), so no other local user can reach the socket.
 */
import { basename, dirname, join } from "node:path";
import { defaultStatePath } from "../journal/open_journal.ts";

/** The longest socket path every Unix takes (`sun_path` holds 104 bytes on macOS, NUL included). */
export const SOCKET_PATH_MAX_BYTES = 103;

export interface ServicePaths {
  /** The journal file the service owns. */
  readonly journal: string;
  readonly folder: string;
  readonly socket: string;
  readonly log: string;
}

/**
 * The service's paths for `state` (`KLYM_STATE`), or `undefined` when there is nothing to share:
 * `memory` keeps the journal in one process, and Windows has no socket of this kind here.
 */
export function servicePaths(
  state: string | undefined,
  env: Record<string, string | undefined> = Deno.env.toObject(),
  os: typeof Deno.build.os = Deno.build.os,
): ServicePaths | undefined {
  if (state === "memory" || os === "windows") return undefined;
  const journal = state ?? defaultStatePath(env, os);
  const folder = dirname(journal);
  const stem = basename(journal).replace(/\.db$/, "");
  return {
    journal,
    folder,
    socket: join(folder, `${stem}.sock`),
    log: join(folder, `${stem}.log`),
  };
}

/**
 * Why `paths` cannot carry a service (`undefined` when they can): a socket path too long for the
 * operating system, or a folder that is not this user's alone (any mode bit for group or others).
 * A folder that does not exist yet is fine: Klym creates it 0700.
 */
export function serviceProblem(paths: ServicePaths): string | undefined {
  const bytes = new TextEncoder().encode(paths.socket).length;
  if (bytes > SOCKET_PATH_MAX_BYTES) {
    return `the socket path "${paths.socket}" is ${bytes} bytes, more than the ${SOCKET_PATH_MAX_BYTES} ` +
      "a Unix socket takes; point KLYM_STATE at a shorter path";
  }
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(paths.folder);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    return `the state folder "${paths.folder}" cannot be read (${(error as Error).message})`;
  }
  if (!info.isDirectory) return `the state folder "${paths.folder}" is not a folder`;
  if (info.uid !== null && info.uid !== Deno.uid()) {
    return `the state folder "${paths.folder}" belongs to another user (uid ${info.uid}); ` +
      "point KLYM_STATE into a folder of your own";
  }
  if (info.mode !== null && (info.mode & 0o077) !== 0) {
    const mode = `0${(info.mode & 0o777).toString(8)}`;
    return `the state folder "${paths.folder}" is open to other users (mode ${mode}); ` +
      `make it 0700 (chmod 700 "${paths.folder}") or point KLYM_STATE into a folder of its own`;
  }
  return undefined;
}
