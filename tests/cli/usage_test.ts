/** `klym usage`: model spend per principal and model from the journal, a principal's own or an admin's all. */
import assert from "node:assert/strict";
import { connectAs, uiLogin } from "../helpers/ui_client.ts";
import { call, startKlym, waitFinal } from "../helpers/klym_process.ts";
import { startScriptedModel } from "../helpers/scripted_openai.ts";
import { klymCli } from "../helpers/klym_cli.ts";

const OPS = "ops-token-0123456789";
const ALICE = "alice-token-0123456789";

Deno.test("klym usage shows alice her model calls and tokens (tasks and llm_generate), and the admin everyone's", async () => {
  await using model = startScriptedModel(() => ({ text: "ok" }));
  await using klym = await startKlym({
    KLYM_AUTH_TOKENS: `ops:${OPS},alice:${ALICE}`,
    KLYM_ADMINS: "ops",
    KLYM_MODEL: "openai-compatible:scripted",
    KLYM_OPENAI_COMPATIBLE_URL: model.baseUrl,
  });
  for (const token of [ALICE, OPS]) {
    await using client = await connectAs(klym.url, token);
    const { task_id } = await call<{ task_id: string }>(client, "start_async_agent_task", {
      kind: "llm_once",
    });
    assert.equal((await waitFinal(client, task_id, 120_000)).status, "succeeded");
  }
  // A model call outside any task counts too: alice's llm_generate.
  {
    await using client = await connectAs(klym.url, ALICE);
    const answer = await call<{ text: string }>(client, "llm_generate", { prompt: "hi" });
    assert.equal(answer.text, "ok");
  }
  const env = (token: string) => ({ KLYM_URL: klym.url, KLYM_AUTH_TOKEN: token });

  const alice = await klymCli(["usage", "--json"], env(ALICE));
  assert.equal(alice.code, 0, alice.stderr);
  const spend = JSON.parse(alice.stdout);
  assert.equal(spend.window_s, 86_400);
  assert.deepEqual(
    spend.rows.map((r: Record<string, unknown>) => [r.principal, r.model, r.calls, r.refusals]),
    [["alice", "openai-compatible:scripted", 2, 0]],
  );
  assert.equal(spend.rows[0].output_tokens, 20);

  const ops = await klymCli(["usage", "--window", "90m"], env(OPS));
  assert.equal(ops.code, 0, ops.stderr);
  assert.match(ops.stdout, /^PRINCIPAL\s+MODEL\s+CALLS\s+REFUSED\s+TOKENS IN\s+TOKENS OUT$/m);
  assert.match(ops.stdout, /^alice\s+openai-compatible:scripted\s+2\s+0\s+\d+\s+20$/m);
  assert.match(ops.stdout, /^ops\s+openai-compatible:scripted\s+1\s+0\s+\d+\s+10$/m);

  // The dashboard's server panel shows the same spend: alice's own.
  const panel = await fetch(`${klym.url}/ui/api/server`, {
    headers: { cookie: await uiLogin(klym.url, ALICE) },
  });
  assert.deepEqual(
    (await panel.json()).spend.rows.map((r: { principal: string }) => r.principal),
    ["alice"],
  );

  const badWindow = await klymCli(["usage", "--window", "soon"], env(ALICE));
  assert.equal(badWindow.code, 2);
  assert.match(badWindow.stderr, /"--window" must be seconds or a number with s, m, h or d/);
  // Past KLYM_SPEND_RETENTION_DAYS (90): the server refuses, naming the knob.
  const tooLong = await klymCli(["usage", "--window", "91d"], env(ALICE));
  assert.equal(tooLong.code, 2);
  assert.match(tooLong.stderr, /400 to \/usage: .*KLYM_SPEND_RETENTION_DAYS is 90/);
  const noToken = await klymCli(["usage"], { KLYM_URL: klym.url });
  assert.equal(noToken.code, 2);
  assert.match(noToken.stderr, /refused the request: set KLYM_AUTH_TOKEN/);
});
