// deno-lint-ignore-file no-console -- task code logs through console
// Waits on a timer for `params.ms` (default 60 s), or until cancelled.
export default async function (ctx: { params: { ms?: number }; signal: AbortSignal }) {
  console.log("waiting");
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ctx.params.ms ?? 60_000);
    ctx.signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return null;
}
