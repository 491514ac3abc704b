/**
 * Who serves a state folder's socket: a foreground Klym that finds its journal taken asks, so it
 * can say where the running service's dashboard is instead of only "another Klym is using it".
 */
import { BridgeHello, helloLine, readHello, ServiceHello } from "./handshake.ts";
import type { ServicePaths } from "./service_paths.ts";
import { VERSION } from "../version.ts";

/** How long the probe waits for the service's hello. */
const PROBE_TIMEOUT_MS = 2000;

/** The service's hello, or `undefined` when nothing (or something else) answers at the socket. */
export async function probeService(paths: ServicePaths): Promise<ServiceHello | undefined> {
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: paths.socket });
  } catch {
    return undefined;
  }
  try {
    const { hello, rest } = await readHello(conn.readable, ServiceHello, PROBE_TIMEOUT_MS);
    const bye = { klym: "bridge", protocol: hello.protocol, version: VERSION, pid: Deno.pid };
    await conn.write(helloLine(BridgeHello.parse(bye)));
    // Cancelling the rest closes the connection: the service ends that session at once.
    await rest.cancel();
    return hello;
  } catch {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
    return undefined;
  }
}
