/** Terminal-safe text: every class of character that could move, reorder or hide what is shown. */
import assert from "node:assert/strict";
import { terminalJson, terminalText } from "../../src/cli/terminal_text.ts";

/** Each class with a few of its characters and how the text mode shows them. */
const CLASSES: readonly [string, readonly [string, string][]][] = [
  ["line breaks and tabs", [["\n", "\\n"], ["\r", "\\r"], ["\t", "\\t"]]],
  ["C0 controls", [["\0", "\\u0000"], ["\x07", "\\u0007"], ["\x1b", "\\u001B"], [
    "\x1f",
    "\\u001F",
  ]]],
  ["DEL", [["\x7f", "\\u007F"]]],
  ["C1 controls", [["\x80", "\\u0080"], ["\x85", "\\u0085"], ["\x9b", "\\u009B"], [
    "\x9f",
    "\\u009F",
  ]]],
  ["bidi embeddings and overrides", [
    ["\u202a", "\\u202A"],
    ["\u202b", "\\u202B"],
    ["\u202c", "\\u202C"],
    ["\u202d", "\\u202D"],
    ["\u202e", "\\u202E"],
  ]],
  ["bidi isolates", [
    ["\u2066", "\\u2066"],
    ["\u2067", "\\u2067"],
    ["\u2068", "\\u2068"],
    ["\u2069", "\\u2069"],
  ]],
  ["bidi marks", [["\u200e", "\\u200E"], ["\u200f", "\\u200F"], ["\u061c", "\\u061C"]]],
  ["line and paragraph separators", [["\u2028", "\\u2028"], ["\u2029", "\\u2029"]]],
  ["zero-width characters", [
    ["\u200b", "\\u200B"],
    ["\u200c", "\\u200C"],
    ["\u200d", "\\u200D"],
    ["\u2060", "\\u2060"],
    ["\ufeff", "\\uFEFF"],
  ]],
  ["invisible tags beyond U+FFFF", [["\u{e0041}", "\\u{E0041}"]]],
  ["lone surrogates", [["\ud800", "\\uD800"], ["\udfff", "\\uDFFF"]]],
];

Deno.test("terminalText shows every unsafe class as a visible escape, keeping the text around it", () => {
  for (const [name, samples] of CLASSES) {
    for (const [raw, shown] of samples) {
      assert.equal(terminalText(`a${raw}b`), `a${shown}b`, `${name}: U+${raw.codePointAt(0)}`);
    }
  }
});

Deno.test("terminalText leaves printable text alone, accents, CJK and emoji included", () => {
  const text = "plain ASCII ~!@#$%^&*()_+ é ß 中文 עברית العربية 👩‍ 🙂 ½ \u00a0space";
  assert.equal(
    terminalText("plain ASCII ~!@#$%^&*()_+ é ß 中文 🙂 ½"),
    "plain ASCII ~!@#$%^&*()_+ é ß 中文 🙂 ½",
  );
  // The zero-width joiner inside the emoji sequence is escaped, the rest stays as it was.
  assert.equal(terminalText(text), text.replace("\u200d", "\\u200D"));
});

Deno.test("terminalText escapes the backslash, so a printed escape cannot be forged", () => {
  assert.equal(terminalText("\\n"), "\\\\n");
  assert.notEqual(terminalText("\\n"), terminalText("\n"));
  assert.equal(terminalText("C:\\dir\\u202E"), "C:\\\\dir\\\\u202E");
});

Deno.test("terminalText output is one row of printable characters whatever the input", () => {
  let every = "";
  for (let code = 0; code <= 0xffff; code++) every += String.fromCharCode(code);
  const shown = terminalText(every);
  assert.doesNotMatch(shown, /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u);
  assert.ok(!shown.includes("\n"));
});

Deno.test("terminalJson escapes C1, bidi, separators and zero-width characters as \\uXXXX and parses back", () => {
  const value = {
    error: "boom\nstatus    succeeded\nresult {}",
    c1: "\x85\x9b31m",
    del: "\x7f",
    bidi: "abc\u202edcba\u2066x\u2069\u200f\u061c",
    separators: "a\u2028b\u2029c",
    zero: "\u200b\u200c\u200d\u2060\ufeff",
    tag: "\u{e0041}",
    [`key\u202e`]: ["\x9f"],
  };
  for (const indent of [undefined, 2]) {
    const json = terminalJson(value, indent);
    assert.doesNotMatch(json, /[\u007f-\u009f\p{Cf}\p{Zl}\p{Zp}]/u, "no raw unsafe character");
    assert.deepEqual(JSON.parse(json), value);
  }
  assert.ok(terminalJson(value).includes('"bidi":"abc\\u202Edcba\\u2066x\\u2069\\u200F\\u061C"'));
  assert.ok(terminalJson(value).includes('"tag":"\\uDB40\\uDC41"'));
  assert.equal(terminalJson({ a: [1, "x"] }, 2), JSON.stringify({ a: [1, "x"] }, null, 2));
  assert.equal(terminalJson(undefined), "null");
});
