// Golden sets: the versions a tenant uploaded (what the gate evaluates
// on), upload of a new one, and a page-by-page look at its examples.
import { useState } from "react";
import type { GoldenPage, GoldenSet } from "../api";
import { useSession } from "../context";
import { ErrorLine, errorText, useLoaded } from "./common";

export function GoldenSets() {
  const { client, t } = useSession();
  const loaded = useLoaded(client, async (c) => (await c.goldenSets()).data, [] as GoldenSet[]);
  const { data: sets, error, setError, refresh } = loaded;
  const [page, setPage] = useState<GoldenPage | null>(null);

  const open = async (id: string, offset: number) => {
    try {
      setPage(await client.golden(id, offset));
    } catch (e) {
      setError(errorText(e));
    }
  };

  return (
    <section className="card" data-testid="golden-sets">
      <h2>{t("goldenSets")}</h2>
      <table>
        <tbody>
          {sets.map((g) => (
            <tr key={g.id}>
              <td>{g.name}</td>
              <td>v{g.version}</td>
              <td>
                {g.examples} {t("examples")}
              </td>
              <td>{new Date(g.created_at * 1000).toLocaleString()}</td>
              <td>
                <button className="link" onClick={() => void open(g.id, 0)}>
                  {t("inspect")}
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <label>
        {t("uploadGolden")}{" "}
        <input
          type="file"
          accept=".jsonl,application/jsonl"
          aria-label={t("uploadGolden")}
          onChange={async (e) => {
            const f = e.target.files?.[0];
            e.target.value = "";
            if (!f) return;
            try {
              setError(null);
              await client.uploadGolden(f);
              void refresh();
            } catch (err) {
              setError(errorText(err));
            }
          }}
        />
      </label>
      <ErrorLine error={error} />
      {page && (
        <div data-testid="golden-page">
          <h3>
            {page.name} v{page.version}: {page.offset + 1}–{page.offset + page.data.length} / {page.total}
          </h3>
          <ol start={page.offset + 1} className="samples">
            {page.data.map((e) => (
              <li key={e.id}>
                <p>
                  {e.prompt ??
                    (e.messages ?? [])
                      .filter((m) => m.role !== "system")
                      .map((m) => m.content)
                      .join(" · ")}
                </p>
                <p>
                  <strong>{t("reference")}:</strong> {e.reference}
                </p>
              </li>
            ))}
          </ol>
          {page.offset + page.data.length < page.total && (
            <button className="link" onClick={() => void open(page.id, page.offset + page.data.length)}>
              {t("more")}
            </button>
          )}
        </div>
      )}
    </section>
  );
}
