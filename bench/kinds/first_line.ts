// deno-lint-ignore-file no-console -- task code logs through console
// Its first line is the figure: when the task's code began, by the server's clock.
export default function () {
  console.log("first");
  return null;
}
