// The whole monitoring client: operation timings and custom metrics to the perfmon extension on
// 127.0.0.1 (docs/reference.md §4). Cold starts, duration, memory, errors, timeouts and cost need no code.
const base = `http://127.0.0.1:${process.env.PERFMON_HTTP_PORT ?? "4280"}`;

async function post(path: string, body: unknown): Promise<void> {
  try {
    const init = { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) };
    await fetch(base + path, { ...init, signal: AbortSignal.timeout(200) });
  } catch {
    // Monitoring never fails a request (perfmon counts what it drops in /v1/health).
  }
}

export interface Metric {
  name: string;
  value: number;
  unit?: string;
  kind?: "distribution" | "counter" | "gauge";
  dimensions?: Record<string, string>;
}

/** Posts custom metrics (distributions keep their percentiles; counters are summed). */
export const metric = (m: Metric | Metric[]): Promise<void> => post("/v1/metrics", m);

/**
 * Runs `fn` and posts its duration and outcome as `operation`; a thrown error's `code` is its errorType.
 * With `memory`, also the heap in use at its end as OperationMemoryUsed (what `perfmon alarms
 * --operation-memory-threshold` watches).
 */
export async function timed<T>(operation: string, fn: () => Promise<T>, opts: { memory?: boolean } = {}): Promise<T> {
  const start = performance.now();
  let errorType: string | undefined;
  try {
    return await fn();
  } catch (e) {
    errorType = String((e as { code?: unknown }).code ?? "Error");
    throw e;
  } finally {
    const durationMs = performance.now() - start;
    const done = [post("/v1/operations", { operation, durationMs, success: errorType === undefined, errorType })];
    if (opts.memory) {
      const mb = process.memoryUsage().heapUsed / 1048576;
      const dimensions = { OperationName: operation };
      done.push(metric({ name: "OperationMemoryUsed", value: mb, unit: "Megabytes", dimensions }));
    }
    await Promise.all(done);
  }
}
