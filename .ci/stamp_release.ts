/**
 * The release's MCP install files, from the checkout's manifest.json and server.json:
 *
 *   deno run -A .ci/stamp_release.ts manifest VERSION          the bundle's manifest.json (stdout)
 *   deno run -A .ci/stamp_release.ts server VERSION DIST TAG   server.json (stdout), one mcpb
 *                                                              package per DIST/klym-*.mcpb
 */
const [what, version, dist, tag] = Deno.args;
const print = (value: unknown) =>
  Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(value, null, 2) + "\n"));
const read = (name: string) =>
  JSON.parse(Deno.readTextFileSync(new URL(`../${name}`, import.meta.url)));
if (!version || !/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(version)) {
  throw new Error(`Give a release version x.y.z, received ${JSON.stringify(version)}`);
}
if (what === "manifest") {
  print({ ...read("manifest.json"), version });
} else if (what === "server" && dist && tag) {
  const server = read("server.json");
  const template = server.packages[0];
  const bundles = [...Deno.readDirSync(dist)].map((e) => e.name).filter((n) => n.endsWith(".mcpb"))
    .sort();
  if (bundles.length === 0) throw new Error(`No .mcpb bundles in ${dist}`);
  const base = template.identifier.slice(0, template.identifier.indexOf("/releases/download/"));
  const packages = await Promise.all(bundles.map(async (name) => {
    const bytes = await Deno.readFile(`${dist}/${name}`);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    return {
      ...template,
      identifier: `${base}/releases/download/${tag}/${name}`,
      version,
      fileSha256: Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
    };
  }));
  print({ ...server, version, packages });
} else {
  throw new Error("Usage: stamp_release.ts manifest VERSION | server VERSION DIST TAG");
}
