// deno-lint-ignore-file no-console -- a benchmark prints its figures
/**
 * Guessing: 64 clients on one address send wrong bearer tokens to `/mcp` (then, to a fresh server,
 * wrong dashboard logins) as fast as the server answers, for 3 s each. Prints how many guesses were
 * checked (401) and how many refused unchecked (429), with the server's default throttle.
 * Run: deno task bench:guess. Nothing here passes or fails.
 */
import { startKlym } from "../tests/helpers/klym_process.ts";

const CLIENTS = 64;
const SECONDS = 3;
const TOKEN = "bench-guess-token-0123456789";

async function guess(
  label: string,
  send: (origin: string, i: number) => Promise<Response>,
): Promise<void> {
  await using klym = await startKlym({ KLYM_AUTH_TOKEN: TOKEN });
  const counts = new Map<number, number>();
  const end = performance.now() + SECONDS * 1000;
  let sent = 0;
  await Promise.all(Array.from({ length: CLIENTS }, async () => {
    while (performance.now() < end) {
      const response = await send(klym.url, sent++);
      await response.body?.cancel();
      counts.set(response.status, (counts.get(response.status) ?? 0) + 1);
    }
  }));
  const figure = (status: number) => {
    const n = counts.get(status) ?? 0;
    return `${n} (${(n / SECONDS).toFixed(0)}/s)`;
  };
  console.log(
    `${label.padEnd(10)} checked (401) ${figure(401)}  refused unchecked (429) ${figure(429)}  ` +
      `(n=${sent}, ${CLIENTS} clients, ${SECONDS} s)`,
  );
}

await guess("/mcp", (origin, i) =>
  fetch(`${origin}/mcp`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      authorization: `Bearer wrong-guess-${i}-0123456789`,
    },
    body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
  }));

await guess("/ui/login", (origin, i) =>
  fetch(`${origin}/ui/login`, {
    method: "POST",
    headers: { origin },
    body: new URLSearchParams({ token: `wrong-guess-${i}-0123456789` }),
    redirect: "manual",
  }));
