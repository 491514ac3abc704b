/**
 * How long a test waits for something that must come (a server listening, a task ending, a peer
 * answering, a process exiting) before it calls it hung. Generous, because on a machine loaded by
 * other test suites one process start can take tens of seconds; a wait ends as soon as its event
 * comes, so a sound run never waits this long.
 */
export const PATIENCE_MS = 120_000;
