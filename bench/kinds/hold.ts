// deno-lint-ignore-file no-console -- task code logs through console
// Holds `params.mb` MB (default 50), every page touched, for `params.ms` (default 60 s).
export default async function (ctx: { params: { mb?: number; ms?: number }; signal: AbortSignal }) {
  const held = new Uint8Array((ctx.params.mb ?? 50) * 1_000_000).fill(1);
  console.log("holding");
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ctx.params.ms ?? 60_000);
    ctx.signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return held.length;
}
