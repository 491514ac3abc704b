/** The dashboard in a real headless Chromium against a real Klym: login, live tasks, logs, cancel. */
import assert from "node:assert/strict";
import type { Page } from "puppeteer-core";
import { call, startKlym, type Status, waitFinal } from "../helpers/klym_process.ts";
import { DOCS, launchBrowser, SCREENSHOTS } from "../helpers/browser.ts";
import { connectAs } from "../helpers/ui_client.ts";
import { PATIENCE_MS } from "../helpers/patience.ts";

// The page's globals as these tests use them (Deno code is checked without the DOM library).
interface PageNode {
  readonly textContent: string | null;
}
declare const document: {
  getElementById(id: string): PageNode | null;
  querySelector(selector: string): PageNode | null;
  querySelectorAll(selector: string): ArrayLike<PageNode> & Iterable<PageNode>;
};

const TOKEN = "dashboard-test-token-0123456789";
const WAIT = { timeout: PATIENCE_MS };

async function logTexts(page: Page): Promise<{ stream: string; text: string }[]> {
  return await page.$$eval("#log .line", (lines) =>
    lines.map((line) => ({
      stream: line.getAttribute("data-stream") ?? "",
      text: line.querySelector(".text")?.textContent ?? "",
    })));
}

Deno.test("the dashboard logs in with the token, shows a task started over MCP with its live log, and cancels it", async (t) => {
  await using klym = await startKlym({ KLYM_AUTH_TOKEN: TOKEN });
  const client = await klym.connect();
  await using browser = await launchBrowser();
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 760 });

  await t.step("the page asks for the token, and a wrong one is refused", async () => {
    const response = await page.goto(`${klym.url}/ui`);
    assert.equal(new URL(page.url()).pathname, "/ui/login");
    const headers = response!.headers();
    assert.match(headers["content-security-policy"]!, /default-src 'self'/);
    assert.match(headers["content-security-policy"]!, /frame-ancestors 'none'/);
    assert.equal(headers["x-content-type-options"], "nosniff");
    await page.type("#token", "not-the-token-at-all");
    await Promise.all([page.waitForNavigation(WAIT), page.click("button[type=submit]")]);
    assert.match(await page.$eval(".error", (e) => e.textContent ?? ""), /Wrong token/);
    assert.equal((await browser.cookies()).length, 0);
  });

  await t.step("the right token opens a session cookie that is not the token", async () => {
    await page.type("#token", TOKEN);
    await Promise.all([page.waitForNavigation(WAIT), page.click("button[type=submit]")]);
    assert.equal(new URL(page.url()).pathname, "/ui");
    assert.ok(!page.url().includes(TOKEN), "the token stays out of the URL");
    const [cookie] = await browser.cookies();
    assert.equal(cookie?.name, "klym_ui");
    assert.equal(cookie?.httpOnly, true);
    assert.equal(cookie?.sameSite, "Strict");
    assert.notEqual(cookie?.value, TOKEN);
    assert.ok(!cookie?.value.includes(TOKEN));
    await page.waitForFunction(() => document.getElementById("conn")?.textContent === "live", WAIT);
  });

  const hello = await call(client, "start_async_agent_task", { kind: "hello", prompt: "hi" });
  const failing = await call(client, "start_async_agent_task", { kind: "fail" });
  await waitFinal(client, String(hello.task_id));
  await waitFinal(client, String(failing.task_id));
  const started = await call(client, "start_async_agent_task", {
    kind: "steps",
    prompt: "Index the graph",
    params: { steps: 600, tick_ms: 200 },
  });
  const id = String(started.task_id);

  await t.step(
    "a task started over MCP appears live, newest first, and the filter works",
    async () => {
      await page.waitForSelector(`tr[data-task-id="${id}"]`, WAIT);
      await page.waitForFunction(
        (id) => document.querySelector(`tr[data-task-id="${id}"] .st`)?.textContent === "running",
        WAIT,
        id,
      );
      const ids = await page.$$eval(
        "#tasks tbody tr",
        (rows) => rows.map((r) => r.getAttribute("data-task-id")),
      );
      assert.deepEqual(ids, [id, failing.task_id, hello.task_id]);
      await page.select("#status-filter", "failed");
      await page.waitForFunction(
        (id) =>
          document.querySelectorAll("#tasks tbody tr").length === 1 &&
          document.querySelector(`tr[data-task-id="${id}"]`) !== null,
        WAIT,
        failing.task_id,
      );
      await page.select("#status-filter", "");
      await page.waitForSelector(`tr[data-task-id="${id}"]`, WAIT);
      await page.waitForFunction(
        () => document.querySelector("#procs tbody td:nth-child(4)")?.textContent !== undefined,
        WAIT,
      );
      if (SCREENSHOTS) await page.screenshot({ path: `${DOCS}dashboard.png` });
    },
  );

  await t.step("the task page shows the log growing live", async () => {
    // Rows are redrawn live: click inside the page, where finding and clicking are one step.
    await page.waitForSelector(`tr[data-task-id="${id}"] a`, WAIT);
    await page.$eval(
      `tr[data-task-id="${id}"] a`,
      (a) => (a as unknown as { click(): void }).click(),
    );
    await page.waitForFunction(() => document.querySelectorAll("#log .line").length >= 3, WAIT);
    const first = (await logTexts(page)).length;
    await page.waitForFunction(
      (n) => document.querySelectorAll("#log .line").length >= n + 3,
      WAIT,
      first,
    );
    const lines = await logTexts(page);
    assert.deepEqual(lines.slice(0, 5), [
      { stream: "stdout", text: "step 1: indexed 128 nodes" },
      { stream: "stdout", text: "step 2: indexed 256 nodes" },
      { stream: "stdout", text: "step 3: indexed 384 nodes" },
      { stream: "stdout", text: "step 4: indexed 512 nodes" },
      { stream: "stderr", text: "step 4: slow reply from grynya" },
    ]);
    assert.match(
      await page.$eval("#task-progress-text", (e) => e.textContent ?? ""),
      /^\d+ \/ 600 · step \d+$/,
    );
    const serverPanel = await page.$eval("#server", (e) => e.textContent ?? "");
    assert.match(serverPanel, /Running1/);
    assert.match(serverPanel, /does not answer|answers/);
    assert.match(serverPanel, /MCP sampling/);
    if (Deno.build.os === "linux") {
      await page.waitForFunction(
        (id) =>
          [...document.querySelectorAll("#procs tbody tr")].some((row) =>
            row.textContent?.includes(id) && /\d+\.\d MB/.test(row.textContent)
          ),
        WAIT,
        id,
      );
    }
    if (SCREENSHOTS) await page.screenshot({ path: `${DOCS}task.png` });
  });

  await t.step("cancel from the page ends the task", async () => {
    await page.waitForSelector("#cancel:not([disabled])", WAIT);
    await page.$eval("#cancel", (b) => (b as unknown as { click(): void }).click());
    await page.waitForFunction(
      () => document.getElementById("task-status")?.textContent === "cancelled",
      WAIT,
    );
    const status = await call<Status>(client, "check_task_status", { task_id: id });
    assert.equal(status.status, "cancelled");
    assert.deepEqual(status.error, { code: "cancelled", message: "cancelled from the dashboard" });
    assert.equal(await page.$eval("#cancel", (b) => b.hasAttribute("disabled")), true);
  });
  await page.close();
});

Deno.test("markup printed by a task shows as text in the dashboard and runs nothing", async () => {
  await using klym = await startKlym();
  const client = await klym.connect();
  await using browser = await launchBrowser();
  const page = await browser.newPage();
  const dialogs: string[] = [];
  page.on("dialog", (dialog) => {
    dialogs.push(dialog.message());
    void dialog.dismiss();
  });
  const started = await call(client, "start_async_agent_task", { kind: "xss" });
  const id = String(started.task_id);
  const final = await waitFinal(client, id);
  assert.equal(final.status, "succeeded");

  // Without KLYM_AUTH_TOKEN (loopback only) the page opens a session by itself.
  await page.goto(`${klym.url}/ui#task/${id}`);
  await page.waitForFunction(
    () =>
      document.getElementById("task-status")?.textContent === "succeeded" &&
      document.querySelectorAll("#log .line").length === 3,
    WAIT,
  );
  const lines = await logTexts(page);
  assert.deepEqual(lines.map((l) => l.stream), ["stdout", "stderr", "stdout"]);
  assert.match(lines[0]!.text, /^<img src=x onerror=/);
  assert.match(lines[1]!.text, /^<script>globalThis.__klymPwned/);
  assert.match(lines[2]!.text, /<svg onload=/);
  assert.match(await page.$eval("#task-progress-text", (e) => e.textContent ?? ""), /<img src=x/);
  assert.match(await page.$eval("#task-result", (e) => e.textContent ?? ""), /<img src=x/);
  const injected = await page.evaluate(() => ({
    pwned: typeof (globalThis as { __klymPwned?: unknown }).__klymPwned,
    images: document.querySelectorAll("img").length,
    svgs: document.querySelectorAll("svg").length,
    scriptsInLog: document.querySelectorAll("#log script, #task-result script").length,
  }));
  assert.deepEqual(injected, { pwned: "undefined", images: 0, svgs: 0, scriptsInLog: 0 });
  assert.deepEqual(dialogs, []);
  await page.close();
});

Deno.test("in the dashboard Bob sees only his own tasks, and an admin sees everyone's with an Owner column", async (t) => {
  const tokens = {
    alice: "alice-dashboard-token-0123456789",
    bob: "bob-dashboard-token-0123456789",
    carol: "carol-dashboard-token-0123456789",
  };
  await using klym = await startKlym({
    KLYM_AUTH_TOKENS: Object.entries(tokens).map(([name, token]) => `${name}:${token}`).join(","),
    KLYM_ADMINS: "carol",
  });
  await using alice = await connectAs(klym.url, tokens.alice);
  await using bob = await connectAs(klym.url, tokens.bob);
  const sleep = { kind: "sleep", params: { ms: 60_000, tick_ms: 200 } };
  const aliceTask = String((await call(alice, "start_async_agent_task", sleep)).task_id);
  const bobTask = String((await call(bob, "start_async_agent_task", sleep)).task_id);
  await using browser = await launchBrowser();

  const logIn = async (token: string) => {
    // Each principal in its own browser context: its own cookie jar.
    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    await page.goto(`${klym.url}/ui`);
    await page.type("#token", token);
    await Promise.all([page.waitForNavigation(WAIT), page.click("button[type=submit]")]);
    await page.waitForFunction(() => document.getElementById("conn")?.textContent === "live", WAIT);
    return { page, context };
  };
  const rowIds = (page: Page) =>
    page.$$eval("#tasks tbody tr", (rows) => rows.map((r) => r.getAttribute("data-task-id")));

  await t.step("Bob's list holds his task and not Alice's, without an Owner column", async () => {
    const { page, context } = await logIn(tokens.bob);
    await page.waitForSelector(`tr[data-task-id="${bobTask}"]`, WAIT);
    // Alice's task changes while Bob watches: his list still never shows it.
    await call(alice, "start_async_agent_task", { kind: "hello" });
    await page.waitForFunction(
      () => document.getElementById("who")?.textContent === "bob",
      WAIT,
    );
    assert.deepEqual(await rowIds(page), [bobTask]);
    assert.equal(await page.$eval("#owner-head", (th) => th.hasAttribute("hidden")), true);
    assert.ok(!(await page.content()).includes(aliceTask), "Alice's id is nowhere on Bob's page");
    await page.goto(`${klym.url}/ui#task/${aliceTask}`);
    await page.waitForFunction(
      () => document.getElementById("task-outcome-title")?.textContent === "Not found",
      WAIT,
    );
    await context.close();
  });

  await t.step("the admin sees both tasks with their owners in an Owner column", async () => {
    const { page, context } = await logIn(tokens.carol);
    await page.waitForSelector(`tr[data-task-id="${aliceTask}"]`, WAIT);
    await page.waitForSelector(`tr[data-task-id="${bobTask}"]`, WAIT);
    assert.equal(await page.$eval("#owner-head", (th) => th.hasAttribute("hidden")), false);
    assert.equal(await page.$eval("#who", (e) => e.textContent), "carol · admin");
    const owners = await page.$$eval(
      "#tasks tbody tr",
      (rows) =>
        rows.map((r) => [r.getAttribute("data-task-id"), r.querySelector("td.owner")?.textContent]),
    );
    assert.deepEqual(
      owners.filter(([id]) => id === aliceTask || id === bobTask).sort(),
      [[aliceTask, "alice"], [bobTask, "bob"]].sort(),
    );
    if (SCREENSHOTS) await page.screenshot({ path: `${DOCS}dashboard_admin.png` });
    await context.close();
  });
  await call(alice, "cancel_task", { task_id: aliceTask });
  await call(bob, "cancel_task", { task_id: bobTask });
});
