// The learning dashboard: pending corrections against the threshold,
// "train now", the running job followed live (SSE: step / total, ETA,
// tok/s, a loss curve), and recent jobs with their states.
import { useCallback, useEffect, useState } from "react";
import { progressOf, type Job, type JobEvent, type LearningStatus } from "../api";
import { useSession } from "../context";
import { ErrorLine, errorText } from "./common";

function LossCurve({ events }: { events: JobEvent[] }) {
  const pts = events
    .map((e) => e.data)
    .filter((d): d is Record<string, number> => !!d && typeof d.step === "number" && typeof d.train_loss === "number")
    .map((d) => [d.step!, d.train_loss!] as const);
  if (pts.length < 2) return null;
  const maxX = Math.max(...pts.map((p) => p[0]));
  const maxY = Math.max(...pts.map((p) => p[1]));
  const minY = Math.min(...pts.map((p) => p[1]));
  const span = maxY - minY || 1;
  const path = pts.map(([x, y]) => `${(x / (maxX || 1)) * 300},${100 - ((y - minY) / span) * 100}`).join(" ");
  return (
    <svg className="curve" viewBox="-4 -4 308 108" role="img" aria-label="training loss">
      <polyline points={path} fill="none" stroke="currentColor" strokeWidth="2" />
    </svg>
  );
}

export function Learning() {
  const { client, t } = useSession();
  const [status, setStatus] = useState<LearningStatus | null>(null);
  const [jobs, setJobs] = useState<Job[]>([]);
  const [events, setEvents] = useState<JobEvent[]>([]);
  const [live, setLive] = useState<Job | null>(null);
  const [error, setError] = useState<string | null>(null);

  const refresh = useCallback(async () => {
    try {
      const [st, js] = await Promise.all([client.learningStatus(), client.jobs()]);
      setStatus(st);
      setJobs(js.data);
      const active = js.data.find((j) => !["succeeded", "failed", "cancelled"].includes(j.status));
      setLive((cur) => (active && cur?.id !== active.id ? active : cur));
    } catch (e) {
      setError(errorText(e));
    }
  }, [client]);

  useEffect(() => {
    void refresh();
    const timer = setInterval(() => void refresh(), 5000);
    return () => clearInterval(timer);
  }, [refresh]);

  // Follow the active job live.
  const liveId = live?.id;
  useEffect(() => {
    if (!liveId) return;
    const ctl = new AbortController();
    setEvents([]);
    void client
      .followJob(
        liveId,
        {
          event: (e) => setEvents((es) => [...es, e]),
          job: (j) => {
            setLive(j);
            if (["succeeded", "failed", "cancelled"].includes(j.status)) void refresh();
          },
        },
        ctl.signal,
      )
      .catch((e: unknown) => setError(errorText(e)));
    return () => ctl.abort();
  }, [client, liveId, refresh]);

  const trainNow = async () => {
    try {
      const j = await client.trainNow();
      setLive(j);
      void refresh();
    } catch (e) {
      setError(errorText(e));
    }
  };

  const p = progressOf(events, Date.now() / 1000);
  const pct = live?.status === "succeeded" ? 100 : p.total ? Math.round((100 * p.step) / p.total) : 0;
  const curated = status?.pending.curated ?? 0;
  const threshold = status?.threshold ?? null;

  return (
    <main className="learning">
      <section className="card">
        <h2>{t("pending")}</h2>
        <p data-testid="pending-count">
          {curated}
          {threshold ? ` / ${threshold} (${t("threshold")})` : ""}
        </p>
        {threshold ? <progress max={threshold} value={Math.min(curated, threshold)} /> : null}
        <button onClick={() => void trainNow()} disabled={curated === 0}>
          {t("trainNow")}
        </button>
      </section>
      {live && (
        <section className="card" data-testid="live-job">
          <h2>
            {t("liveStep")} <code>{live.id}</code> · <span data-testid="job-status">{live.status}</span>
          </h2>
          <progress max={100} value={pct} aria-label="progress" data-testid="job-progress" data-value={pct} />
          <p className="meta">
            {t("step")} {p.step}/{p.total || "?"} · {pct}%{p.etaS !== null ? ` · ${t("eta")} ${p.etaS}s` : ""}
            {p.tokPerS !== null ? ` · ${Math.round(p.tokPerS)} tok/s` : ""}
            {p.loss !== null ? ` · ${t("loss")} ${p.loss.toFixed(3)}` : ""}
          </p>
          <LossCurve events={events} />
          {live.error?.message && <p className="error">{live.error.message}</p>}
        </section>
      )}
      <section className="card">
        <h2>{t("jobs")}</h2>
        {jobs.length === 0 ? (
          <p>{t("noJobs")}</p>
        ) : (
          <table>
            <tbody>
              {jobs.map((j) => (
                <tr key={j.id}>
                  <td>
                    <code>{j.id}</code>
                  </td>
                  <td>{j.status}</td>
                  <td>{j.trigger ?? ""}</td>
                  <td>{new Date(j.created_at * 1000).toLocaleString()}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <ErrorLine error={error} />
    </main>
  );
}
