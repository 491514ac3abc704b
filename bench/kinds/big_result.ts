// Returns a string of `params.bytes` characters (default 1,000,000).
export default function (ctx: { params: { bytes?: number } }) {
  return "r".repeat(ctx.params.bytes ?? 1_000_000);
}
