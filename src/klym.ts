/**
 * Wires the parts together: task registry, process pool, and the MCP face over HTTP (with the
 * dashboard at `/ui`) and the service socket for bridges, or over stdio for one private client.
 */
import { getLogger } from "@logtape/logtape";
import { serveStdio, StdioServerTransport } from "@modelcontextprotocol/server/stdio";
import { type Config, grynyaSettings } from "./config.ts";
import { KindCatalog } from "./tasks/kind_catalog.ts";
import { ProcessPool } from "./tasks/process_pool.ts";
import { processOptions } from "./tasks/task_process.ts";
import { TaskRegistry } from "./tasks/task_registry.ts";
import { openJournal } from "./journal/open_journal.ts";
import type { Journal, JournalHealth } from "./journal/journal.ts";
import { isKlymError, KlymError } from "./errors.ts";
import { MemoryJournal } from "./journal/memory_journal.ts";
import { isSharedState, PgJournal } from "./journal/pg_journal.ts";
import { createMcpServer, type McpServices } from "./mcp/mcp_server.ts";
import { McpTaskCore } from "./mcp/task_core.ts";
import { HttpApp } from "./http/http_app.ts";
import { LOCAL_PRINCIPAL, Principals, scopeOf } from "./principals.ts";
import { AuthThrottle } from "./http/auth_throttle.ts";
import { ModelCatalog } from "./llm/model_catalog.ts";
import { LlmService } from "./llm/llm_service.ts";
import { UiApp } from "./ui/ui_app.ts";
import { NodePanel } from "./ui/node_panel.ts";
import { ServerStatsSource } from "./ui/server_stats.ts";
import { VERSION } from "./version.ts";
import { closingWith } from "./service/closing_transport.ts";
import { refusingMalformedRetries } from "./http/retry_fields.ts";
import { ServiceListener, type ServiceListenerOptions } from "./service/service_listener.ts";
import { servicePaths, serviceProblem } from "./service/service_paths.ts";
import { IdleExit, SERVICE_IDLE_DEFAULT_S } from "./service/idle_exit.ts";
import { KlymMetrics } from "./metrics/klym_metrics.ts";
import { TaskTraces } from "./metrics/task_traces.ts";
import { parseWindow, SpendLedger } from "./metrics/spend_ledger.ts";
import { observeAll } from "./tasks/task_observer.ts";
import { readProcFigures } from "./ui/server_stats.ts";

const logger = getLogger(["klym"]);

/**
 * `http`: the foreground server (`deno task start`): HTTP, and the socket for bridges when the
 * journal is a file in a private folder. `service`: the same started by a bridge in the background:
 * the socket is a must, HTTP a best effort, and it exits when idle. `stdio`: one private client
 * over stdin and stdout (`--stdio --standalone`).
 */
export type KlymMode = "http" | "service" | "stdio";

export interface Klym {
  readonly registry: TaskRegistry;
  /** The HTTP address, when serving HTTP. */
  readonly url: string | undefined;
  /** The socket bridges connect to, when it listens. */
  readonly socket: string | undefined;
  /** Resolves with why it should stop: the stdio client disconnected, or the service was idle. */
  readonly done: Promise<string>;
  close(): Promise<void>;
}

/** Starts serving; throws `JOURNAL_*` (nothing started) when the journal cannot be used. */
export async function startKlym(
  config: Config,
  mode: KlymMode = config.stdio ? "stdio" : "http",
): Promise<Klym> {
  const journal = isSharedState(config.state)
    ? await openSharedJournal(config)
    : mode === "stdio"
    ? standaloneJournal(config)
    : openJournal(config.state);
  const kinds = new KindCatalog(config.tasksDir, config);
  if (config.tasksDir) {
    try {
      Deno.statSync(config.tasksDir);
    } catch {
      logger.warn("KLYM_TASKS_DIR {dir} does not exist; no custom kinds", { dir: config.tasksDir });
    }
  }
  const pool = new ProcessPool(processOptions(config, kinds.snapshotDir()), {
    warmSpares: config.warmSpares,
    idleHosts: config.idleHosts,
    idleMs: config.idleHostS * 1000,
    idleCpuMs: config.idleHostCpuMs,
  });
  const llm = new LlmService(new ModelCatalog(config, (name) => Deno.env.get(name)), config);
  // What the gauges read when scraped; the HTTP app and the socket exist once serving.
  const serving: { app?: HttpApp; listener?: ServiceListener | undefined } = {};
  const metrics = new KlymMetrics({
    maxLabelValues: config.metricsMaxLabelValues,
    version: VERSION,
    node: journal.node,
    sources: {
      // Processes kept idle for their principal count like running ones.
      runningPids: () => [...registry.runningPids(), ...pool.idlePids()],
      processCount: () => registry.processCount + pool.idleCount,
      residentBytes: (pid) => readProcFigures(pid)?.rssBytes,
      spares: () => pool.spareCount,
      journal: () => journal.health(),
      sessions: () => {
        const http = serving.app?.sessionsByTransport() ?? { streamable: 0, sse: 0 };
        return [
          { era: "2025-11-25", transport: "streamable_http", count: http.streamable },
          { era: "2025-11-25", transport: "sse", count: http.sse },
          { era: "any", transport: "stdio_bridge", count: serving.listener?.connections ?? 0 },
        ];
      },
    },
  });
  const spend = new SpendLedger(journal, {
    retentionDays: config.spendRetentionDays,
    maxModels: config.metricsMaxLabelValues,
  });
  let registry: TaskRegistry;
  try {
    registry = new TaskRegistry({
      limits: config,
      grynya: grynyaSettings(config),
      llm,
      kinds,
      pool,
      journal,
      observer: observeAll([metrics, new TaskTraces(), spend]),
    });
  } catch (error) {
    await journal.close();
    throw error;
  }
  logger.info("Tasks are journaled in {store}", { store: journal.where });
  pool.warm();
  // One MCP task core for every session of both eras, living as long as the registry.
  const core = new McpTaskCore(registry, {
    retentionMs: config.retentionS * 1000,
    pollLeaseMs: config.taskPollLeaseS * 1000,
    cancel: (task, reason) => registry.cancel(task.id, reason, task.owner),
  });
  const mcp: McpServices = {
    registry,
    core,
    config,
    kinds,
    llm,
    modelCalls: (owner, call) => {
      metrics.modelCallBy(owner, call);
      spend.spentBy(owner, call);
    },
  };

  if (mode === "stdio") {
    // The SDK's stdio entry picks the era from the client's first message: a 2025 `initialize`
    // pins a session server, a 2026-07-28 request (`server/discover`, …) a modern one.
    const transport = new StdioServerTransport();
    const { promise: done, resolve } = Promise.withResolvers<string>();
    const stdio = serveStdio(
      (ctx) => createMcpServer(mcp, { owner: LOCAL_PRINCIPAL, era: ctx.era }),
      {
        transport: closingWith(refusingMalformedRetries(transport), () => resolve("stdio closed")),
        onerror: (error) => logger.debug("stdio: {error}", { error }),
      },
    );
    logger.info("Serving one client over stdio");
    return {
      registry,
      url: undefined,
      socket: undefined,
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
  const stats = new ServerStatsSource(registry, config.grynyaUrl, model, VERSION);
  const nodes = journal.node === undefined
    ? undefined
    : new NodePanel({ journal, registry }, { leaseMs: config.nodeLeaseMs });
  const ui = new UiApp({
    registry,
    principals,
    stats: {
      read: async (viewer) => ({
        ...await stats.read(viewer),
        spend: spend.read(SPEND_PANEL_WINDOW_S, scopeOf(viewer)),
        ...(nodes ? { cluster: await nodes.read(viewer) } : {}),
      }),
    },
    throttle,
    limits: config,
  });
  const app: HttpApp = new HttpApp({
    config,
    createServer: (owner, era) => createMcpServer(mcp, { owner, era }),
    // A principal counts its own tasks and sessions; an admin counts everyone's.
    health: (owner): Record<string, unknown> => {
      const viewer = principals.viewer(owner);
      return {
        tasks: registry.counts(scopeOf(viewer)),
        sessions: viewer.admin ? app.sessionCount : app.sessionCountOf(owner),
        journal: withoutLag(journal.health()),
      };
    },
    // Every principal's figures: the operators' (KLYM_ADMINS) once tokens are set.
    metrics: async (owner) => {
      if (principals.required && !principals.viewer(owner).admin) {
        return Response.json({
          code: "OPERATORS_ONLY",
          error:
            `Cannot read /metrics: principal "${owner}" is not an operator, and the metrics show every principal; name it in KLYM_ADMINS`,
        }, { status: 403 });
      }
      const { body, contentType } = await metrics.text();
      return new Response(body, { headers: { "content-type": contentType } });
    },
    // The caller's own spend; an admin's, everyone's.
    usage: (owner, url) => {
      const text = url.searchParams.get("window") ?? "24h";
      const windowS = parseWindow(text);
      try {
        if (windowS === undefined) {
          throw new KlymError(
            "INVALID_INPUT",
            `Cannot read model spend: "window" must be seconds or a number with s, m, h or d (as in 24h), received "${
              text.slice(0, 32)
            }"`,
          );
        }
        return Response.json(spend.read(windowS, scopeOf(principals.viewer(owner))));
      } catch (error) {
        if (!isKlymError(error, "INVALID_INPUT")) throw error;
        return Response.json({ code: error.code, error: error.message }, { status: 400 });
      }
    },
    // Down while the shared store does not answer: this node admits nothing meanwhile.
    ok: () => journal.unavailable() === undefined,
    ...(journal instanceof PgJournal
      ? {
        cluster: {
          node: journal.node,
          urlOf: (id: string) => journal.nodeUrl(id),
          answerMs: config.nodeLeaseMs,
        },
      }
      : {}),
    ui: ui.fetch,
    throttle,
  });
  serving.app = app;
  let http: Deno.HttpServer | undefined;
  let url: string | undefined;
  try {
    const { promise: listening, resolve: onListen } = Promise.withResolvers<Deno.NetAddr>();
    http = Deno.serve({
      hostname: config.host,
      port: config.port,
      onListen: (addr) => onListen(addr as Deno.NetAddr),
    }, app.fetch);
    const addr = await listening;
    const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
    url = `http://${host}:${addr.port}`;
  } catch (error) {
    // A service started by a bridge serves its bridges even when the port is taken.
    if (mode !== "service") throw error;
    logger.warn(
      "No HTTP (dashboard, CLI) for this service: {host}:{port} cannot be served ({error}); " +
        "free the port or set KLYM_PORT",
      { host: config.host, port: config.port, error: (error as Error).message },
    );
  }

  // The door for `--stdio` bridges: one per journal file, in its private folder.
  let listener: ServiceListener | undefined;
  try {
    listener = openListener(config, mode, {
      createServer: (ctx) => createMcpServer(mcp, { owner: LOCAL_PRINCIPAL, era: ctx.era }),
      url,
    });
    serving.listener = listener;
  } catch (error) {
    ui.close();
    await app.close();
    await http?.shutdown();
    await registry.shutdown();
    throw error;
  }

  logger.info(
    url ? "Serving MCP at {mcp} and the dashboard at {ui}" : "Serving bridges at {socket}",
    {
      ...(url ? { url, mcp: `${url}/mcp`, ui: `${url}/ui` } : {}),
      socket: listener?.path,
      version: VERSION,
      banner: [
        ["Klym", VERSION],
        ...(url ? [["MCP", `${url}/mcp`], ["SSE", `${url}/sse`], ["Dashboard", `${url}/ui`]] : []),
        ...(listener ? [["Bridges", listener.path]] : []),
        ["grynya", config.grynyaUrl],
        ["model", model],
        ["tasks", config.tasksDir ?? "built-in kinds only (no KLYM_TASKS_DIR)"],
      ],
    },
  );

  // Idle: no bridge, no HTTP session, no dashboard stream, no task queued or running.
  const { promise: done, resolve: stop } = Promise.withResolvers<string>();
  const idleS = config.serviceIdleS ?? (mode === "service" ? SERVICE_IDLE_DEFAULT_S : 0);
  const idle = idleS > 0
    ? new IdleExit({
      idleMs: idleS * 1000,
      busy: () => {
        const counts = registry.counts();
        return (listener?.connections ?? 0) > 0 || app.sessionCount > 0 ||
          ui.streams.size > 0 || counts.queued > 0 || counts.running > 0;
      },
      onIdle: () => {
        logger.info("No client and no task for {idleS} s: stopping (KLYM_SERVICE_IDLE_S)", {
          idleS,
        });
        stop("idle");
      },
    })
    : undefined;
  return {
    registry,
    url,
    socket: listener?.path,
    done,
    async close() {
      idle?.[Symbol.dispose]();
      // The socket first, so a bridge arriving now starts a new service rather than join this one.
      await listener?.close();
      ui.close();
      await registry.shutdown();
      await app.close();
      await http?.shutdown();
    },
  };
}

/** The dashboard's server panel shows the model spend of the last day. */
const SPEND_PANEL_WINDOW_S = 86_400;

/** `/healthz` tells whether the journal writes, not how far behind it is (that is /metrics'). */
function withoutLag(health: JournalHealth): JournalHealth {
  const { pendingSince: _, ...rest } = health;
  return rest;
}

/**
 * The service socket for `config`'s journal. A service must have it (throws `SERVICE_CANNOT_LISTEN`
 * saying why not); a foreground Klym goes on without it, saying so.
 */
function openListener(
  config: Config,
  mode: KlymMode,
  options: ServiceListenerOptions,
): ServiceListener | undefined {
  const paths = isSharedState(config.state) ? undefined : servicePaths(config.state);
  const problem = paths
    ? serviceProblem(paths)
    : isSharedState(config.state)
    ? "the store is shared by several nodes (KLYM_STATE=postgres://…)"
    : "the journal is in memory (KLYM_STATE=memory)";
  try {
    if (problem !== undefined) throw new KlymError("SERVICE_CANNOT_LISTEN", problem);
    return new ServiceListener(paths!, options);
  } catch (error) {
    const why = (error as Error).message;
    if (mode === "service") {
      throw new KlymError("SERVICE_CANNOT_LISTEN", `Cannot serve bridges: ${why}`);
    }
    logger.info("Bridges (--stdio) cannot reach this Klym: {why}", { why });
    return undefined;
  }
}

/** The store several nodes share (`KLYM_STATE=postgres://…`), this node's part of it. */
function openSharedJournal(config: Config): Promise<PgJournal> {
  return PgJournal.open(config.state!, {
    node: config.nodeId ?? `${Deno.hostname()}:${config.port || Deno.pid}`,
    url: config.nodeUrl,
    leaseMs: config.nodeLeaseMs,
    renewMs: config.nodeRenewMs,
    bufferBytes: config.sharedBufferBytes,
    waitMs: config.sharedWaitMs,
    maxAttempts: config.maxAttempts,
  });
}

/**
 * The journal of a private `--stdio --standalone` Klym: `KLYM_STATE`'s, or one in memory when that
 * file is taken by another Klym (the service), so a standalone Klym always starts.
 */
function standaloneJournal(config: Config): Journal {
  try {
    return openJournal(config.state);
  } catch (error) {
    if (!isKlymError(error, "JOURNAL_TAKEN")) throw error;
    logger.warn(
      "{error}; this standalone Klym keeps its tasks in memory instead (they end with it)",
      { error: error.message },
    );
    return new MemoryJournal();
  }
}
