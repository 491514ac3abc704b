/**
 * Klym's one error class and the one vocabulary of codes it reports on every face: MCP tool
 * errors (`CODE: message`), `llm_generate`, a task's `error.code`, the dashboard API, the CLI and
 * Klym's own start (exit code 2). One cause has one code, whichever face reports it.
 *
 * Spelling: UPPER_SNAKE for a request refused at the door (a tool call, the dashboard API, the CLI,
 * Klym's start) and for what is not an outcome; lower_snake for why a task, or a call a task or
 * `llm_generate` made (a model call, a grynya call), ended. A refusal that also ends a task keeps
 * its code (a kind that no longer loads fails `KIND_IMPORT_REFUSED`, a model call with no model
 * `NO_MODEL`). docs/errors.md has a row for each code (tests/errors_test.ts checks both ways).
 *
 * This module imports nothing: a task's Worker, which may load nothing else, loads it too.
 */
export const ERROR_CODES = {
  // Refused at the door: the request did nothing.
  TASK_NOT_FOUND:
    "no task with that id is visible to the caller (never started, forgotten, or another principal's)",
  UNKNOWN_KIND: "the kind is neither a built-in kind nor a file of KLYM_TASKS_DIR",
  KIND_OUTSIDE_TASKS_DIR: "the kind's file resolves outside KLYM_TASKS_DIR",
  KIND_IMPORT_REFUSED:
    "a custom kind imports what a task may not load, or is over KLYM_MAX_KIND_BYTES or KLYM_MAX_KIND_MODULES",
  INVALID_INPUT: "a tool's input is malformed or over its size limit",
  QUEUE_FULL: "the caller's or everyone's queue is at its limit (KLYM_MAX_QUEUED and its kin)",
  SHUTTING_DOWN: "Klym is stopping and starts no task",
  NO_MODEL:
    "no model is configured and the client offers no sampling that fits (an agent needs sampling.tools)",
  STORE_UNAVAILABLE:
    "the shared store (PostgreSQL) is unreachable: start is refused until it answers again",
  MODEL_NOT_CONFIGURED:
    "the request names a model that KLYM_MODEL and KLYM_MODELS do not configure",
  OPERATORS_ONLY:
    "/metrics shows every principal: only principals named in KLYM_ADMINS may read it when tokens are set",
  // Klym does not start (exit code 2).
  CONFIG_INVALID: "a KLYM_* variable or flag has an invalid value; the message names each",
  TEMPLATE_INVALID:
    "a grynya write template is malformed (at start: KLYM_GRYNYA_WRITE; at a save: the save fails)",
  STATE_UNSAFE:
    "the journal's folder or files are not private to the user (a link, another owner, a mode)",
  JOURNAL_TAKEN: "another running Klym holds the journal's lock",
  JOURNAL_UNUSABLE: "the journal cannot be opened or created",
  SERVICE_CANNOT_LISTEN: "the service cannot serve bridges on its socket",
  // The stdio bridge and the service.
  SERVICE_UNREACHABLE: "a stdio bridge cannot reach or start the user's service",
  HANDSHAKE_FAILED: "a bridge and the service exchanged no valid hello lines in time",
  // The CLI (exit code 2).
  CLI_USAGE: "the klym command line is malformed",
  CLI_FAILED: "the CLI cannot reach Klym, is not let in, or its request was refused",
  // Not outcomes: never shown to a client as an error.
  INPUT_REQUIRED:
    "a 2026-07-28 call needs the client's model: answered with an input-required result",
  ILLEGAL_TRANSITION:
    "a bug: a task's status was moved where it may not go (final statuses never change)",
  // Why a task ended.
  task_error: "the task's function threw",
  aborted: "the task's function threw after its ctx.signal aborted",
  load_error: "the kind's module failed to load",
  unhandled_rejection: "a promise of the task's code was rejected and never handled",
  uncaught_error: "an error escaped the task's code outside its function's promise",
  exit_called: "the task called Deno.exit()",
  out_of_memory: "the task's process went over KLYM_TASK_MEMORY_MB",
  result_too_large: "the task's result is over KLYM_MAX_RESULT_BYTES",
  protocol_violation:
    "the task's process sent its host or the server something outside the protocol",
  spawn_failed: "the task's process could not be started",
  process_exited: "the task's process ended before the task did",
  cancelled: "cancel_task, the client, or the caller's cancel ended it (a model call too)",
  shutdown: "Klym shut down while the task was queued or running",
  timed_out: "the task's deadline (timeout_s) passed",
  interrupted: "the task was queued or running when the previous Klym ended without shutting down",
  node_lost:
    "the node running the task stopped renewing its lease (killed, cut off); the task ran on no other",
  invalid_params: "a built-in kind refuses its params",
  max_steps:
    "an agent made KLYM_AGENT_MAX_STEPS (or params.max_steps) model turns with no final answer",
  loop_detected: "an agent's model repeated the same tool call with the same arguments",
  tool_errors: "every tool call of an agent failed several model turns in a row",
  token_budget: "a task used its tokens (KLYM_AGENT_MAX_TOKENS, KLYM_TASK_MAX_TOKENS)",
  model_call_budget: "a task made its KLYM_TASK_MAX_LLM_CALLS model calls",
  too_many_model_calls: "a task had KLYM_TASK_LLM_CONCURRENCY model calls in flight already",
  llm_request_too_large: "a task's model request is over KLYM_MAX_LLM_REQUEST_BYTES",
  // Why a model call ended (a task's ctx.llm or llm_generate).
  model_timeout: "the model did not answer within KLYM_LLM_TIMEOUT_MS",
  model_error: "the model's provider or the client's sampling failed",
  client_gone: "the client whose model (MCP sampling) the call needs has disconnected",
  // Why a grynya call ended.
  grynya_unreachable: "no connection to grynya within the connect timeout or the reconnect budget",
  grynya_timeout: "grynya did not answer within KLYM_GRYNYA_CALL_TIMEOUT_MS",
  grynya_error: "grynya answered with a JSON-RPC error",
  grynya_call_interrupted:
    "the connection broke during a tool call that may have landed; not re-sent",
  grynya_write_rejected: "a save's reply says it failed",
  grynya_no_write_strategy: "no write strategy fits grynya's tools",
  grynya_request_too_large: "a task's grynya call is over KLYM_MAX_GRYNYA_CALL_BYTES",
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The one error class: a code from `ERROR_CODES`, and a message that says the fix. */
export class KlymError extends Error {
  override name = "KlymError";
  constructor(readonly code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** Whether `error` is a `KlymError` with one of `codes` (with none: of any code). */
export function isKlymError(error: unknown, ...codes: ErrorCode[]): error is KlymError {
  return error instanceof KlymError && (codes.length === 0 || codes.includes(error.code));
}
