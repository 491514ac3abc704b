/**
 * The documentation's links hold: every relative link and `#anchor` in README.md and docs/*.md
 * leads to a file that exists and, for an anchor, to a heading of that file, named as GitHub names
 * its anchors.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

/** GitHub's anchor for a heading's text: lower case, punctuation dropped, each space a hyphen. */
export function slug(heading: string): string {
  const text = heading
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1") // a link shows its text
    .replace(/[`*]/g, "");
  return text.trim().toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "").replace(/ /g, "-");
}

/** A page's text with its fenced code blocks blanked (their lines kept, so line numbers hold). */
function withoutFences(text: string): string {
  let inFence = false;
  return text.split("\n").map((line) => {
    if (/^\s*```/.test(line)) {
      inFence = !inFence;
      return "";
    }
    return inFence ? "" : line;
  }).join("\n");
}

/** The anchors of a page's headings, a repeated one numbered as GitHub does (`x`, `x-1`, …). */
export function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const found = new Set<string>();
  for (const line of withoutFences(text).split("\n")) {
    const heading = line.match(/^#{1,6}\s+(.*?)\s*#*\s*$/)?.[1];
    if (heading === undefined) continue;
    const base = slug(heading);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    found.add(count === 0 ? base : `${base}-${count}`);
  }
  return found;
}

/** The relative link targets of a page (code spans and blocks left out), with their line. */
export function links(text: string): { target: string; line: number }[] {
  const prose = withoutFences(text).replace(/`[^`\n]*`/g, (code) => " ".repeat(code.length));
  const out: { target: string; line: number }[] = [];
  for (const match of prose.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
    const target = match[1]!;
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:, …
    out.push({ target, line: prose.slice(0, match.index).split("\n").length });
  }
  return out;
}

/**
 * Every link of the given pages (repository-relative path → text) that leads nowhere, as
 * `page:line: target (why)`. Targets are resolved from the page's folder; a page not given is read
 * through `read` when an anchor in it is asked for.
 */
export function brokenLinks(
  pages: ReadonlyMap<string, string>,
  exists: (path: string) => boolean,
  read: (path: string) => string,
): string[] {
  const anchorsOf = new Map<string, Set<string>>();
  const headings = (path: string) => {
    let found = anchorsOf.get(path);
    if (!found) anchorsOf.set(path, found = anchors(pages.get(path) ?? read(path)));
    return found;
  };
  const broken: string[] = [];
  for (const [page, text] of pages) {
    for (const { target, line } of links(text)) {
      const hash = target.indexOf("#");
      const file = hash === -1 ? target : target.slice(0, hash);
      const anchor = hash === -1 ? undefined : decodeURIComponent(target.slice(hash + 1));
      const path = file === "" ? page : normalize(join(dirname(page), decodeURIComponent(file)));
      const where = `${page}:${line}: ${target}`;
      if (path.startsWith("..")) broken.push(`${where} (outside the repository)`);
      else if (!pages.has(path) && !exists(path)) broken.push(`${where} (no file ${path})`);
      else if (anchor !== undefined && !path.endsWith(".md")) {
        broken.push(`${where} (an anchor in a file that is not Markdown)`);
      } else if (anchor !== undefined && !headings(path).has(anchor)) {
        broken.push(`${where} (no heading "${anchor}" in ${path})`);
      }
    }
  }
  return broken;
}

function documentation(): Map<string, string> {
  const pages = new Map<string, string>();
  pages.set("README.md", readFileSync(join(ROOT, "README.md"), "utf8"));
  for (const name of readdirSync(join(ROOT, "docs")).filter((n) => n.endsWith(".md")).sort()) {
    pages.set(`docs/${name}`, readFileSync(join(ROOT, "docs", name), "utf8"));
  }
  return pages;
}

Deno.test("every relative link and anchor in README.md and docs/ leads to a file and heading that exist", () => {
  const pages = documentation();
  assert.ok(pages.size > 2, "the README and the docs pages are read");
  assert.ok(links(pages.get("README.md")!).some((l) => l.target.startsWith("docs/")));
  assert.deepEqual(
    brokenLinks(
      pages,
      (path) => existsSync(join(ROOT, path)),
      (path) => readFileSync(join(ROOT, path), "utf8"),
    ),
    [],
  );
});

Deno.test("every docs/ page is linked from the README", () => {
  const pages = documentation();
  const linked = new Set(links(pages.get("README.md")!).map((l) => l.target.split("#")[0]));
  assert.deepEqual([...pages.keys()].filter((p) => p !== "README.md" && !linked.has(p)), []);
});

Deno.test("anchors follow GitHub's rules: lower case, punctuation dropped, repeats numbered", () => {
  assert.equal(slug("MCP's own tasks"), "mcps-own-tasks");
  assert.equal(slug("1. The first run: `report`"), "1-the-first-run-report");
  assert.equal(slug("Reaching grynya"), "reaching-grynya");
  assert.equal(slug("snake_case and a-b — c"), "snake_case-and-a-b--c");
  assert.equal(slug("Тест Ünïcode"), "тест-ünïcode");
  assert.deepEqual([...anchors("# A\n\n## A\n```\n# Not a heading\n```\n## A")], [
    "a",
    "a-1",
    "a-2",
  ]);
});

Deno.test("a link to a missing file, a missing heading or outside the repository is reported with its line", () => {
  const pages = new Map([
    ["README.md", "# Top\n\nSee [x](docs/x.md#there), [y](docs/y.md) and [top](#top).\n"],
    ["docs/x.md", "# X\n\n[up](../README.md#nowhere) [out](../../etc.md) `[code](gone.md)`\n"],
  ]);
  assert.deepEqual(brokenLinks(pages, () => false, () => ""), [
    'README.md:3: docs/x.md#there (no heading "there" in docs/x.md)',
    "README.md:3: docs/y.md (no file docs/y.md)",
    'docs/x.md:3: ../README.md#nowhere (no heading "nowhere" in README.md)',
    "docs/x.md:3: ../../etc.md (outside the repository)",
  ]);
});
