/** The one error class of Klym: a string code people and models can branch on, and a message that says the fix. */
export type TaskErrorCode =
  | "TASK_NOT_FOUND"
  | "UNKNOWN_KIND"
  | "INVALID_INPUT"
  | "QUEUE_FULL"
  | "SHUTTING_DOWN"
  | "NO_MODEL";

export class TaskError extends Error {
  override name = "TaskError";
  constructor(readonly code: TaskErrorCode, message: string) {
    super(message);
  }
}

/** How a task failed, as plain data: it crosses process boundaries and lands in `check_task_status`. */
export interface TaskFailure {
  readonly code: string;
  readonly message: string;
}
