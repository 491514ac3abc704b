/** The task spec a server hands a host (`TaskProcess.start`), for tests that drive a host directly. */
import { type Config, grynyaSettings } from "../../src/config.ts";
import type { TaskSpec } from "../../src/protocol.ts";

export function hostSpec(
  config: Config,
  kind: string,
  modulePath: string,
  params: Record<string, unknown>,
): TaskSpec {
  return {
    taskId: `t_${kind}`,
    kind,
    params,
    modulePath,
    grynya: grynyaSettings(config),
    budget: { calls: 1, tokens: 1000 },
  };
}
