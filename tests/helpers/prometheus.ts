/**
 * A real Prometheus (Debian's package; tests/peers/setup.ts installs it) on 127.0.0.1, scraping
 * one target every second, and its HTTP query API.
 */
import { PROMETHEUS } from "../peers/setup.ts";
import { freePort } from "../peers/peers.ts";

export interface Prometheus extends AsyncDisposable {
  readonly url: string;
  /** An instant query's vector: each series' labels and value. */
  query(expr: string): Promise<{ metric: Record<string, string>; value: number }[]>;
  /** Polls `expr` until `ok` holds for its result; fails with the last result after `timeoutMs`. */
  until(
    expr: string,
    ok: (result: { metric: Record<string, string>; value: number }[]) => boolean,
    timeoutMs?: number,
  ): Promise<{ metric: Record<string, string>; value: number }[]>;
}

export async function startPrometheus(
  target: URL,
  options: { token?: string } = {},
): Promise<Prometheus> {
  try {
    Deno.statSync(PROMETHEUS);
  } catch {
    throw new Error(
      `${PROMETHEUS} is missing: run deno run -A tests/peers/setup.ts (as root), or apt-get install -y prometheus`,
    );
  }
  const dir = Deno.makeTempDirSync({ prefix: "klym-prometheus-" });
  const config = {
    global: { scrape_interval: "1s", evaluation_interval: "1s" },
    scrape_configs: [{
      job_name: "klym",
      scrape_interval: "1s",
      scrape_timeout: "900ms",
      metrics_path: "/metrics",
      ...(options.token ? { authorization: { credentials: options.token } } : {}),
      static_configs: [{ targets: [target.host] }],
    }],
  };
  // YAML is a superset of JSON.
  Deno.writeTextFileSync(`${dir}/prometheus.yml`, JSON.stringify(config));
  const port = freePort();
  const child = new Deno.Command(PROMETHEUS, {
    args: [
      `--config.file=${dir}/prometheus.yml`,
      `--storage.tsdb.path=${dir}/data`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream());
  let output = "";
  const reading = (async () => {
    for await (const chunk of stderr) output = (output + chunk).slice(-8192);
  })();
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await child.status;
    await reading;
    Deno.removeSync(dir, { recursive: true });
  };
  const query = async (expr: string) => {
    const response = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = await response.json();
    if (body.status !== "success") throw new Error(`${expr}: ${JSON.stringify(body)}`);
    return (body.data.result as { metric: Record<string, string>; value: [number, string] }[])
      .map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  };
  const until: Prometheus["until"] = async (expr, ok, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      let result: Awaited<ReturnType<typeof query>> = [];
      try {
        result = await query(expr);
        if (ok(result)) return result;
      } catch (error) {
        if (Date.now() > deadline) throw error;
      }
      if (Date.now() > deadline) {
        throw new Error(
          `Prometheus: ${expr} never held within ${timeoutMs} ms; last: ${
            JSON.stringify(result)
          }\n${output}`,
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  try {
    await until("up", (r) => r.length > 0, 30_000);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, query, until, [Symbol.asyncDispose]: stop };
}
