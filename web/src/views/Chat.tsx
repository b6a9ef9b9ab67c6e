// The chat: history on the side (server-side, per tenant), a model and
// mode picker, streaming answers with a stop button, Markdown rendering
// (no raw HTML; unsafe links dropped), thumbs up/down, and "correct this
// answer", which sends the edited answer as feedback by completion id and
// shows what curation did with it.
import { useCallback, useEffect, useRef, useState } from "react";
import Markdown from "react-markdown";
import type { ChatMessage, ChatMode, Conversation, Model } from "../api";
import { useSession } from "../context";
import { ErrorLine, errorText, saveBlob } from "./common";
import { ModesEditor } from "./ModesEditor";
import { groupModels } from "../models";

interface Turn extends ChatMessage {
  completionId?: string;
  model?: string;
  verdict?: string;
}


/** A thumb icon drawn inline (no emoji font or icon font is needed). */
function Thumb({ up }: { up: boolean }) {
  return (
    <svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" className={up ? "thumb" : "thumb down"}>
      <path
        d="M2 21h4V9H2v12zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.4-1.1L13.2 1 6.6 7.6C6.2 8 6 8.5 6 9v10a2 2 0 0 0 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7.1c.1-.2.2-.5.2-.7v-2z"
        fill="currentColor"
      />
    </svg>
  );
}

/** Links the model writes open outside, never run script. */
function safeUrl(url: string): string {
  return /^(https?:|mailto:|#)/i.test(url.trim()) ? url : "";
}

export function Chat() {
  const { client, t } = useSession();
  const [models, setModels] = useState<Model[]>([]);
  const [model, setModel] = useState("");
  const [modes, setModes] = useState<ChatMode[]>([]);
  const [mode, setMode] = useState("");
  const [editingModes, setEditingModes] = useState(false);
  const [turns, setTurns] = useState<Turn[]>([]);
  const [input, setInput] = useState("");
  const [streaming, setStreaming] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [history, setHistory] = useState<Conversation[]>([]);
  const [search, setSearch] = useState("");
  const [convId, setConvId] = useState<string | null>(null);
  const [editing, setEditing] = useState<number | null>(null);
  const [draft, setDraft] = useState("");
  const [pending, setPending] = useState<string | null>(null);
  const [rating, setRating] = useState<{ i: number; value: number } | null>(null);
  const [comment, setComment] = useState("");
  const abort = useRef<AbortController | null>(null);

  const refreshHistory = useCallback(async () => {
    try {
      setHistory((await client.conversations(search || undefined)).data);
    } catch (e) {
      setError(errorText(e));
    }
  }, [client, search]);

  useEffect(() => {
    void (async () => {
      try {
        const list = (await client.models()).data.filter((m) => !m.id.includes("minilm"));
        setModels(list);
        const champion = list.find((m) => m.id.endsWith("@champion"));
        setModel((champion ?? list[0])?.id ?? "");
        const ms = (await client.modes()).data;
        setModes(ms);
        setMode((cur) => cur || ms[0]?.id || "");
      } catch (e) {
        setError(errorText(e));
      }
    })();
  }, [client]);

  useEffect(() => {
    void refreshHistory();
  }, [refreshHistory]);

  const systemPrompt = modes.find((m) => m.id === mode)?.prompt ?? "";

  const run = async (base: Turn[], regenerate = false) => {
    const ctl = new AbortController();
    abort.current = ctl;
    setStreaming(true);
    setError(null);
    setTurns([...base, { role: "assistant", content: "" }]);
    const messages: ChatMessage[] = [
      ...(systemPrompt ? [{ role: "system" as const, content: systemPrompt }] : []),
      ...base.map(({ role, content }) => ({ role, content })),
    ];
    let answer: Turn;
    try {
      const r = await client.chat(
        { model, messages, max_tokens: 512 },
        (text) => setTurns([...base, { role: "assistant", content: text }]),
        ctl.signal,
      );
      answer = { role: "assistant", content: r.text, completionId: r.id, model: r.model };
      setTurns([...base, answer]);
    } catch (e) {
      setError(errorText(e));
      setTurns(base);
      return;
    } finally {
      setStreaming(false);
      abort.current = null;
    }
    // Keep the history on the node: the new user turn and the answer. A
    // failure here loses no answer; it says the history was not saved.
    try {
      const user = base[base.length - 1]!;
      const stored = { role: "assistant" as const, content: answer.content, completion_id: answer.completionId || undefined };
      if (convId) {
        const fresh = regenerate ? [stored] : [{ role: user.role, content: user.content }, stored];
        await client.appendMessages(convId, fresh);
      } else {
        const c = await client.createConversation({
          model: model || undefined,
          mode: mode || undefined,
          messages: [...messages.filter((m) => m.role === "system"), { role: user.role, content: user.content }, stored],
        });
        setConvId(c.id);
      }
      void refreshHistory();
    } catch (e) {
      setError(`${t("notSaved")}: ${errorText(e)}`);
    }
  };


  const send = () => {
    const text = input.trim();
    if (!text || streaming || !model) return;
    setInput("");
    void run([...turns, { role: "user", content: text }]);
  };

  const feedback = async (i: number, body: { rating?: number; correction?: string; comment?: string }) => {
    const answer = turns[i]!;
    const context = turns.slice(0, i).map(({ role, content }) => ({ role, content }));
    try {
      const r = await client.feedback({
        messages: [{ role: "system", content: systemPrompt }, ...context],
        output: answer.content,
        completion_id: answer.completionId,
        rating: body.rating,
        correction: body.correction,
        metadata: body.comment ? { comment: body.comment } : undefined,
      });
      const e = r.data[0];
      const verdict =
        e?.status === "rejected"
          ? `${e.reason?.includes("duplicate") ? t("duplicate") : t("refused")}${e.reason ? ` (${e.reason})` : ""}`
          : t("curated");
      const next = [...turns];
      next[i] = { ...answer, verdict, ...(body.correction ? { content: body.correction } : {}) };
      setTurns(next);
      const st = await client.learningStatus();
      setPending(`${t("pending")}: ${st.pending.curated}${st.threshold ? ` / ${st.threshold} (${t("threshold")})` : ""}`);
    } catch (e) {
      setError(errorText(e));
    }
  };

  const open = async (id: string) => {
    try {
      const c = await client.conversation(id);
      setConvId(c.id);
      if (c.model) setModel(c.model);
      if (c.mode) setMode(c.mode);
      setTurns(
        (c.messages ?? [])
          .filter((m) => m.role !== "system")
          .map((m) => ({ role: m.role, content: m.content, completionId: m.completion_id ?? undefined })),
      );
    } catch (e) {
      setError(errorText(e));
    }
  };

  const download = async (c: Conversation, format: "json" | "markdown") => {
    saveBlob(await client.exportConversation(c.id, format), `${c.id}.${format === "json" ? "json" : "md"}`);
  };

  return (
    <div className="chat">
      <aside className="history" aria-label="history">
        <button
          onClick={() => {
            setConvId(null);
            setTurns([]);
          }}
        >
          {t("newChat")}
        </button>
        <input
          type="search"
          placeholder={t("search")}
          aria-label={t("search")}
          value={search}
          onChange={(e) => setSearch(e.target.value)}
        />
        <ul>
          {history.map((c) => (
            <li key={c.id} className={c.id === convId ? "active" : ""}>
              <button className="link" onClick={() => void open(c.id)}>
                {c.title}
              </button>
              <span className="actions">
                <button
                  className="icon"
                  title={t("rename")}
                  aria-label={t("rename")}
                  onClick={async () => {
                    const title = prompt(t("renamePrompt"), c.title);
                    if (title?.trim()) {
                      await client.renameConversation(c.id, title.trim());
                      void refreshHistory();
                    }
                  }}
                >
                  ✎
                </button>
                <button className="icon" title={t("exportMd")} aria-label={t("exportMd")} onClick={() => void download(c, "markdown")}>
                  ⤓
                </button>
                <button className="icon" title={t("exportJson")} aria-label={t("exportJson")} onClick={() => void download(c, "json")}>
                  {"{}"}
                </button>
                <button
                  className="icon"
                  title={t("delete")}
                  aria-label={t("delete")}
                  onClick={async () => {
                    if (confirm(t("confirmDelete"))) {
                      await client.deleteConversation(c.id);
                      if (c.id === convId) {
                        setConvId(null);
                        setTurns([]);
                      }
                      void refreshHistory();
                    }
                  }}
                >
                  ✕
                </button>
              </span>
            </li>
          ))}
        </ul>
      </aside>
      <section className="conversation">
        <div className="pickers">
          <label>
            {t("model")}{" "}
            <select value={model} onChange={(e) => setModel(e.target.value)} data-testid="model">
              {groupModels(models).map(([group, list]) => (
                <optgroup key={group} label={t(group)}>
                  {list.map((m) => (
                    <option key={m.id} value={m.id}>
                      {m.id}
                      {m.status ? ` (${m.status})` : ""}
                    </option>
                  ))}
                </optgroup>
              ))}
            </select>
          </label>
          <label>
            {t("mode")}{" "}
            <select value={mode} onChange={(e) => setMode(e.target.value)} data-testid="mode">
              {modes.map((m) => (
                <option key={m.id} value={m.id}>
                  {m.name}
                </option>
              ))}
            </select>
          </label>
          <button className="link" onClick={() => setEditingModes(!editingModes)}>
            {t("editModes")}
          </button>
          {pending && (
            <span className="pending" data-testid="pending">
              {pending}
            </span>
          )}
        </div>
        {editingModes && (
          <ModesEditor
            modes={modes}
            onDone={(saved) => {
              setEditingModes(false);
              if (saved) {
                setModes(saved);
                if (!saved.some((m) => m.id === mode)) setMode(saved[0]?.id ?? "");
              }
            }}
          />
        )}
        <ol className="turns" aria-live="polite">
          {turns.map((m, i) => (
            <li key={i} className={`turn ${m.role}`} data-testid={`turn-${m.role}`}>
              {editing === i ? (
                <form
                  onSubmit={(e) => {
                    e.preventDefault();
                    setEditing(null);
                    void feedback(i, { correction: draft });
                  }}
                >
                  <textarea value={draft} onChange={(e) => setDraft(e.target.value)} aria-label={t("correct")} rows={5} />
                  <button type="submit">{t("sendCorrection")}</button>
                  <button type="button" className="link" onClick={() => setEditing(null)}>
                    {t("cancel")}
                  </button>
                </form>
              ) : m.role === "assistant" ? (
                <div className="md">
                  <Markdown skipHtml urlTransform={safeUrl}>
                    {m.content}
                  </Markdown>
                </div>
              ) : (
                <p className="plain">{m.content}</p>
              )}
              {m.role === "assistant" && !streaming && editing !== i && m.completionId !== undefined && (
                <div className="feedback">
                  <button className="icon" title={t("good")} aria-label={t("good")} onClick={() => setRating({ i, value: 5 })}>
                    <Thumb up />
                  </button>
                  <button className="icon" title={t("bad")} aria-label={t("bad")} onClick={() => setRating({ i, value: 1 })}>
                    <Thumb up={false} />
                  </button>
                  <button
                    className="link"
                    onClick={() => {
                      setDraft(m.content);
                      setEditing(i);
                    }}
                  >
                    {t("correct")}
                  </button>
                  {i === turns.length - 1 && (
                    <button className="link" onClick={() => void run(turns.slice(0, -1), true)}>
                      {t("regenerate")}
                    </button>
                  )}
                  {m.model && <span className="meta">{m.model}</span>}
                  {rating?.i === i && (
                    <form
                      className="row"
                      onSubmit={(e) => {
                        e.preventDefault();
                        const r = rating;
                        setRating(null);
                        setComment("");
                        void feedback(i, { rating: r.value, comment: comment.trim() || undefined });
                      }}
                    >
                      <input
                        value={comment}
                        onChange={(e) => setComment(e.target.value)}
                        placeholder={t("comment")}
                        aria-label={t("comment")}
                        maxLength={500}
                        autoFocus
                      />
                      <button type="submit">{t("send2")}</button>
                    </form>
                  )}
                  {m.verdict && (
                    <span className="verdict" data-testid="verdict">
                      {m.verdict}
                    </span>
                  )}
                </div>
              )}
            </li>
          ))}
        </ol>
        <ErrorLine error={error} />
        <form
          className="composer"
          onSubmit={(e) => {
            e.preventDefault();
            send();
          }}
        >
          <textarea
            value={input}
            placeholder={t("placeholder")}
            aria-label={t("placeholder")}
            rows={2}
            onChange={(e) => setInput(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && !e.shiftKey) {
                e.preventDefault();
                send();
              }
            }}
          />
          {streaming ? (
            <button type="button" onClick={() => abort.current?.abort()}>
              {t("stop")}
            </button>
          ) : (
            <button type="submit" disabled={!input.trim() || !model}>
              {t("send")}
            </button>
          )}
        </form>
      </section>
    </div>
  );
}
