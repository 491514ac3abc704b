/** The CLI's command names, apart from the CLI itself so that `main.ts` can dispatch cheaply. */
const COMMAND_NAMES = ["tasks", "show", "logs", "start", "cancel", "usage"] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];

/** First arguments that make `main.ts` a CLI instead of a server. */
export const CLI_COMMANDS: ReadonlySet<string> = new Set([
  ...COMMAND_NAMES,
  "help",
  "--help",
  "-h",
  "--version",
  "-V",
]);
