// The registry: versions with their gate results (WER before/after),
// promote (forced when the gate refused it, with confirmation), roll
// back (with the reason recorded), and the audit of a version that waits
// for its auditors' votes.
import { useState } from "react";
import { ApiError, type Version } from "../api";
import { useSession } from "../context";
import { ErrorLine, errorText, useLoaded } from "./common";
import { Audit } from "./Audit";
import { GateReport } from "./GateReport";
import { GoldenSets } from "./GoldenSets";

const fmt = (x: number | undefined) => (typeof x === "number" ? x.toFixed(3) : "–");

export function Models() {
  const { client, t } = useSession();
  const loaded = useLoaded(client, async (c) => (await c.versions()).data, [] as Version[]);
  const { data: versions, error, setError, refresh } = loaded;
  const [shown, setShown] = useState<string | null>(null);
  const [auditing, setAuditing] = useState<string | null>(null);

  const act = async (f: () => Promise<unknown>) => {
    setError(null);
    try {
      await f();
    } catch (e) {
      setError(errorText(e));
    }
    void refresh();
  };

  const promote = (v: Version) => {
    const force = v.status === "rejected";
    if (!confirm(force ? t("confirmForce") : t("confirmPromote"))) return;
    void act(() => client.promote(v.id, force));
  };

  const rollback = () => {
    const reason = prompt(t("rollbackReason"));
    if (reason === null) return;
    const why = reason || "rolled back from the web UI";
    void act(async () => {
      try {
        await client.rollback(why);
      } catch (e) {
        // The first champion has no earlier version: the base model serves.
        if (e instanceof ApiError && e.status === 409 && confirm(t("confirmToBase"))) {
          await client.rollback(why, true);
        } else {
          throw e;
        }
      }
    });
  };

  const champion = versions.find((v) => v.status === "promoted");
  return (
    <main className="models">
      <section className="card">
        <h2>{t("versions")}</h2>
        {champion && (
          <p>
            {t("champion")}: <code data-testid="champion">{champion.id}</code>{" "}
            <button onClick={rollback}>{t("rollback")}</button>
          </p>
        )}
        {versions.length === 0 ? (
          <p>{t("noVersions")}</p>
        ) : (
          <table>
            <thead>
              <tr>
                <th>id</th>
                <th>{t("status")}</th>
                <th>WER {t("before")}</th>
                <th>WER {t("after")}</th>
                <th>{t("gate")}</th>
                <th>{t("aliases")}</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {versions.map((v) => {
                const s = v.eval?.summary;
                return (
                  <tr key={v.id} data-testid="version">
                    <td>
                      <code>{v.id}</code>
                    </td>
                    <td data-testid="version-status">{v.status}</td>
                    <td>{fmt(s?.baseline?.metrics?.wer)}</td>
                    <td>{fmt(s?.candidate?.metrics?.wer)}</td>
                    <td>
                      {v.gate?.outcome ?? ""} {v.gate?.reasons?.join("; ") ?? v.status_reason ?? ""}
                    </td>
                    <td>{(v.aliases ?? []).join(", ")}</td>
                    <td>
                      {v.status !== "promoted" && v.status !== "failed" && v.status !== "awaiting_audit" && (
                        <button onClick={() => promote(v)}>{t("promote")}</button>
                      )}
                      {v.status === "awaiting_audit" && (
                        <button onClick={() => setAuditing(auditing === v.id ? null : v.id)}>{t("audit")}</button>
                      )}{" "}
                      {v.eval && (
                        <button className="link" onClick={() => setShown(shown === v.id ? null : v.id)}>
                          {t("report")}
                        </button>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
      </section>
      {auditing && (
        <Audit
          key={auditing}
          version={auditing}
          onDecided={() => {
            void refresh();
          }}
        />
      )}
      {shown && <GateReport version={shown} />}
      <GoldenSets />
      <ErrorLine error={error} />
    </main>
  );
}
