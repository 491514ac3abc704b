/** A failure's message is cut to this many characters (by the Worker, and again on receipt). */
export const MAX_FAILURE_CHARS = 4096;

/** A failure a task kind reports with its own code (e.g. `grynya_unreachable`). */
export class TaskFailure extends Error {
  override name = "TaskFailure";
  constructor(readonly code: string, message: string, options?: ErrorOptions) {
    super(message, options);
  }
}
