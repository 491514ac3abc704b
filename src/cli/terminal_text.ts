/**
 * Text from a server or a task, made safe for a terminal. Anything that moves the cursor, changes
 * the terminal's state, reorders what is shown or hides itself prints as a visible escape instead:
 * controls (C0, DEL, C1: `\p{Cc}`), format characters (bidi controls U+202A–U+202E, U+2066–U+2069,
 * U+200E, U+200F, U+061C, zero-width U+200B–U+200D, U+2060, U+FEFF, tags…: `\p{Cf}`), the line and
 * paragraph separators U+2028/U+2029 and lone surrogates. So one field stays one field on one row.
 */

/** What `terminalText` escapes; the backslash too, so that an escape cannot be forged. */
const UNSAFE = /[\\\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu;

/**
 * What `terminalJson` escapes in JSON text: the unsafe characters JSON.stringify leaves raw (it
 * escapes C0 and lone surrogates itself, and the C0 left are its own layout, outside strings).
 */
const UNSAFE_IN_JSON = /[\u007F-\u009F\p{Cf}\p{Zl}\p{Zp}]/gu;

const SHORT: Readonly<Record<string, string>> = {
  "\\": "\\\\",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
};

const hex4 = (unit: number) => unit.toString(16).toUpperCase().padStart(4, "0");

/** `\uXXXX` for one UTF-16 code unit of `c`, or each of a pair (as JSON writes them). */
function unitEscapes(c: string): string {
  let escaped = "";
  for (let i = 0; i < c.length; i++) escaped += `\\u${hex4(c.charCodeAt(i))}`;
  return escaped;
}

/**
 * `text` with every unsafe character as a visible escape: `\n`, `\r`, `\t`, `\\` for a backslash,
 * `\uXXXX` for the others (`\u{XXXXX}` beyond U+FFFF). The result holds printable characters only.
 */
export function terminalText(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const short = SHORT[c];
    if (short !== undefined) return short;
    const code = c.codePointAt(0)!;
    return code > 0xffff ? `\\u{${code.toString(16).toUpperCase()}}` : `\\u${hex4(code)}`;
  });
}

/**
 * JSON text of `value` (as `JSON.stringify(value, null, indent)`) with the unsafe characters that
 * JSON leaves raw (DEL, C1, format characters, U+2028/U+2029) written as `\uXXXX` escapes: still
 * valid JSON that parses back to the same value, and inert on a terminal. They can only occur
 * inside strings (JSON's own layout is ASCII), so each escape stays inside its string.
 */
export function terminalJson(value: unknown, indent?: number): string {
  const json = JSON.stringify(value, null, indent);
  return json === undefined ? "null" : json.replace(UNSAFE_IN_JSON, unitEscapes);
}
