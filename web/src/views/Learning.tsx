// The learning dashboard: pending corrections against the threshold,
// "train now", the running job followed live (SSE: step / total, ETA,
// tok/s, training and validation loss curves, each checkpoint's golden-set
// metrics, the training mix), and recent jobs with their states.
import { useCallback, useEffect, useState } from "react";
import { progressOf, type Job, type JobEvent, type LearningStatus } from "../api";
import { useSession } from "../context";
import { ErrorLine, errorText } from "./common";

/** Points `[step, value]` of a numeric field of the step events. */
function series(events: JobEvent[], field: string): [number, number][] {
  const out: [number, number][] = [];
  for (const e of events) {
    const d = e.data;
    if (d && typeof d.step === "number" && typeof d[field] === "number") out.push([d.step, d[field] as number]);
  }
  return out;
}

/** Training loss (solid) and validation loss (dashed) over steps. */
function LossCurve({ events, label }: { events: JobEvent[]; label: string }) {
  const train = series(events, "train_loss");
  const valid = series(events, "valid_loss");
  const all = [...train, ...valid];
  if (train.length < 2) return null;
  const maxX = Math.max(...all.map((p) => p[0])) || 1;
  const maxY = Math.max(...all.map((p) => p[1]));
  const minY = Math.min(...all.map((p) => p[1]));
  const span = maxY - minY || 1;
  const path = (pts: [number, number][]) =>
    pts.map(([x, y]) => `${(x / maxX) * 300},${100 - ((y - minY) / span) * 100}`).join(" ");
  return (
    <svg className="curve" viewBox="-4 -4 308 108" role="img" aria-label={label}>
      <polyline points={path(train)} fill="none" stroke="currentColor" strokeWidth="2" />
      {valid.length > 0 && (
        <polyline
          points={path(valid)}
          fill="none"
          stroke="currentColor"
          strokeWidth="2"
          strokeDasharray="5 4"
          opacity="0.6"
          data-testid="valid-loss"
        />
      )}
    </svg>
  );
}

/** The golden-set metrics of each checkpoint, from the evaluation events. */
function Checkpoints({ events, title }: { events: JobEvent[]; title: string }) {
  const rows = events
    .map((e) => e.data)
    .filter((d): d is { checkpoint: string; metrics: Record<string, number> } =>
      !!d && typeof d.checkpoint === "string" && typeof d.metrics === "object" && d.metrics !== null,
    );
  if (rows.length === 0) return null;
  const names = ["wer", "cer", "similarity", "exact_match", "loss"].filter((m) => rows.some((r) => m in r.metrics));
  return (
    <>
      <h3>{title}</h3>
      <table data-testid="checkpoints">
        <thead>
          <tr>
            <th />
            {names.map((m) => (
              <th key={m}>{m}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr key={r.checkpoint}>
              <td>{r.checkpoint}</td>
              {names.map((m) => (
                <td key={m}>{r.metrics[m]?.toFixed(4) ?? "–"}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </>
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
          {live.training_mix && (
            <p className="meta" data-testid="training-mix">
              {t("mix")}: {live.training_mix.new_examples} {t("mixNew")} + {live.training_mix.replay_examples}{" "}
              {t("mixReplayed")} + {live.training_mix.general_rows} {t("mixGeneral")}
              {live.training_mix.warm_start_from
                ? ` · ${t("warmStart")} ${live.training_mix.warm_start_from.slice(0, 8)}`
                : ""}
            </p>
          )}
          <LossCurve events={events} label={`${t("loss")} / ${t("validLoss")}`} />
          <Checkpoints events={events} title={t("checkpoints")} />
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
                    <button className="link" onClick={() => setLive(j)} aria-label={`${t("show")} ${j.id}`}>
                      <code>{j.id}</code>
                    </button>
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
