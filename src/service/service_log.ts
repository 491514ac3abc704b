/**
 * The log of a service started in the background (it has no stderr): a file next to the journal,
 * `0600`, appended to; one that has grown past `SERVICE_LOG_MAX_BYTES` is moved to `<log>.1` (the
 * previous `.1` goes) when a service starts, so the two together stay bounded.
 */
import { FILE_MODE } from "../journal/private_files.ts";

export const SERVICE_LOG_MAX_BYTES = 8 * 1024 ** 2;

/** Opens `path` for appending, rotating it first when it is too large. */
export function openServiceLog(path: string, maxBytes = SERVICE_LOG_MAX_BYTES): Deno.FsFile {
  try {
    const info = Deno.lstatSync(path);
    if (!info.isFile) {
      throw new Error(`"${path}" is in the way of the service log and is not a file; move it away`);
    }
    if (info.size > maxBytes) Deno.renameSync(path, `${path}.1`);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const file = Deno.openSync(path, { append: true, create: true, mode: FILE_MODE });
  if (Deno.build.os !== "windows") Deno.chmodSync(path, FILE_MODE);
  return file;
}
