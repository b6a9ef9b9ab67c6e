// An auditor's review of a version that awaits audit: the tally so far,
// the votes, and a vote signed here with the auditor's key file (read in
// the browser, never uploaded): WebCrypto Ed25519 over forja's vote
// message, bound to the version and its current evaluation report.
import { useState } from "react";
import type { Audit as AuditT, Auditor } from "../api";
import { useSession } from "../context";
import { voteMessage, signHex } from "../vote";
import { ErrorLine, errorText, useLoaded } from "./common";

export function Audit({ version, onDecided }: { version: string; onDecided: () => void }) {
  const { client, t } = useSession();
  const loaded = useLoaded(
    client,
    async (c) => ({ audit: await c.audit(version), auditors: (await c.auditors()).data }),
    { audit: null as AuditT | null, auditors: [] as Auditor[] },
  );
  const { data, error, setError, refresh } = loaded;
  const [who, setWho] = useState("");
  const [secret, setSecret] = useState<string | null>(null);
  const audit = data.audit;
  const active = data.auditors.filter((a) => a.active);
  const auditor = active.find((a) => a.id === who) ?? active[0];

  const readKey = async (f: File | undefined) => {
    setSecret(f ? (await f.text()).trim() : null);
  };

  const vote = async (approve: boolean) => {
    setError(null);
    if (!audit?.report_sha256 || !auditor || !secret) return;
    try {
      const at = Math.floor(Date.now() / 1000);
      const msg = voteMessage(version, approve, audit.report_sha256, at);
      const signature = await signHex(secret, auditor.public_key, msg);
      const after = await client.vote(version, {
        auditor: auditor.id,
        decision: approve ? "approve" : "reject",
        report_sha256: audit.report_sha256,
        signed_at: at,
        signature,
      });
      if (after.status !== "awaiting_audit") onDecided();
    } catch (e) {
      setError(errorText(e));
    }
    void refresh();
  };

  if (!audit) return <ErrorLine error={error} />;
  const tl = audit.tally;
  return (
    <section className="card" data-testid="audit">
      <h2>
        {t("audit")} <code>{version}</code>
      </h2>
      <p data-testid="tally">
        {tl.votes}/{tl.min_votes} {t("votes")}, {tl.approvals} {t("approvals")} ({t("needed")}{" "}
        {(100 * tl.approve_fraction).toFixed(0)} %{tl.weighted ? `, ${t("byReputation")}` : ""}) — {tl.verdict}
      </p>
      <p>
        {t("report")}: <code>{audit.report_sha256 ?? "–"}</code>
      </p>
      <ul>
        {audit.votes.map((v) => (
          <li key={v.auditor} data-testid="audit-vote">
            {v.auditor}: {v.decision}
          </li>
        ))}
      </ul>
      {audit.status === "awaiting_audit" && (
        <div className="row">
          <label>
            {t("auditor")}{" "}
            <select value={auditor?.id ?? ""} onChange={(e) => setWho(e.target.value)}>
              {active.map((a) => (
                <option key={a.id} value={a.id}>
                  {a.name} ({a.reputation})
                </option>
              ))}
            </select>
          </label>{" "}
          <label>
            {t("auditorKey")} <input type="file" onChange={(e) => void readKey(e.target.files?.[0])} />
          </label>{" "}
          <button disabled={!secret || !auditor} onClick={() => void vote(true)}>
            {t("approve")}
          </button>{" "}
          <button disabled={!secret || !auditor} onClick={() => void vote(false)}>
            {t("reject")}
          </button>
        </div>
      )}
      <ErrorLine error={error} />
    </section>
  );
}
