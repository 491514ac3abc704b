/**
 * Byte-counted text helpers and byte arrays, shared by every side (no dependencies: Worker code
 * imports them too).
 */

/** UTF-8 length without allocating. */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c < 0xdc00) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/**
 * The UTF-8 length of `value`'s JSON, or Infinity when that JSON is longer than a string can be: a
 * task's string of 90 M control characters is written as 540 M, and JSON.stringify throws on it.
 */
export function jsonBytes(value: unknown): number {
  try {
    return utf8Length(JSON.stringify(value) ?? "");
  } catch {
    return Infinity;
  }
}

/** Cuts `text` to at most `maxBytes` UTF-8 bytes, marking the cut. */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (text.length * 3 <= maxBytes) return text;
  const bytes = new TextEncoder().encode(text);
  if (bytes.length <= maxBytes) return text;
  const marker = ` …[${bytes.length - maxBytes} bytes cut]`;
  const keep = new TextDecoder().decode(
    bytes.subarray(0, Math.max(0, maxBytes - utf8Length(marker))),
  );
  return keep.replace(/\uFFFD$/, "") + marker;
}

/** The problem with a text over its byte limit, naming the field and the knob; `undefined` if it fits. */
export function byteLimitProblem(
  field: string,
  text: string,
  maxBytes: number,
  knob: string,
): string | undefined {
  const bytes = utf8Length(text);
  return bytes > maxBytes
    ? `"${field}" is ${bytes} bytes, the limit is ${maxBytes} (${knob})`
    : undefined;
}

/** The chunks, in order, as one array of bytes. */
export function concatBytes(chunks: readonly Uint8Array[]): Uint8Array {
  const all = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0));
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.byteLength;
  }
  return all;
}

/**
 * A list of names for a log line or a message, bounded: how many, then as many names as fit in
 * `maxChars`, then how many more (`"38 tools: a, b, c, … and 30 more"`).
 */
export function summarizeNames(noun: string, names: readonly string[], maxChars = 240): string {
  if (names.length === 0) return `no ${noun}`;
  const shown: string[] = [];
  let length = 0;
  for (const name of names) {
    if (shown.length && length + name.length + 2 > maxChars) break;
    shown.push(name.length > maxChars ? `${name.slice(0, maxChars)}…` : name);
    length += name.length + 2;
  }
  const rest = names.length - shown.length;
  return `${names.length} ${noun}: ${shown.join(", ")}${rest ? `, … and ${rest} more` : ""}`;
}
