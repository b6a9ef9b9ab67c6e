// A version's gate report: every metric before (the champion or the base
// model) and after, the gate's reasons, and each golden example's answers
// before and after with a word diff against the reference.
import { diffWords } from "diff";
import { useCallback, useEffect, useState } from "react";
import type { EvalReport, Lineage } from "../api";
import { useSession } from "../context";
import { ErrorLine, errorText } from "./common";

/** `text` against `reference`: missing words struck, extra words marked. */
function WordDiff({ reference, text }: { reference: string; text: string }) {
  return (
    <span className="wdiff">
      {diffWords(reference, text).map((part, i) =>
        part.added ? (
          <ins key={i}>{part.value}</ins>
        ) : part.removed ? (
          <del key={i}>{part.value}</del>
        ) : (
          <span key={i}>{part.value}</span>
        ),
      )}
    </span>
  );
}

const SHOWN = 20;

/** A PNG the API draws (fetched with the key, shown from an object URL);
 * nothing when there is none (a version without a job has no loss). */
function Chart({ load, alt, testid }: { load: () => Promise<Blob>; alt: string; testid: string }) {
  const [url, setUrl] = useState<string | null>(null);
  useEffect(() => {
    let made: string | null = null;
    load()
      .then((b) => {
        made = URL.createObjectURL(b);
        setUrl(made);
      })
      .catch(() => setUrl(null));
    return () => {
      if (made) URL.revokeObjectURL(made);
    };
  }, [load]);
  return url ? <img className="chart" src={url} alt={alt} data-testid={testid} /> : null;
}

export function GateReport({ version }: { version: string }) {
  const { client, t } = useSession();
  const [report, setReport] = useState<EvalReport | null>(null);
  const [lineage, setLineage] = useState<Lineage | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [all, setAll] = useState(false);

  useEffect(() => {
    setReport(null);
    client
      .evalReport(version)
      .then(setReport)
      .catch((e: unknown) => setError(errorText(e)));
    client
      .lineage(version)
      .then(setLineage)
      .catch(() => setLineage(null));
  }, [client, version]);

  const loss = useCallback(() => client.versionLossChart(version), [client, version]);
  const metrics = useCallback(() => client.metricsChart("wer,cer"), [client]);
  if (error) return <ErrorLine error={error} />;
  if (!report) return null;
  const names = Object.keys({ ...report.baseline.metrics, ...report.candidate.metrics }).sort();
  const before = new Map(report.baseline.examples.map((e) => [e.id, e]));
  const examples = all ? report.candidate.examples : report.candidate.examples.slice(0, SHOWN);
  return (
    <section className="card" data-testid="gate-report">
      <h2>
        {t("gate")}: {report.gate?.outcome ?? ""} <code>{version}</code>
      </h2>
      {report.gate?.reasons && report.gate.reasons.length > 0 && <p className="meta">{report.gate.reasons.join("; ")}</p>}
      <table>
        <thead>
          <tr>
            <th />
            <th>
              {t("before")} ({report.baseline.subject ?? "base"})
            </th>
            <th>{t("after")}</th>
          </tr>
        </thead>
        <tbody>
          {names.map((m) => (
            <tr key={m}>
              <td>{m}</td>
              <td>{report.baseline.metrics[m]?.toFixed(4) ?? "–"}</td>
              <td>{report.candidate.metrics[m]?.toFixed(4) ?? "–"}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {report.gate?.probe_checks && report.gate.probe_checks.length > 0 && (
        <>
          <h3>{t("probe")}</h3>
          <table data-testid="probe-checks">
            <thead>
              <tr>
                <th />
                <th>{t("baseModel")}</th>
                <th>{t("after")}</th>
                <th>{t("rule")}</th>
              </tr>
            </thead>
            <tbody>
              {report.gate.probe_checks.map((c) => (
                <tr key={c.measure}>
                  <td>{c.measure}</td>
                  <td>{c.base.toFixed(3)}</td>
                  <td>{c.candidate.toFixed(3)}</td>
                  <td>
                    {c.passed ? "✓" : "✗"} {c.rule}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      <h3>{t("charts")}</h3>
      <div className="charts">
        <Chart load={loss} alt={t("lossChart")} testid="loss-chart" />
        <Chart load={metrics} alt={t("metricsChart")} testid="metrics-chart" />
      </div>
      {lineage && (
        <>
          <h3>{t("lineage")}</h3>
          <p className="meta" data-testid="lineage">
            {[...lineage.ancestors].reverse().map((a) => (
              <span key={a.id}>
                <code>{a.id.slice(0, 8)}</code> →{" "}
              </span>
            ))}
            <code>{lineage.version.id.slice(0, 8)}</code>
            {lineage.job && (
              <>
                {" · "}
                {t("trainedOn")} <code>{lineage.training_file?.filename ?? lineage.job.id}</code> ({lineage.job.id})
              </>
            )}
            {lineage.golden_set && ` · ${lineage.golden_set.name} v${lineage.golden_set.version}`}
            {lineage.version.dataset_sha256 && (
              <>
                {" · dataset "}
                <code>{lineage.version.dataset_sha256.slice(0, 12)}</code>
              </>
            )}
          </p>
        </>
      )}
      <h3>{t("samples")}</h3>
      <ol className="samples">
        {examples.map((e) => (
          <li key={e.id} data-testid="sample">
            <p>
              <strong>{t("reference")}:</strong> {e.reference}
            </p>
            <p>
              <strong>{t("before")}:</strong> <WordDiff reference={e.reference} text={before.get(e.id)?.prediction ?? ""} />
            </p>
            <p>
              <strong>{t("after")}:</strong> <WordDiff reference={e.reference} text={e.prediction} />
            </p>
          </li>
        ))}
      </ol>
      {!all && report.candidate.examples.length > SHOWN && (
        <button className="link" onClick={() => setAll(true)}>
          {t("showAll")} ({report.candidate.examples.length})
        </button>
      )}
    </section>
  );
}
