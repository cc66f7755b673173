import { useEffect, useState } from "react";
import { fetchHealth, type HealthResult } from "./health";

/** How often the status refreshes while the page is open. */
const REFRESH_MS = 10_000;

function formatUptime(seconds: number): string {
  const d = Math.floor(seconds / 86_400);
  const h = Math.floor((seconds % 86_400) / 3_600);
  const m = Math.floor((seconds % 3_600) / 60);
  return d > 0 ? `${d} d ${h} h` : h > 0 ? `${h} h ${m} min` : `${m} min`;
}

export function App() {
  const [result, setResult] = useState<HealthResult | undefined>();
  const [checkedAt, setCheckedAt] = useState<Date | undefined>();

  useEffect(() => {
    let alive = true;
    const load = async () => {
      const r = await fetchHealth();
      if (!alive) return;
      setResult(r);
      setCheckedAt(new Date());
    };
    void load();
    const timer = setInterval(() => void load(), REFRESH_MS);
    return () => {
      alive = false;
      clearInterval(timer);
    };
  }, []);

  return (
    <main>
      <header>
        <h1>Bulwark</h1>
        <p className="subtitle">Image backup for your fleet</p>
      </header>
      <section aria-labelledby="server-heading" aria-live="polite">
        <h2 id="server-heading">Server</h2>
        {result === undefined && <p>Asking the server for its status…</p>}
        {result?.kind === "error" && (
          <p className="problem" role="alert">
            Status unknown: {result.message}. Retrying every {REFRESH_MS / 1000} s.
          </p>
        )}
        {result?.kind === "ok" && (
          <>
            <p className={result.health.status === "ok" ? "good" : "problem"}>
              {result.health.status === "ok"
                ? "All services are up."
                : "Degraded: a service the server needs is down."}
            </p>
            <dl>
              <dt>Version</dt>
              <dd>{result.health.version}</dd>
              <dt>Node</dt>
              <dd>{result.health.node}</dd>
              <dt>Up for</dt>
              <dd>{formatUptime(result.health.uptimeSeconds)}</dd>
            </dl>
            <table>
              <caption>Services</caption>
              <thead>
                <tr>
                  <th scope="col">Service</th>
                  <th scope="col">State</th>
                  <th scope="col">Detail</th>
                </tr>
              </thead>
              <tbody>
                {Object.entries(result.health.checks).map(([name, probe]) => (
                  <tr key={name}>
                    <th scope="row">
                      {name === "postgres"
                        ? "Catalog (Postgres)"
                        : name === "redis"
                          ? "Job queue (Redis)"
                          : name}
                    </th>
                    <td className={probe.status === "up" ? "good" : "problem"}>{probe.status}</td>
                    <td>{probe.status === "up" ? `${probe.latencyMs} ms` : (probe.error ?? "")}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        )}
        {checkedAt && <p className="meta">Checked at {checkedAt.toLocaleTimeString()}.</p>}
      </section>
    </main>
  );
}
