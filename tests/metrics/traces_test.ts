/**
 * Klym's spans reach an OTLP collector (a stand-in on 127.0.0.1, OTLP/HTTP with JSON) through
 * Deno's built-in OpenTelemetry: one task's span tree, linked to the client's trace context.
 */
import assert from "node:assert/strict";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { startKlym, waitFinal } from "../helpers/klym_process.ts";
import { startScriptedModel } from "../helpers/scripted_openai.ts";
import { startMemoryPeer } from "../peers/peers.ts";

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes?: { key: string; value: Record<string, unknown> }[];
  links?: { traceId: string; spanId: string }[];
}

/** An OTLP/HTTP JSON receiver: every span it was sent. */
function startCollector() {
  const spans: OtlpSpan[] = [];
  let changed = Promise.withResolvers<void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const body = await req.text();
    if (new URL(req.url).pathname === "/v1/traces") {
      const data = JSON.parse(body) as {
        resourceSpans?: { scopeSpans?: { spans?: OtlpSpan[] }[] }[];
      };
      for (const rs of data.resourceSpans ?? []) {
        for (const ss of rs.scopeSpans ?? []) spans.push(...ss.spans ?? []);
      }
      changed.resolve();
      changed = Promise.withResolvers<void>();
    }
    return Response.json({});
  });
  return {
    url: `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`,
    spans,
    /** Waits until `found` finds something among the spans received. */
    async until<T>(found: () => T | undefined, timeoutMs = 30_000): Promise<T> {
      const deadline = Date.now() + timeoutMs;
      for (let hit = found();; hit = found()) {
        if (hit !== undefined) return hit;
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new Error(`not received; spans: ${spans.map((s) => s.name).join(", ")}`);
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          changed.promise,
          new Promise((r) => timer = setTimeout(r, left)),
        ]);
        clearTimeout(timer);
      }
    },
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

const attribute = (span: OtlpSpan, key: string) =>
  Object.values(span.attributes?.find((a) => a.key === key)?.value ?? {})[0];

Deno.test("a task's spans reach the collector as one tree under the client's traceparent", async () => {
  await using collector = startCollector();
  await using model = startScriptedModel(() => ({ text: "traced" }));
  const dir = Deno.makeTempDirSync({ prefix: "klym-traces-" });
  const peer = await startMemoryPeer({ transport: "sse", memoryFile: `${dir}/memory.jsonl` });
  try {
    await using klym = await startKlym({
      OTEL_DENO: "true",
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
      OTEL_SERVICE_NAME: "klym",
      OTEL_BSP_SCHEDULE_DELAY: "100",
      KLYM_MODEL: "openai-compatible:scripted",
      KLYM_OPENAI_COMPATIBLE_URL: model.baseUrl,
      KLYM_GRYNYA_URL: peer.url,
    });
    const client = new Client({ name: "traced-client", version: "1.0.0" });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${klym.url}/mcp`)));
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const parentId = "00f067aa0ba902b7";
    const started = await client.callTool({
      name: "start_async_agent_task",
      arguments: { kind: "traced" },
      _meta: { traceparent: `00-${traceId}-${parentId}-01` },
    });
    const taskId = (started.structuredContent as { task_id: string }).task_id;
    const final = await waitFinal(client, taskId, 120_000);
    assert.equal(final.status, "succeeded", JSON.stringify(final.error));
    await client.close();

    const task = await collector.until(() =>
      collector.spans.find((s) => s.name === "klym.task" && attribute(s, "klym.task.id") === taskId)
    );
    assert.equal(task.traceId.toLowerCase(), traceId);
    assert.equal(task.parentSpanId?.toLowerCase(), parentId);
    assert.equal(task.links?.[0]?.spanId.toLowerCase(), parentId);
    assert.equal(attribute(task, "klym.task.status"), "succeeded");
    const wanted = [
      "klym.task.queue",
      "klym.task.spawn",
      "klym.grynya.connect",
      "klym.grynya.call",
      "klym.task.save",
      "klym.model.call",
    ];
    const children = await collector.until(() => {
      const names = collector.spans.filter((s) => s.parentSpanId === task.spanId).map((s) =>
        s.name
      );
      return wanted.every((n) => names.includes(n)) ? names : undefined;
    });
    assert.ok(children.every((n) => n.startsWith("klym.")), children.join(", "));
    const call = collector.spans.find((s) =>
      s.parentSpanId === task.spanId && s.name === "klym.model.call"
    )!;
    assert.equal(attribute(call, "gen_ai.request.model"), "openai-compatible:scripted");
    assert.equal(Number(attribute(call, "gen_ai.usage.output_tokens")), 10);
  } finally {
    await peer.stop();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("without OTEL_DENO nothing is exported, even with a collector named", async () => {
  await using collector = startCollector();
  {
    await using klym = await startKlym({
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
    });
    const client = await klym.connect();
    const started = await client.callTool({
      name: "start_async_agent_task",
      arguments: { kind: "hello" },
      _meta: { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" },
    });
    const taskId = (started.structuredContent as { task_id: string }).task_id;
    assert.equal((await waitFinal(client, taskId, 120_000)).status, "succeeded");
  }
  // Klym has exited (an exporter would have flushed by now): the collector heard nothing.
  assert.deepEqual(collector.spans, []);
});
