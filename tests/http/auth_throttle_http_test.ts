/**
 * Throttled guessing over real HTTP: wrong bearer tokens and wrong dashboard logins from one
 * address, in parallel, beyond its burst. A second, clean address is the server's IPv6 loopback
 * (the server binds `::`, which takes IPv4 too), when the machine has one.
 */
import assert from "node:assert/strict";
import { startKlym } from "../helpers/klym_process.ts";
import { RawMcp } from "../helpers/raw_mcp.ts";

const TOKEN = "throttle-test-token-0123456789";

const IPV6 = (() => {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
})();

/** A server on `::` (or 127.0.0.1 without IPv6) and its two origins: IPv4 and IPv6 loopback. */
async function start(env: Record<string, string>) {
  const klym = await startKlym({
    KLYM_AUTH_TOKEN: TOKEN,
    KLYM_HOST: IPV6 ? "::" : "127.0.0.1",
    ...env,
  });
  const port = new URL(klym.url).port;
  return { klym, v4: `http://127.0.0.1:${port}`, v6: `http://[::1]:${port}` };
}

interface Answer {
  status: number;
  retryAfter: string | null;
  body: string;
  cookie: string | null;
}

async function answer(response: Response): Promise<Answer> {
  return {
    status: response.status,
    retryAfter: response.headers.get("retry-after"),
    body: await response.text(),
    cookie: response.headers.get("set-cookie"),
  };
}

/** A 2025 `initialize` on `/mcp`, with `token` as the bearer token (none when `undefined`). */
function mcp(origin: string, token: string | undefined): Promise<Answer> {
  const clientInfo = { name: "throttle-test", version: "1" };
  return new RawMcp(origin, token).post({
    id: 1,
    method: "initialize",
    params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo },
  }).then(answer);
}

/** A dashboard login, with the dashboard's own Origin as a browser sends it. */
function login(origin: string, token: string): Promise<Answer> {
  return fetch(`${origin}/ui/login`, {
    method: "POST",
    headers: { origin },
    body: new URLSearchParams({ token }),
    redirect: "manual",
  }).then(answer);
}

function count(answers: Answer[], status: number): number {
  return answers.filter((a) => a.status === status).length;
}

/** A refusal's Retry-After: about a minute, with KLYM_AUTH_FAILURES_PER_MIN=1 and a dry bucket. */
function retryAfter(refused: Answer): number {
  const seconds = Number(refused.retryAfter);
  assert.ok(seconds >= 50 && seconds <= 60, `Retry-After ${refused.retryAfter}`);
  return seconds;
}

Deno.test("wrong bearer tokens beyond the burst get 429 with Retry-After, and then the right token waits too", async (t) => {
  const { klym, v4, v6 } = await start({
    KLYM_AUTH_FAILURES_BURST: "5",
    KLYM_AUTH_FAILURES_PER_MIN: "1",
  });
  await using _klym = klym;

  await t.step("a clean address's right token gets in at once", async () => {
    assert.equal((await mcp(v4, TOKEN)).status, 200);
  });

  await t.step(
    "20 wrong tokens at once: 5 are checked, 15 refused until the next token",
    async () => {
      const answers = await Promise.all(
        Array.from({ length: 20 }, (_, i) => mcp(v4, `wrong-token-${i}-0123456789`)),
      );
      assert.equal(count(answers, 401), 5);
      assert.equal(count(answers, 429), 15);
      for (const refused of answers.filter((a) => a.status === 429)) {
        const seconds = retryAfter(refused);
        assert.match(
          JSON.parse(refused.body).error.message,
          new RegExp(`from this address \\(KLYM_AUTH_FAILURES_BURST, .*\\): retry in ${seconds} s`),
        );
      }
    },
  );

  await t.step("the right token from that address is refused without being checked", async () => {
    const right = await mcp(v4, TOKEN);
    assert.equal(right.status, 429);
    retryAfter(right);
    // No credential is no guess: answered 401 as before, spending nothing.
    assert.equal((await mcp(v4, undefined)).status, 401);
    // The dashboard's login counts against the same address.
    const page = await login(v4, TOKEN);
    assert.equal(page.status, 429);
    assert.equal(page.cookie, null);
    // /healthz stays open, but says nothing more to the throttled address, right token or not.
    const health = await fetch(`${v4}/healthz`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.deepEqual(await health.json(), { ok: true });
  });

  await t.step({
    name: "a clean address's right token still gets in at once",
    ignore: !IPV6,
    fn: async () => {
      assert.equal((await mcp(v6, TOKEN)).status, 200);
      const health = await fetch(`${v6}/healthz`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      assert.ok("tasks" in await health.json());
    },
  });

  await t.step("one warning when the address starts being throttled, not one per refusal", () => {
    const warnings = klym.logs.filter((line) => line.includes("are throttled"));
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.match(warnings[0]!, /127\.0\.0\.0\/8/);
  });
});

Deno.test("wrong dashboard logins beyond the burst get 429 and a page saying when to retry", async (t) => {
  const { klym, v4, v6 } = await start({
    KLYM_AUTH_FAILURES_BURST: "3",
    KLYM_AUTH_FAILURES_PER_MIN: "1",
  });
  await using _klym = klym;

  await t.step("10 wrong logins at once: 3 are checked, 7 refused", async () => {
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => login(v4, `wrong-token-${i}-0123456789`)),
    );
    assert.equal(count(answers, 401), 3);
    for (const wrong of answers.filter((a) => a.status === 401)) {
      assert.match(wrong.body, /Wrong token: use the value of KLYM_AUTH_TOKEN/);
    }
    assert.equal(count(answers, 429), 7);
    for (const refused of answers.filter((a) => a.status === 429)) {
      const seconds = retryAfter(refused);
      assert.match(refused.body, new RegExp(`Too many failed logins: try again in ${seconds} s`));
      assert.match(refused.body, /<form method="post" action="\/ui\/login"/);
    }
    assert.ok(answers.every((a) => a.cookie === null));
  });

  await t.step(
    "the right token from that address waits, on the dashboard and on /mcp",
    async () => {
      const page = await login(v4, TOKEN);
      assert.equal(page.status, 429);
      assert.equal(page.cookie, null);
      assert.equal((await mcp(v4, TOKEN)).status, 429);
    },
  );

  await t.step({
    name: "a clean address logs in at once",
    ignore: !IPV6,
    fn: async () => {
      const ok = await login(v6, TOKEN);
      assert.equal(ok.status, 303);
      assert.match(ok.cookie ?? "", /^klym_ui=/);
    },
  });
});

Deno.test({
  name:
    "with every address's failures together over the total, an address that failed recently waits and a clean one is checked",
  ignore: !IPV6,
  fn: async () => {
    const { klym, v4, v6 } = await start({
      KLYM_AUTH_FAILURES_BURST: "5",
      KLYM_AUTH_FAILURES_PER_MIN: "1",
      KLYM_AUTH_FAILURES_ALL_PER_MIN: "2",
    });
    await using _klym = klym;
    assert.equal((await mcp(v4, "wrong-token-a-0123456789")).status, 401);
    assert.equal((await mcp(v4, "wrong-token-b-0123456789")).status, 401);
    const waits = await mcp(v4, TOKEN);
    assert.equal(waits.status, 429);
    assert.match(JSON.parse(waits.body).error.message, /KLYM_AUTH_FAILURES_ALL_PER_MIN/);
    assert.equal((await mcp(v6, TOKEN)).status, 200, "a clean address is checked");
    assert.equal((await mcp(v6, "wrong-token-c-0123456789")).status, 401);
    assert.equal((await mcp(v6, TOKEN)).status, 429, "one strike while the total is spent");
    assert.equal(klym.logs.filter((line) => line.includes("from all addresses reached")).length, 1);
  },
});

Deno.test("after the Retry-After it announced, an address's right token gets in", async () => {
  const { klym, v4 } = await start({
    KLYM_AUTH_FAILURES_BURST: "1",
    KLYM_AUTH_FAILURES_PER_MIN: "60",
  });
  await using _klym = klym;
  assert.equal((await mcp(v4, "wrong-token-0123456789")).status, 401);
  const refused = await mcp(v4, TOKEN);
  assert.equal(refused.status, 429);
  assert.equal(refused.retryAfter, "1");
  // Waiting what the server announced is the behaviour under test: one token a second.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.equal((await mcp(v4, TOKEN)).status, 200);
});
