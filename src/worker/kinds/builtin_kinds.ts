/** Task kinds that ship with Klym, by name. */
import type { TaskKind } from "../task_context.ts";

export const BUILTIN_KINDS: Readonly<Record<string, TaskKind>> = {};
