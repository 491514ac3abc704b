/**
 * The shared store's schema in PostgreSQL, as a list of migrations. `klym_schema.version` is the
 * number applied; a node applies the missing ones in one transaction under an advisory lock (so
 * nodes starting together migrate once) and refuses a database written by a newer Klym. Never
 * edit a shipped migration: add the next one.
 *
 * Free text (prompts, log lines, replies) is stored as JSON text, because PostgreSQL's `text`
 * refuses the NUL byte a task may print; times are milliseconds since the epoch.
 */
export const PG_MIGRATIONS: readonly string[] = [
  // 1: nodes and their leases; tasks with their claim (node, attempt) and change number (rev);
  // status changes, log lines and saves.
  `
  CREATE TABLE klym_nodes (
    id text PRIMARY KEY,
    url text,
    started_at timestamptz NOT NULL DEFAULT now(),
    renewed_at timestamptz NOT NULL DEFAULT now(),
    alive boolean NOT NULL DEFAULT true,
    slots integer NOT NULL DEFAULT 0,
    running integer NOT NULL DEFAULT 0
  );
  CREATE SEQUENCE klym_rev;
  CREATE TABLE klym_tasks (
    no bigserial UNIQUE,
    id text PRIMARY KEY,
    owner text NOT NULL,
    kind text NOT NULL,
    model text,
    prompt text,
    params text NOT NULL,
    timeout_s integer NOT NULL,
    created_at double precision NOT NULL,
    status text NOT NULL,
    queued_at double precision,
    started_at double precision,
    code_started_at double precision,
    finished_at double precision,
    progress text,
    result text,
    error text,
    logs_dropped integer NOT NULL DEFAULT 0,
    retryable boolean NOT NULL DEFAULT false,
    node text,
    attempt integer NOT NULL DEFAULT 0,
    rev bigint NOT NULL DEFAULT nextval('klym_rev')
  );
  CREATE INDEX klym_tasks_waiting ON klym_tasks (no) WHERE status = 'queued';
  CREATE INDEX klym_tasks_running ON klym_tasks (node) WHERE status = 'running';
  CREATE INDEX klym_tasks_rev ON klym_tasks (rev);
  CREATE TABLE klym_task_events (
    task text NOT NULL,
    time double precision NOT NULL,
    status text NOT NULL,
    detail text,
    node text,
    attempt integer
  );
  CREATE INDEX klym_task_events_by_task ON klym_task_events (task);
  CREATE TABLE klym_logs (
    task text NOT NULL,
    seq integer NOT NULL,
    stream smallint NOT NULL,
    time double precision NOT NULL,
    text text NOT NULL,
    PRIMARY KEY (task, seq)
  );
  CREATE TABLE klym_saves (
    task text NOT NULL,
    seq integer NOT NULL,
    tool text NOT NULL,
    ok boolean NOT NULL,
    time double precision NOT NULL,
    reply text NOT NULL,
    PRIMARY KEY (task, seq)
  );
  `,
  // 2: model spend per hour, principal and model, added up by every node.
  `
  CREATE TABLE klym_model_spend (
    hour double precision NOT NULL,
    owner text NOT NULL,
    model text NOT NULL,
    calls bigint NOT NULL,
    refusals bigint NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    PRIMARY KEY (hour, owner, model)
  );
  `,
  // 3: a task that asks the starting client's own model runs on the node holding that client.
  `ALTER TABLE klym_tasks ADD COLUMN pinned text;`,
];

export const PG_SCHEMA_VERSION = PG_MIGRATIONS.length;

/** The advisory lock of migrations, claims and the lost-node reaper (one at a time, cluster-wide). */
export const CLUSTER_LOCK = 0x6b6c796d;
