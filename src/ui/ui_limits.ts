/**
 * The dashboard's limits, each with its name and default (listed in docs/dashboard.md). Its fair shares of
 * logins and streams are knobs (`KLYM_UI_MAX_LOGINS`, `KLYM_UI_MAX_STREAMS` and their totals).
 */

/** Least time between two change messages on one stream (so at most 4 a second). */
export const UI_STREAM_INTERVAL_MS = 250;
/** Bytes queued for one stream before it counts as slow; changes then wait, coalesced. */
export const UI_STREAM_BUFFER_BYTES = 64 * 1024;
/** A stream that stays slow this long is closed (the page reconnects). */
export const UI_STREAM_STALL_MS = 30_000;
/** A comment line keeps idle streams open through proxies. */
export const UI_KEEPALIVE_MS = 15_000;
/** How often a stream sends the server panel's figures. */
export const UI_SERVER_STATS_MS = 2000;
/** Task ids named in one change message; beyond it the message says "all". */
export const UI_MAX_IDS_PER_MESSAGE = 100;
/** Dashboard sessions (after login) live this long. */
export const UI_SESSION_TTL_S = 12 * 3600;
/** A login form's body. */
export const UI_LOGIN_BODY_BYTES = 4096;
/** Tasks in the dashboard's list. */
export const UI_LIST_LIMIT = 200;
/** Log lines in one answer of the task page's log endpoint. */
export const UI_LOG_LINES_PER_READ = 500;
/** grynya's reachability probe: its timeout, and how long an answer is reused. */
export const GRYNYA_PROBE_TIMEOUT_MS = 1000;
export const GRYNYA_PROBE_CACHE_MS = 5000;
/** The server panel's nodes (a shared store): how long a read of them is reused, and its timeout. */
export const NODES_READ_CACHE_MS = 1000;
export const NODES_READ_TIMEOUT_MS = 1000;
