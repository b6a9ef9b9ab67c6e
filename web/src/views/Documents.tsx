// Documents: the tenant's drafts and finals, upload of a corrected DOCX
// (the draft it came from is named inside it, or picked here), the delta
// the node computed (moved, edited, deleted paragraphs, with what each
// teaches) and the entity dictionary it feeds.
import { useState } from "react";
import type { CorrectionResult, DictionaryEntry, DocumentRow } from "../api";
import { useSession } from "../context";
import { ErrorLine, errorText, saveBlob, useLoaded } from "./common";

export function Documents() {
  const { client, t } = useSession();
  const loaded = useLoaded(
    client,
    async (c) => {
      const [d, e] = await Promise.all([c.documents(), c.dictionary()]);
      return { docs: d.data, dict: e.data };
    },
    { docs: [] as DocumentRow[], dict: [] as DictionaryEntry[] },
  );
  const { data, error, setError, refresh } = loaded;
  const { docs, dict } = data;
  const [draft, setDraft] = useState("");
  const [result, setResult] = useState<CorrectionResult | null>(null);
  const [busy, setBusy] = useState(false);

  const upload = async (file: File) => {
    setBusy(true);
    setError(null);
    try {
      setResult(await client.uploadCorrection(file, draft || undefined));
      void refresh();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };

  const download = async (d: DocumentRow) => {
    saveBlob(await client.documentContent(d.id), d.filename);
  };

  const drafts = docs.filter((d) => d.kind === "generated");
  return (
    <main className="documents">
      <section className="card">
        <h2>{t("uploadCorrected")}</h2>
        <p className="help">{t("uploadHelp")}</p>
        <label>
          {t("draft")}{" "}
          <select value={draft} onChange={(e) => setDraft(e.target.value)}>
            <option value="">{t("draftFromFile")}</option>
            {drafts.map((d) => (
              <option key={d.id} value={d.id}>
                {d.session ?? d.filename} · V{d.version}
              </option>
            ))}
          </select>
        </label>{" "}
        <input
          type="file"
          accept=".docx,application/vnd.openxmlformats-officedocument.wordprocessingml.document"
          aria-label={t("uploadCorrected")}
          disabled={busy}
          onChange={(e) => {
            const f = e.target.files?.[0];
            if (f) void upload(f);
            e.target.value = "";
          }}
        />
      </section>
      <ErrorLine error={error} />
      {result && (
        <section className="card" data-testid="delta">
          <h2>{t("delta")}</h2>
          <p className="meta" data-testid="delta-summary">
            {Object.entries(result.summary)
              .filter(([, n]) => n > 0)
              .map(([k, n]) => `${n} ${k}`)
              .join(" · ")}
            {" — "}
            {Object.entries(result.learning)
              .map(([k, n]) => `${n} ${k}`)
              .join(" · ")}
          </p>
          <table>
            <tbody>
              {result.paragraphs
                .filter((p) => p.op !== "unchanged")
                .map((p, i) => (
                  <tr key={i} data-testid="delta-op">
                    <td>
                      <span className={`op ${p.op}`}>{p.op}</span>
                    </td>
                    <td>
                      {p.generated_text && <del>{p.generated_text}</del>}
                      {p.generated_text && p.final_text && <br />}
                      {p.final_text && <ins>{p.final_text}</ins>}
                    </td>
                    <td>
                      {p.learning === "dictionary"
                        ? (p.entities ?? []).map((e) => `${e.wrong} → ${e.right}`).join(", ")
                        : p.learning === "training_pair"
                          ? `${t("trainingPair")}${p.example ? ` (${p.example.status})` : ""}`
                          : (p.reason ?? "")}
                    </td>
                  </tr>
                ))}
            </tbody>
          </table>
        </section>
      )}
      <section className="card">
        <h2>{t("dictionary")}</h2>
        {dict.length === 0 ? (
          <p>{t("noEntries")}</p>
        ) : (
          <table>
            <tbody>
              {dict.map((e) => (
                <tr key={e.wrong} data-testid="dictionary-entry">
                  <td>{e.wrong}</td>
                  <td>→ {e.right}</td>
                  <td className="meta">{e.source_document ?? t("byHand")}</td>
                  <td>
                    <button
                      className="link"
                      onClick={async () => {
                        try {
                          await client.removeDictionary(e.wrong);
                        } catch (err) {
                          setError(errorText(err));
                        }
                        void refresh();
                      }}
                    >
                      {t("delete")}
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <section className="card">
        <h2>{t("documents")}</h2>
        <table>
          <tbody>
            {docs.map((d) => (
              <tr key={d.id}>
                <td>{d.kind}</td>
                <td>{d.session ?? ""}</td>
                <td>{d.kind === "generated" ? `V${d.version}` : ""}</td>
                <td>
                  {d.kind === "transcript" ? (
                    d.filename
                  ) : (
                    <button className="link" onClick={() => void download(d)}>
                      {d.filename}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </main>
  );
}
