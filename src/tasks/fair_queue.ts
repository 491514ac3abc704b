/**
 * The waiting tasks of every principal: round-robin across principals with work queued, first in
 * first out within one. Each principal has a lane (insertion-ordered, so removing any item is O(1))
 * and a turn number; the next item comes from the lane with the lowest turn, and serving a lane
 * moves its turn one past the turn just served. A lane that starts waiting takes the current turn,
 * so a principal that arrives behind another's thousand queued tasks is served at the next free
 * slot, and a lane passed over (its principal at a running limit) is owed at most one turn, never
 * a backlog. Ties go to the lane whose turn was set first. Each lane also counts its input bytes.
 */

interface Lane<T> {
  /** Items in arrival order, each with its bytes. */
  readonly items: Map<T, number>;
  bytes: number;
  /** The lane's next turn (see `#turnOf`). */
  turn: number;
  /** When `turn` was set, to break ties first come first served. */
  setAt: number;
}

export class FairQueue<T> {
  /** Every principal that has queued, its lane kept while empty (its turn must not be forgotten). */
  readonly #lanes = new Map<string, Lane<T>>();
  /** Lanes with items, the only ones `next` looks at. */
  readonly #waiting = new Map<string, Lane<T>>();
  /** The turn last served: a lane's turn below it counts as this. */
  #served = 0;
  #stamp = 0;
  #size = 0;
  #bytes = 0;

  /** Items waiting, all principals together. */
  get size(): number {
    return this.#size;
  }

  /** Bytes of the items waiting, all principals together. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Items `principal` has waiting. */
  sizeOf(principal: string): number {
    return this.#waiting.get(principal)?.items.size ?? 0;
  }

  /** Bytes of the items `principal` has waiting. */
  bytesOf(principal: string): number {
    return this.#waiting.get(principal)?.bytes ?? 0;
  }

  /** Adds `item` at the end of `principal`'s lane. */
  push(principal: string, item: T, bytes = 0): void {
    let lane = this.#lanes.get(principal);
    if (!lane) {
      lane = { items: new Map(), bytes: 0, turn: this.#served, setAt: this.#stamp++ };
      this.#lanes.set(principal, lane);
    }
    if (lane.items.has(item)) return;
    if (lane.items.size === 0) {
      // Starting to wait: no credit for the time it had nothing queued.
      if (lane.turn < this.#served) [lane.turn, lane.setAt] = [this.#served, this.#stamp++];
      this.#waiting.set(principal, lane);
    }
    lane.items.set(item, bytes);
    lane.bytes += bytes;
    this.#size++;
    this.#bytes += bytes;
  }

  /** Takes `item` out of `principal`'s lane; `false` when it was not there. */
  remove(principal: string, item: T): boolean {
    const lane = this.#waiting.get(principal);
    const bytes = lane?.items.get(item);
    if (!lane || bytes === undefined) return false;
    this.#take(principal, lane, item, bytes);
    return true;
  }

  /**
   * Takes the next item: the oldest of the lane whose turn it is, among the principals that
   * `eligible` accepts (all by default); `undefined` when none of them has anything waiting.
   */
  next(eligible: (principal: string) => boolean = () => true): T | undefined {
    const chosen = this.#choose(eligible);
    if (!chosen) return undefined;
    const [principal, lane] = chosen;
    const [item, bytes] = lane.items.entries().next().value!;
    this.#served = this.#turnOf(lane);
    [lane.turn, lane.setAt] = [this.#served + 1, this.#stamp++];
    this.#take(principal, lane, item, bytes);
    return item;
  }

  /** The principal whose item `next(eligible)` would take; `undefined` when none. */
  nextPrincipal(eligible: (principal: string) => boolean = () => true): string | undefined {
    return this.#choose(eligible)?.[0];
  }

  /** Whether `next(eligible)` would take an item. */
  hasNext(eligible: (principal: string) => boolean = () => true): boolean {
    for (const principal of this.#waiting.keys()) if (eligible(principal)) return true;
    return false;
  }

  /** Every waiting item, lane by lane. */
  *[Symbol.iterator](): IterableIterator<T> {
    for (const lane of this.#waiting.values()) yield* [...lane.items.keys()];
  }

  #choose(eligible: (principal: string) => boolean): [string, Lane<T>] | undefined {
    let best: [string, Lane<T>] | undefined;
    for (const entry of this.#waiting) {
      if (best && !this.#before(entry[1], best[1])) continue;
      if (eligible(entry[0])) best = entry;
    }
    return best;
  }

  #take(principal: string, lane: Lane<T>, item: T, bytes: number): void {
    lane.items.delete(item);
    lane.bytes -= bytes;
    this.#size--;
    this.#bytes -= bytes;
    if (lane.items.size === 0) this.#waiting.delete(principal);
  }

  /** A lane passed over keeps no more than the turn being served now. */
  #turnOf(lane: Lane<T>): number {
    return Math.max(lane.turn, this.#served);
  }

  #before(a: Lane<T>, b: Lane<T>): boolean {
    const [ta, tb] = [this.#turnOf(a), this.#turnOf(b)];
    return ta < tb || (ta === tb && a.setAt < b.setAt);
  }
}
