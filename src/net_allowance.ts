/** Deno's net permission compares names: allow exactly the host and port a URL names. */
export function netAllowance(url: string): string {
  const u = new URL(url);
  const port = u.port || (u.protocol === "https:" ? "443" : "80");
  return `${u.hostname}:${port}`;
}
