// The node, for admin keys: model, workers, the serving queue, jobs by
// state, tenants, uptime and memory, refreshed every 5 s, and a link to
// the Prometheus metrics.
import { useEffect, useState } from "react";
import type { NodeState } from "../api";
import { useSession } from "../context";
import { ErrorLine, errorText } from "./common";

function duration(s: number): string {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d > 0 ? `${d} d ${h} h` : h > 0 ? `${h} h ${m} min` : `${m} min ${s % 60} s`;
}

export function Node() {
  const { client, t } = useSession();
  const [node, setNode] = useState<NodeState | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    const load = () =>
      client
        .node()
        .then((n) => {
          setNode(n);
          setError(null);
        })
        .catch((e: unknown) => setError(errorText(e)));
    void load();
    const timer = setInterval(() => void load(), 5000);
    return () => clearInterval(timer);
  }, [client]);

  return (
    <main className="learning">
      <ErrorLine error={error} />
      {node && (
        <section className="card" data-testid="node">
          <h2>{t("node")}</h2>
          <table>
            <tbody>
              <tr>
                <td>{t("model")}</td>
                <td data-testid="node-model">
                  {node.model ?? "–"} {node.ready ? "" : `(${t("loading")})`}
                </td>
              </tr>
              <tr>
                <td>{t("workers")}</td>
                <td>{node.workers}</td>
              </tr>
              <tr>
                <td>{t("queue")}</td>
                <td>
                  {node.serving.active} {t("active")} · {node.serving.queued} {t("waiting")} · {node.serving.batch_live}{" "}
                  {t("inBatch")}
                </td>
              </tr>
              <tr>
                <td>{t("jobs")}</td>
                <td>
                  {Object.entries(node.jobs)
                    .map(([k, n]) => `${n} ${k}`)
                    .join(" · ") || "–"}
                </td>
              </tr>
              <tr>
                <td>{t("tenants")}</td>
                <td>{node.tenants}</td>
              </tr>
              <tr>
                <td>{t("uptime")}</td>
                <td>{duration(node.uptime_s)}</td>
              </tr>
              <tr>
                <td>{t("memory")}</td>
                <td>{node.memory.rss_bytes ? `${(node.memory.rss_bytes / 2 ** 20).toFixed(0)} MiB` : "–"}</td>
              </tr>
              <tr>
                <td>forja</td>
                <td>{node.version}</td>
              </tr>
            </tbody>
          </table>
          <p>
            <a href={node.metrics_url} target="_blank" rel="noreferrer">
              /metrics
            </a>{" "}
            <span className="meta">{t("metricsHelp")}</span>
          </p>
        </section>
      )}
    </main>
  );
}
