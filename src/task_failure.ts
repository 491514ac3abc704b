/** A failure's message is cut to this many characters (by the Worker, and again on receipt). */
export const MAX_FAILURE_CHARS = 4096;
