/**
 * The journal's schema, as a list of migrations. `PRAGMA user_version` is the number of them
 * applied; opening a file applies the missing ones in one transaction, and refuses a file written
 * by a newer Klym. Never edit a shipped migration: add the next one.
 */
import type { DatabaseSync } from "node:sqlite";

export type Migration = (db: DatabaseSync) => void;

export const MIGRATIONS: readonly Migration[] = [
  // 1: tasks, their status changes, log lines and saves. Tasks are numbered (`no`) so that the
  // large tables key on a small integer, clustered by task and line number.
  (db) =>
    db.exec(`
      CREATE TABLE tasks (
        no INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        model TEXT,
        prompt TEXT,
        params TEXT NOT NULL,
        timeout_s INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        status TEXT NOT NULL,
        queued_at INTEGER,
        started_at INTEGER,
        code_started_at INTEGER,
        finished_at INTEGER,
        progress TEXT,
        result TEXT,
        error TEXT,
        logs_dropped INTEGER NOT NULL DEFAULT 0
      );
      CREATE TABLE task_events (
        task INTEGER NOT NULL,
        time INTEGER NOT NULL,
        status TEXT NOT NULL,
        detail TEXT
      );
      CREATE INDEX task_events_by_task ON task_events (task);
      CREATE TABLE logs (
        task INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        stream INTEGER NOT NULL,
        time INTEGER NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (task, seq)
      ) WITHOUT ROWID;
      CREATE TABLE saves (
        task INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        tool TEXT NOT NULL,
        ok INTEGER NOT NULL,
        time INTEGER NOT NULL,
        reply TEXT NOT NULL,
        PRIMARY KEY (task, seq)
      ) WITHOUT ROWID;
    `),
  // 2: the principal that started each task (tasks from before principals were the local one's).
  (db) => db.exec(`ALTER TABLE tasks ADD COLUMN owner TEXT NOT NULL DEFAULT 'local'`),
  // 3: model spend per hour, principal and model (`klym usage`, the dashboard's server panel).
  (db) =>
    db.exec(`
      CREATE TABLE model_spend (
        hour INTEGER NOT NULL,
        owner TEXT NOT NULL,
        model TEXT NOT NULL,
        calls INTEGER NOT NULL,
        refusals INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        PRIMARY KEY (hour, owner, model)
      ) WITHOUT ROWID;
    `),
];

export const SCHEMA_VERSION = MIGRATIONS.length;
