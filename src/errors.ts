/** The one error class of Klym's tools: a string code people and models can branch on, and a message that says the fix. */
export type TaskErrorCode =
  | "TASK_NOT_FOUND"
  | "UNKNOWN_KIND"
  | "KIND_OUTSIDE_TASKS_DIR"
  | "KIND_IMPORT_REFUSED"
  | "INVALID_INPUT"
  | "QUEUE_FULL"
  | "SHUTTING_DOWN"
  | "NO_MODEL"
  | "STORE_UNAVAILABLE";

export class TaskError extends Error {
  override name = "TaskError";
  constructor(readonly code: TaskErrorCode, message: string) {
    super(message);
  }
}
