/**
 * Shapes: small runtime checks of plain data, typed like the data they accept. They check the
 * messages between the server, a task's host and its Worker (src/protocol.ts), so that a task's
 * process need not load a schema library (zod costs each waiting task several MB).
 *
 * A check never throws on data that came through JSON or structured clone: it returns the data it
 * accepted (a fresh copy of every object and list, unknown keys of a plain object left out) or
 * the issues, each with the path to the value and a readable message. Only own properties of plain
 * objects are read, and a `__proto__` key is never written into a copy.
 */

export type Path = readonly (string | number)[];
export interface Issue {
  readonly path: Path;
  readonly message: string;
}
export type Checked<T> = { success: true; data: T } | { success: false; issues: Issue[] };

/**
 * Once a check has found this many issues it walks no list or record further: a hostile list (a
 * sparse one of 2^32 − 1 holes costs structured clone a few bytes) is not read to its end.
 */
export const MAX_ISSUES = 20;

/**
 * How deep JSON data (`json()`) may nest: no task's data goes deeper, structured clone itself gives
 * up at a few thousand levels, and the check walks it by recursion.
 */
export const MAX_JSON_DEPTH = 128;

/**
 * The objects the current check has walked as JSON data: structured clone carries an object that
 * sits in many places once, so a walk that went into it each time could take 2^n steps.
 */
let walked = new WeakSet<object>();

/** A message names this many unknown keys of an object, then says how many more. */
const NAMED_KEYS = 5;

/** A key of a path in a message: cut like a quoted string (a record's keys are the sender's). */
function segment(key: string | number): string | number {
  return typeof key === "string" && key.length > 40 ? `${key.slice(0, 40)}…` : key;
}

/** A value in a message: a scalar quoted (short), anything else by its kind only. */
function quote(value: unknown): string {
  if (typeof value === "string") {
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  }
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value !== "object") return typeof value;
  return isPlainObject(value) ? "object" : Object.prototype.toString.call(value).slice(8, -1);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Issues saying a value is not even of the expected type (a union tries its next option). */
const TYPE_ISSUES = new WeakSet<Issue>();

/** A runtime check that accepts values of type `T`. */
export abstract class Shape<T> {
  /** Only for `Infer`: never set. */
  declare readonly _type: T;
  /** What it accepts, in a message: "string", "object", … */
  abstract readonly expected: string;
  /** The accepted value, or anything after adding to `issues` (the caller looks at their count). */
  abstract read(value: unknown, path: Path, issues: Issue[]): T;

  check(value: unknown): Checked<T> {
    const issues: Issue[] = [];
    walked = new WeakSet();
    const data = this.read(value, [], issues);
    walked = new WeakSet();
    return issues.length ? { success: false, issues } : { success: true, data };
  }

  optional(): Optional<T> {
    return new Optional(this);
  }

  /** Adds the type issue for `value` and returns it as is (the caller will not use it). */
  protected refuse(value: unknown, path: Path, issues: Issue[]): T {
    const issue = { path, message: `expected ${this.expected}, received ${quote(value)}` };
    TYPE_ISSUES.add(issue);
    issues.push(issue);
    return value as T;
  }
}

export type Infer<S extends Shape<unknown>> = S["_type"];

/** A key that may be absent (or `undefined`) in an object. */
export class Optional<T> extends Shape<T | undefined> {
  declare readonly _optional: true;
  constructor(readonly inner: Shape<T>) {
    super();
  }
  get expected(): string {
    return this.inner.expected;
  }
  read(value: unknown, path: Path, issues: Issue[]): T | undefined {
    return value === undefined ? undefined : this.inner.read(value, path, issues);
  }
}

interface StringRules {
  readonly min?: number;
  readonly max?: number;
  /** Any length is accepted, and the first `cut` characters kept (a message cut on receipt). */
  readonly cut?: number;
}

class StringShape extends Shape<string> {
  readonly expected = "string";
  constructor(readonly rules: StringRules = {}) {
    super();
  }
  min = (min: number) => new StringShape({ ...this.rules, min });
  max = (max: number) => new StringShape({ ...this.rules, max });
  cut = (cut: number) => new StringShape({ ...this.rules, cut });
  read(value: unknown, path: Path, issues: Issue[]): string {
    if (typeof value !== "string") return this.refuse(value, path, issues);
    const { min = 0, max = Infinity, cut = Infinity } = this.rules;
    if (value.length < min) {
      issues.push({ path, message: `too short: expected at least ${min} characters` });
    } else if (value.length > max) {
      issues.push({ path, message: `too long: expected at most ${max} characters` });
    }
    return value.length > cut ? value.slice(0, cut) : value;
  }
}

interface NumberRules {
  /** A safe integer: beyond 2^53 a number no longer counts one by one. */
  readonly int?: boolean;
  readonly min?: number;
  readonly max?: number;
  readonly positive?: boolean;
}

/** Finite numbers only, always (as zod 4): JSON reads `1e999` as Infinity, a clone carries NaN. */
class NumberShape extends Shape<number> {
  constructor(readonly rules: NumberRules = {}) {
    super();
  }
  get expected(): string {
    return this.rules.int ? "a whole number" : "number";
  }
  int = () => new NumberShape({ ...this.rules, int: true });
  min = (min: number) => new NumberShape({ ...this.rules, min });
  max = (max: number) => new NumberShape({ ...this.rules, max });
  positive = () => new NumberShape({ ...this.rules, positive: true });
  read(value: unknown, path: Path, issues: Issue[]): number {
    const { int, min = -Infinity, max = Infinity, positive } = this.rules;
    const ok = typeof value === "number" &&
      (int ? Number.isSafeInteger(value) : Number.isFinite(value));
    if (!ok) return this.refuse(value, path, issues);
    const bound = value < min
      ? `at least ${min}`
      : value > max
      ? `at most ${max}`
      : positive && value <= 0
      ? "more than 0"
      : undefined;
    if (bound) issues.push({ path, message: `expected ${bound}, received ${value}` });
    return value;
  }
}

class Is<T> extends Shape<T> {
  constructor(readonly expected: string, readonly test: (value: unknown) => boolean) {
    super();
  }
  read(value: unknown, path: Path, issues: Issue[]): T {
    return this.test(value) ? value as T : this.refuse(value, path, issues);
  }
}

export class Literal<const V extends string | number | boolean> extends Is<V> {
  constructor(readonly value: V) {
    super(quote(value), (x) => x === value);
  }
}

type Fields = { readonly [key: string]: Shape<unknown> };
type OptionalKeys<F extends Fields> = {
  [K in keyof F]: F[K] extends { _optional: true } ? K : never;
}[keyof F];
type Flat<T> = { [K in keyof T]: T[K] };
/** An object's type: like zod's, an optional field's key is optional and may hold `undefined`. */
export type ObjectOf<F extends Fields> = Flat<
  & { -readonly [K in Exclude<keyof F, OptionalKeys<F>>]: Infer<F[K]> }
  & { -readonly [K in OptionalKeys<F>]?: Infer<F[K]> }
>;

export class ObjectShape<F extends Fields> extends Shape<ObjectOf<F>> {
  readonly expected = "object";
  /** `strict`: an unknown key is an issue; otherwise unknown keys are left out of the copy. */
  constructor(readonly fields: F, readonly strict: boolean) {
    super();
  }
  extend<E extends Fields>(more: E): ObjectShape<Flat<Omit<F, keyof E> & E>> {
    return new ObjectShape({ ...this.fields, ...more } as Flat<Omit<F, keyof E> & E>, this.strict);
  }
  read(value: unknown, path: Path, issues: Issue[]): ObjectOf<F> {
    if (!isPlainObject(value)) return this.refuse(value, path, issues);
    const out: Record<string, unknown> = {};
    for (const [key, field] of Object.entries(this.fields)) {
      const present = Object.hasOwn(value, key);
      if (!present && !(field instanceof Optional)) {
        issues.push({ path: [...path, key], message: `missing: expected ${field.expected}` });
      } else if (present) out[key] = field.read(value[key], [...path, key], issues);
    }
    if (this.strict) {
      const unknown = Object.keys(value).filter((key) => !Object.hasOwn(this.fields, key));
      if (unknown.length) {
        const named = unknown.slice(0, NAMED_KEYS).map(quote).join(", ");
        const more = unknown.length > NAMED_KEYS
          ? `, … and ${unknown.length - NAMED_KEYS} more`
          : "";
        issues.push({ path, message: `unknown keys: ${named}${more}` });
      }
    }
    return out as ObjectOf<F>;
  }
}

class RecordShape<V> extends Shape<Record<string, V>> {
  readonly expected = "object";
  constructor(readonly values: Shape<V>) {
    super();
  }
  read(value: unknown, path: Path, issues: Issue[]): Record<string, V> {
    if (!isPlainObject(value)) return this.refuse(value, path, issues);
    const out: Record<string, V> = {};
    for (const key of Object.keys(value)) {
      if (issues.length >= MAX_ISSUES) break;
      // Written into the copy it would set its prototype: it is left out (as zod does).
      if (key === "__proto__") continue;
      out[key] = this.values.read(value[key], [...path, key], issues);
    }
    return out;
  }
}

class ArrayShape<T> extends Shape<T[]> {
  readonly expected = "array";
  constructor(readonly items: Shape<T>, readonly least = 0, readonly most = Infinity) {
    super();
  }
  min = (n: number) => new ArrayShape(this.items, n, this.most);
  max = (n: number) => new ArrayShape(this.items, this.least, n);
  read(value: unknown, path: Path, issues: Issue[]): T[] {
    if (!Array.isArray(value)) return this.refuse(value, path, issues);
    // The length first: a list too long is not walked at all.
    const n = value.length;
    if (n < this.least || n > this.most) {
      const bound = n < this.least ? `at least ${this.least}` : `at most ${this.most}`;
      issues.push({ path, message: `expected ${bound} items, received ${n}` });
      return [];
    }
    const out: T[] = [];
    for (let i = 0; i < n && issues.length < MAX_ISSUES; i++) {
      out.push(this.items.read(value[i], [...path, i], issues));
    }
    return out;
  }
}

type TupleOf<S extends readonly Shape<unknown>[]> = { -readonly [I in keyof S]: Infer<S[I]> };

class TupleShape<S extends readonly Shape<unknown>[]> extends Shape<TupleOf<S>> {
  readonly expected = "array";
  constructor(readonly items: S) {
    super();
  }
  read(value: unknown, path: Path, issues: Issue[]): TupleOf<S> {
    if (!Array.isArray(value)) return this.refuse(value, path, issues);
    if (value.length !== this.items.length) {
      const message = `expected ${this.items.length} items, received ${value.length}`;
      issues.push({ path, message });
      return [] as TupleOf<S>;
    }
    return this.items.map((item, i) => item.read(value[i], [...path, i], issues)) as TupleOf<S>;
  }
}

class Union<S extends readonly Shape<unknown>[]> extends Shape<Infer<S[number]>> {
  constructor(readonly options: S) {
    super();
  }
  get expected(): string {
    return this.options.map((o) => o.expected).join(" or ");
  }
  read(value: unknown, path: Path, issues: Issue[]): Infer<S[number]> {
    const failures: Issue[][] = [];
    const outer = walked;
    for (const option of this.options) {
      const own: Issue[] = [];
      // Each option walks the value anew: what one of them walked is no repeat for the next.
      walked = new WeakSet();
      const data = option.read(value, path, own);
      walked = outer;
      if (!own.length) return data as Infer<S[number]>;
      failures.push(own);
    }
    // The options that got past the value's own type say what is wrong with it.
    const near = failures.filter((own) =>
      !own.some((issue) => TYPE_ISSUES.has(issue) && issue.path.length === path.length)
    );
    if (near.length === 1) issues.push(...near[0]!);
    else this.refuse(value, path, issues);
    return value as Infer<S[number]>;
  }
}

/**
 * JSON data, as a fresh copy: null, booleans, finite numbers, strings, and lists and plain objects
 * of them, at most MAX_JSON_DEPTH deep, each object in one place only (a tree, as JSON writes it).
 * What JSON.stringify would throw on (a BigInt, a cycle, a list of 2^32 − 1 holes), take 2^n steps
 * for (one object in many places), or read later than its check (a SharedArrayBuffer the sender
 * can still grow) is refused. A `__proto__` key is left out, as in a record.
 */
class JsonShape extends Shape<unknown> {
  readonly expected = "JSON data";
  read(value: unknown, path: Path, issues: Issue[]): unknown {
    return this.#copy(value, path, issues, 1);
  }
  #copy(value: unknown, path: Path, issues: Issue[], depth: number): unknown {
    if (value === null || typeof value === "string" || typeof value === "boolean") return value;
    if (typeof value === "number") {
      return Number.isFinite(value) ? value : this.refuse(value, path, issues);
    }
    if (!Array.isArray(value) && !isPlainObject(value)) return this.refuse(value, path, issues);
    if (depth > MAX_JSON_DEPTH) {
      issues.push({ path, message: `nested deeper than ${MAX_JSON_DEPTH} levels` });
      return value;
    }
    if (walked.has(value)) {
      issues.push({ path, message: "an object also found elsewhere: JSON data is a tree" });
      return value;
    }
    walked.add(value);
    if (Array.isArray(value)) {
      const out: unknown[] = [];
      for (let i = 0; i < value.length && issues.length < MAX_ISSUES; i++) {
        out.push(this.#copy(value[i], [...path, i], issues, depth + 1));
      }
      return out;
    }
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value)) {
      if (issues.length >= MAX_ISSUES) break;
      if (key === "__proto__") continue;
      out[key] = this.#copy(value[key], [...path, key], issues, depth + 1);
    }
    return out;
  }
}

type Tagged<K extends string> = ObjectShape<Fields & { readonly [_ in K]: Literal<string> }>;

/** One of several objects, told apart by the literal at `key`: only that one is checked. */
export class DiscriminatedUnion<K extends string, S extends readonly Tagged<K>[]>
  extends Shape<Infer<S[number]>> {
  readonly expected = "object";
  readonly #byValue = new Map<unknown, Tagged<K>>();
  /** The values `key` may take, in the options' order. */
  readonly values: readonly string[];
  constructor(readonly key: K, readonly options: S) {
    super();
    for (const option of options) this.#byValue.set(option.fields[key].value, option);
    this.values = [...this.#byValue.keys()] as string[];
  }
  read(value: unknown, path: Path, issues: Issue[]): Infer<S[number]> {
    if (!isPlainObject(value)) return this.refuse(value, path, issues);
    const tag = Object.hasOwn(value, this.key) ? value[this.key] : undefined;
    const option = this.#byValue.get(tag);
    if (option) return option.read(value, path, issues) as Infer<S[number]>;
    issues.push({
      path: [...path, this.key],
      message: `expected one of ${this.values.map(quote).join(" | ")}, received ${quote(tag)}`,
    });
    return value as Infer<S[number]>;
  }
}

export const string = (): StringShape => new StringShape();
export const number = (): NumberShape => new NumberShape();
export const boolean = (): Shape<boolean> => new Is("boolean", (x) => typeof x === "boolean");
export const unknown = (): Shape<unknown> => new Is("a value", () => true);
/** JSON data, copied (see `JsonShape`): for what a sender's code puts in a message as it likes. */
export const json = (): Shape<unknown> => new JsonShape();
export const literal = <const V extends string | number | boolean>(value: V): Literal<V> =>
  new Literal(value);
/** One of a few strings (`enum` is a reserved word: this is exported as `enum` too). */
export const oneOf = <const V extends readonly [string, ...string[]]>(
  values: V,
): Shape<V[number]> => {
  const allowed = new Set<unknown>(values);
  return new Is(`one of ${values.map(quote).join(" | ")}`, (x) => allowed.has(x));
};
export { oneOf as enum };
export const object = <F extends Fields>(fields: F): ObjectShape<F> =>
  new ObjectShape(fields, false);
export const strictObject = <F extends Fields>(fields: F): ObjectShape<F> =>
  new ObjectShape(fields, true);
/** An object of any string keys, each value checked by `values`. */
export const record = <V>(values: Shape<V>): Shape<Record<string, V>> => new RecordShape(values);
export const array = <T>(items: Shape<T>): ArrayShape<T> => new ArrayShape(items);
export const tuple = <const S extends readonly Shape<unknown>[]>(items: S): Shape<TupleOf<S>> =>
  new TupleShape(items);
export const union = <const S extends readonly Shape<unknown>[]>(options: S): Union<S> =>
  new Union(options);
export const discriminatedUnion = <K extends string, const S extends readonly Tagged<K>[]>(
  key: K,
  options: S,
): DiscriminatedUnion<K, S> => new DiscriminatedUnion(key, options);

/** Issues as one line, for a log or an error: `path: message; …` (the root is named `root`). */
export function describeIssues(issues: readonly Issue[], root = "(root)"): string {
  return issues.map((i) => `${i.path.map(segment).join(".") || root}: ${i.message}`).join("; ");
}
