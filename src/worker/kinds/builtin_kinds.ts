/** Task kinds that ship with Klym, by name (their names are listed in `BUILTIN_KIND_NAMES`). */
import type { TaskKind } from "../task_context.ts";
import { agent } from "./agent.ts";
import { generate } from "./generate.ts";
import { graphWrite } from "./graph_write.ts";
import { report } from "./report.ts";

export const BUILTIN_KINDS: Readonly<Record<string, TaskKind>> = {
  agent,
  report,
  graph_write: graphWrite,
  generate,
};
