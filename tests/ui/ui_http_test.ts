/** The dashboard's HTTP face without a browser: login, guards, headers, cancel, the event stream. */
import assert from "node:assert/strict";
import { call, startKlym, type Status } from "../helpers/klym_process.ts";
import { readEvents } from "../helpers/ui_client.ts";

const TOKEN = "ui-http-test-token-0123456789";

/** fetch() sets Host itself, so a forged Host header needs a raw request. */
async function rawStatus(url: string, path: string, host: string, cookie: string): Promise<number> {
  const { hostname, port } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const request =
    `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nCookie: ${cookie}\r\nConnection: close\r\n\r\n`;
  await conn.write(new TextEncoder().encode(request));
  const buf = new Uint8Array(1024);
  const n = await conn.read(buf);
  conn.close();
  return Number(new TextDecoder().decode(buf.subarray(0, n ?? 0)).split(" ")[1]);
}

Deno.test("the dashboard's login keeps the token out of URLs and logs and refuses cross-origin requests", async (t) => {
  await using klym = await startKlym({ KLYM_AUTH_TOKEN: TOKEN });
  const origin = klym.url;
  let cookie = "";

  await t.step(
    "pages carry a strict CSP and nosniff; without a session the page sends to login",
    async () => {
      const page = await fetch(`${origin}/ui`, { redirect: "manual" });
      await page.body?.cancel();
      assert.equal(page.status, 303);
      assert.equal(page.headers.get("location"), "/ui/login");
      const login = await fetch(`${origin}/ui/login`);
      const html = await login.text();
      assert.match(html, /<form method="post" action="\/ui\/login"/);
      const csp = login.headers.get("content-security-policy") ?? "";
      for (const rule of ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"]) {
        assert.ok(csp.includes(rule), `CSP has ${rule}`);
      }
      assert.ok(!csp.includes("unsafe-inline"));
      assert.equal(login.headers.get("x-content-type-options"), "nosniff");
      assert.ok(!/<script>/.test(html), "no inline script");
      for (const path of ["/ui/api/tasks", "/ui/events", "/ui/api/server"]) {
        const api = await fetch(`${origin}${path}`);
        assert.equal(api.status, 401, path);
        assert.match((await api.json()).error, /Not logged in/);
      }
    },
  );

  await t.step(
    "a token in the URL logs nobody in; a login without our Origin is refused",
    async () => {
      const viaUrl = await fetch(`${origin}/ui/login?token=${TOKEN}`);
      await viaUrl.body?.cancel();
      assert.equal(viaUrl.headers.get("set-cookie"), null);
      const noOrigin = await fetch(`${origin}/ui/login`, {
        method: "POST",
        body: new URLSearchParams({ token: TOKEN }),
        redirect: "manual",
      });
      await noOrigin.body?.cancel();
      assert.equal(noOrigin.status, 403);
      assert.equal(noOrigin.headers.get("set-cookie"), null);
      const otherOrigin = await fetch(`${origin}/ui/login`, {
        method: "POST",
        headers: { origin: "http://evil.example" },
        body: new URLSearchParams({ token: TOKEN }),
        redirect: "manual",
      });
      await otherOrigin.body?.cancel();
      assert.equal(otherOrigin.status, 403);
      const wrong = await fetch(`${origin}/ui/login`, {
        method: "POST",
        headers: { origin },
        body: new URLSearchParams({ token: "wrong-token-wrong-token" }),
        redirect: "manual",
      });
      assert.equal(wrong.status, 401);
      assert.match(await wrong.text(), /Wrong token/);
      assert.equal(wrong.headers.get("set-cookie"), null);
      const huge = await fetch(`${origin}/ui/login`, {
        method: "POST",
        headers: { origin },
        body: new URLSearchParams({ token: "x".repeat(10_000) }),
      });
      assert.equal(huge.status, 413);
      await huge.body?.cancel();
    },
  );

  await t.step(
    "the right token gives an HttpOnly SameSite=Strict cookie holding a random id",
    async () => {
      const ok = await fetch(`${origin}/ui/login`, {
        method: "POST",
        headers: { origin },
        body: new URLSearchParams({ token: TOKEN }),
        redirect: "manual",
      });
      await ok.body?.cancel();
      assert.equal(ok.status, 303);
      const setCookie = ok.headers.get("set-cookie") ?? "";
      assert.match(setCookie, /^klym_ui=[A-Za-z0-9_-]{40,}; Path=\/ui; HttpOnly; SameSite=Strict/);
      assert.ok(!setCookie.includes(TOKEN));
      cookie = setCookie.split(";")[0]!;
      const tasks = await fetch(`${origin}/ui/api/tasks`, { headers: { cookie } });
      assert.equal(tasks.status, 200);
      assert.deepEqual((await tasks.json()).tasks, []);
      assert.equal(await rawStatus(origin, "/ui/api/tasks", "evil.example", cookie), 403);
      assert.equal(await rawStatus(origin, "/ui", "evil.example", cookie), 403);
      assert.equal(await rawStatus(origin, "/ui/api/tasks", new URL(origin).host, cookie), 200);
    },
  );

  await t.step("cancel needs the session and our own origin", async () => {
    const client = await klym.connect();
    const started = await call(client, "start_async_agent_task", {
      kind: "sleep",
      params: { ms: 60_000 },
    });
    const url = `${origin}/ui/api/tasks/${started.task_id}/cancel`;
    for (
      const [headers, status] of [
        [{ origin }, 401],
        [{ cookie }, 403],
        [{ cookie, origin: "http://localhost:1" }, 403],
      ] as const
    ) {
      const refused = await fetch(url, { method: "POST", headers });
      await refused.body?.cancel();
      assert.equal(refused.status, status, JSON.stringify(headers));
    }
    const still = await call<Status>(client, "check_task_status", { task_id: started.task_id });
    assert.ok(["queued", "running"].includes(still.status));
    const cancelled = await fetch(url, { method: "POST", headers: { cookie, origin } });
    assert.deepEqual(await cancelled.json(), { task_id: started.task_id, status: "cancelled" });
    const missing = await fetch(`${origin}/ui/api/tasks/t_nope`, { headers: { cookie } });
    assert.equal(missing.status, 404);
    assert.match((await missing.json()).error, /No task "t_nope"/);
  });

  await t.step("the event stream announces a new task and sends the server's figures", async () => {
    const client = await klym.connect();
    const events = await fetch(`${origin}/ui/events`, { headers: { cookie } });
    assert.equal(events.headers.get("content-type"), "text/event-stream; charset=utf-8");
    let id = "";
    const seen = await readEvents(events.body!, (got) => {
      if (got.length === 1 && !id) {
        void call(client, "start_async_agent_task", { kind: "hello" }).then((s) =>
          id = String(s.task_id)
        );
      }
      return got.some((e) => e.event === "server") &&
        got.some((e) => e.event === "change" && id !== "" && e.data.includes(id));
    });
    assert.equal(seen[0]!.event, "hello");
    const server = JSON.parse(seen.find((e) => e.event === "server")!.data);
    assert.equal(typeof server.counts.running, "number");
    assert.equal(server.grynya.url, "http://127.0.0.1:8000/sse");
    assert.equal(typeof server.grynya.reachable, "boolean");
  });

  await t.step("the token never appears in the server's log", () => {
    assert.ok(klym.logs.length > 0);
    assert.ok(!klym.logs.some((line) => line.includes(TOKEN)));
  });
});
