/** How often a task process's resident size is sampled, by its server or by its host's watchdog. */
export const MEMORY_CHECK_MS = 10;

/**
 * What a task process's memory watchdog writes to stderr after the channel marker, followed by the
 * resident bytes; the server ends the process when it reads it. No dependencies: the watchdog's
 * Worker imports it.
 */
export const MEMORY_ALARM = "memory:";
