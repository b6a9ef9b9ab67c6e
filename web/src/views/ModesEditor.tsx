// Editing the tenant's chat modes (stored on the node): rename, rewrite a
// system prompt, add a custom mode, remove one, or go back to the
// built-in three.
import { useState } from "react";
import type { ChatMode } from "../api";
import { useSession } from "../context";
import { ErrorLine, errorText } from "./common";

/** An id from a name: lower case ASCII, digits and dashes. */
export function slug(name: string, taken: string[]): string {
  const base =
    name
      .normalize("NFD")
      .replace(/[\u0300-\u036f]/g, "")
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, 32) || "mode";
  let id = base;
  for (let n = 2; taken.includes(id); n++) id = `${base}-${n}`;
  return id;
}

export function ModesEditor({ modes, onDone }: { modes: ChatMode[]; onDone: (m: ChatMode[] | null) => void }) {
  const { client, t } = useSession();
  const [list, setList] = useState<ChatMode[]>(modes);
  const [error, setError] = useState<string | null>(null);

  const edit = (i: number, patch: Partial<ChatMode>) =>
    setList(list.map((m, j) => (j === i ? { ...m, ...patch } : m)));

  const save = async (f: () => Promise<{ data: ChatMode[] }>) => {
    try {
      onDone((await f()).data);
    } catch (e) {
      setError(errorText(e));
    }
  };

  return (
    <section className="card modes" aria-label={t("editModes")}>
      <h2>{t("editModes")}</h2>
      {list.map((m, i) => (
        <div key={m.id} className="mode-row" data-testid="mode-row">
          <input aria-label={t("modeName")} value={m.name} onChange={(e) => edit(i, { name: e.target.value })} />
          <textarea
            aria-label={t("modePrompt")}
            rows={2}
            value={m.prompt}
            onChange={(e) => edit(i, { prompt: e.target.value })}
          />
          <button className="link" onClick={() => setList(list.filter((_, j) => j !== i))}>
            {t("delete")}
          </button>
        </div>
      ))}
      <p>
        <button
          className="link"
          onClick={() => {
            const name = `${t("newMode")} ${list.length + 1}`;
            setList([...list, { id: slug(name, list.map((m) => m.id)), name, prompt: "" }]);
          }}
        >
          {t("addMode")}
        </button>
      </p>
      <ErrorLine error={error} />
      <p className="row">
        <button onClick={() => void save(() => client.saveModes(list))}>{t("save")}</button>
        <button className="link" onClick={() => void save(() => client.resetModes())}>
          {t("resetModes")}
        </button>
        <button className="link" onClick={() => onDone(null)}>
          {t("cancel")}
        </button>
      </p>
    </section>
  );
}
