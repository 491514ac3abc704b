import { loadConfig } from "../src/config.ts";
import { KindCatalog } from "../src/tasks/kind_catalog.ts";
import { ProcessPool } from "../src/tasks/process_pool.ts";
import { TaskRegistry } from "../src/tasks/task_registry.ts";
const config = loadConfig({ KLYM_TASKS_DIR: "/work/main/tests/fixtures/tasks" }, []);
const pool = new ProcessPool({ ...config, tasksDir: config.tasksDir }, 1);
pool.warm();
const reg = new TaskRegistry(config, new KindCatalog(config.tasksDir), pool);
await new Promise((r) => setTimeout(r, 1000));
const ids = ["hello", "snoop"].map((k) => reg.start({ kind: k, prompt: "p", params: { a: 1 }, timeoutS: 3 }).id);
const t0 = Date.now();
setTimeout(() => reg.cancel(ids[1]!), 1500);
setTimeout(() => reg.cancel(ids[8]!), 1500);
await reg.whenIdle();
console.log("idle after", Date.now() - t0);
for (const id of ids) { const t = reg.get(id); console.log(t.kind, JSON.stringify(t.state), JSON.stringify(t.logs.read(0, 10).lines.map(l => l.stream[4] + ":" + l.text)).slice(0, 300)); }
await reg.shutdown();
