/** What a journal of one machine (SQLite, memory) answers to the questions of a shared store. */
import type { Claim, NodeInfo, NodeSide } from "./journal.ts";

export abstract class OneMachineJournal {
  readonly node = undefined;
  /** One machine: the registry's own choice, at once. */
  claim(pick: () => string, _maxRunningPerPrincipal: number): Claim {
    return { id: pick(), attempt: 1 };
  }
  durable(): Promise<void> {
    return Promise.resolve();
  }
  unavailable(): string | undefined {
    return undefined;
  }
  attach(_node: NodeSide): void {}
  nodes(): Promise<NodeInfo[]> {
    return Promise.resolve([]);
  }
}
