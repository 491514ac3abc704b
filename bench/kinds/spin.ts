// deno-lint-ignore-file no-console -- task code logs through console
// A CPU loop that never yields: it cannot hear its ctx.signal.
export default function () {
  console.log("spinning");
  while (true) {
    // burn
  }
}
