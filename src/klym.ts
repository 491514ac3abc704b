/**
 * Wires the parts together: task registry, process pool, and the MCP face over HTTP (with the
 * dashboard at `/ui`) or stdio.
 */
import { getLogger } from "@logtape/logtape";
import { serveStdio, StdioServerTransport } from "@modelcontextprotocol/server/stdio";
import type { Transport } from "@modelcontextprotocol/server";
import { type Config, grynyaSettings } from "./config.ts";
import { KindCatalog } from "./tasks/kind_catalog.ts";
import { ProcessPool } from "./tasks/process_pool.ts";
import { processOptions } from "./tasks/task_process.ts";
import { TaskRegistry } from "./tasks/task_registry.ts";
import { openJournal } from "./journal/open_journal.ts";
import { createMcpServer, type McpServices } from "./mcp/mcp_server.ts";
import { McpTaskCore } from "./mcp/task_core.ts";
import { HttpApp } from "./http/http_app.ts";
import { LOCAL_PRINCIPAL, Principals } from "./principals.ts";
import { AuthThrottle } from "./http/auth_throttle.ts";
import { ModelCatalog } from "./llm/model_catalog.ts";
import { LlmService } from "./llm/llm_service.ts";
import { UiApp } from "./ui/ui_app.ts";
import { ServerStatsSource } from "./ui/server_stats.ts";
import { VERSION } from "./version.ts";

const logger = getLogger(["klym"]);

export interface Klym {
  readonly registry: TaskRegistry;
  /** The HTTP address, when serving HTTP. */
  readonly url: string | undefined;
  /** Resolves when the stdio client disconnects (never, for HTTP). */
  readonly done: Promise<void>;
  close(): Promise<void>;
}

/** Starts serving; throws a `JournalError` (nothing started) when the journal cannot be used. */
export async function startKlym(config: Config): Promise<Klym> {
  const journal = openJournal(config.state);
  const kinds = new KindCatalog(config.tasksDir);
  if (config.tasksDir) {
    try {
      Deno.statSync(config.tasksDir);
    } catch {
      logger.warn("KLYM_TASKS_DIR {dir} does not exist; no custom kinds", { dir: config.tasksDir });
    }
  }
  const pool = new ProcessPool(processOptions(config, kinds.snapshotDir()), config.warmSpares);
  const llm = new LlmService(new ModelCatalog(config, (name) => Deno.env.get(name)), config);
  let registry: TaskRegistry;
  try {
    registry = new TaskRegistry(
      config,
      grynyaSettings(config),
      llm,
      kinds,
      pool,
      Date.now,
      journal,
    );
  } catch (error) {
    journal.close();
    throw error;
  }
  logger.info("Tasks are journaled in {store}", { store: journal.where });
  pool.warm();
  // One MCP task core for every session of both eras, living as long as the registry.
  const core = new McpTaskCore(registry, { retentionMs: config.retentionS * 1000 });
  const mcp: McpServices = { registry, core, config };

  if (config.stdio) {
    // The SDK's stdio entry picks the era from the client's first message: a 2025 `initialize`
    // pins a session server, a 2026-07-28 request (`server/discover`, …) a modern one.
    const transport = new StdioServerTransport();
    const { promise: done, resolve } = Promise.withResolvers<void>();
    const stdio = serveStdio(
      (ctx) => createMcpServer(mcp, { owner: LOCAL_PRINCIPAL, era: ctx.era }),
      {
        transport: closingWith(transport, resolve),
        onerror: (error) => logger.debug("stdio: {error}", { error }),
      },
    );
    logger.info("Serving one client over stdio");
    return {
      registry,
      url: undefined,
      done,
      async close() {
        await registry.shutdown();
        await stdio.close();
      },
    };
  }

  const model = llm.catalog.defaultId ?? "the client's own model (MCP sampling; no KLYM_MODEL)";
  // A dashboard login is the principal of its token (KLYM_AUTH_TOKEN or one of KLYM_AUTH_TOKENS)
  // and shows that principal's tasks; an admin's (KLYM_ADMINS) shows every task.
  const principals = new Principals(config);
  // One throttle for failed bearer checks and failed logins: both guess the same tokens.
  const throttle = new AuthThrottle(config);
  const ui = new UiApp({
    registry,
    principals,
    stats: new ServerStatsSource(registry, config.grynyaUrl, model, VERSION),
    throttle,
    limits: config,
  });
  const app: HttpApp = new HttpApp({
    config,
    createServer: (owner, era) => createMcpServer(mcp, { owner, era }),
    health: (): Record<string, unknown> => ({
      tasks: registry.counts(),
      sessions: app.sessionCount,
      journal: journal.health(),
    }),
    ui: ui.fetch,
    throttle,
  });
  const { promise: listening, resolve: onListen } = Promise.withResolvers<Deno.NetAddr>();
  const http = Deno.serve({
    hostname: config.host,
    port: config.port,
    onListen: (addr) => onListen(addr as Deno.NetAddr),
  }, app.fetch);
  const addr = await listening;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const url = `http://${host}:${addr.port}`;
  logger.info(
    "Serving MCP at {mcp} and the dashboard at {ui}",
    {
      url,
      mcp: `${url}/mcp`,
      ui: `${url}/ui`,
      version: VERSION,
      banner: [
        ["Klym", VERSION],
        ["MCP", `${url}/mcp`],
        ["SSE", `${url}/sse`],
        ["Dashboard", `${url}/ui`],
        ["grynya", config.grynyaUrl],
        ["model", model],
        ["tasks", config.tasksDir ?? "built-in kinds only (no KLYM_TASKS_DIR)"],
      ],
    },
  );
  return {
    registry,
    url,
    done: new Promise(() => {}),
    async close() {
      ui.close();
      await registry.shutdown();
      await app.close();
      await http.shutdown();
    },
  };
}

/** `transport`, calling `onEnd` once it has closed (the client went away), whoever set `onclose`. */
function closingWith(transport: Transport, onEnd: () => void): Transport {
  const close = transport.close.bind(transport);
  let ended = false;
  const end = () => {
    if (!ended) (ended = true, onEnd());
  };
  let onclose: (() => void) | undefined;
  Object.defineProperty(transport, "onclose", {
    get: () => () => (onclose?.(), end()),
    set: (handler: (() => void) | undefined) => (onclose = handler),
    configurable: true,
  });
  transport.close = async () => {
    await close();
    end();
  };
  return transport;
}
