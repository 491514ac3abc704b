/**
 * A label's values, bounded: the first `max` distinct values seen keep their name, every later one
 * is counted as `other`. Principals, models and kinds come from configuration, files and clients
 * (a client's own model through sampling names itself), so a hostile client could otherwise make
 * series without end (KLYM_METRICS_MAX_LABEL_VALUES).
 */
export const OTHER = "other";
/** A value is cut to this many characters. */
const MAX_VALUE_CHARS = 128;

export class LabelValues {
  readonly #known = new Set<string>();

  constructor(readonly max: number) {}

  /** The label value `value` is counted under. */
  of(value: string): string {
    const cut = value.slice(0, MAX_VALUE_CHARS);
    if (this.#known.has(cut)) return cut;
    if (this.#known.size >= this.max || cut === OTHER) return OTHER;
    this.#known.add(cut);
    return cut;
  }
}
