// The shell: sign-in with a tenant key (kept in sessionStorage only), then
// the tabs. The tab lives in the URL's hash, never the key.
import { useEffect, useState } from "react";
import { Client, type WhoAmI } from "./api";
import { SessionContext } from "./context";
import { initialLang, tr, type Lang } from "./i18n";
import { Chat } from "./views/Chat";
import { Documents } from "./views/Documents";
import { Learning } from "./views/Learning";
import { Models } from "./views/Models";
import { Node } from "./views/Node";
import { ErrorLine, errorText } from "./views/common";

const KEY = "forja.key";
const LANG = "forja.lang";
const TABS = ["chat", "learning", "models", "documents", "node"] as const;
type Tab = (typeof TABS)[number];
/** A tenant key sees the tenant's tabs; an admin key acting for no tenant, the node. */
const TENANT_TABS: readonly Tab[] = ["chat", "learning", "models", "documents"];
const ADMIN_TABS: readonly Tab[] = ["node"];

function tabOf(hash: string): Tab {
  const h = hash.replace(/^#\/?/, "");
  return (TABS as readonly string[]).includes(h) ? (h as Tab) : "chat";
}

export function App() {
  const [lang, setLang] = useState<Lang>(() => initialLang(localStorage.getItem(LANG), navigator.language));
  const [session, setSession] = useState<{ client: Client; me: WhoAmI } | null>(null);
  const [tab, setTab] = useState<Tab>(() => tabOf(location.hash));
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const t = (k: Parameters<typeof tr>[1]) => tr(lang, k);

  const signIn = async (key: string) => {
    setBusy(true);
    setError(null);
    try {
      const client = new Client(key.trim());
      const me = await client.whoami();
      sessionStorage.setItem(KEY, key.trim());
      setSession({ client, me });
    } catch (e) {
      sessionStorage.removeItem(KEY);
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };

  useEffect(() => {
    const saved = sessionStorage.getItem(KEY);
    if (saved) void signIn(saved);
    const onHash = () => setTab(tabOf(location.hash));
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);

  useEffect(() => {
    document.documentElement.lang = lang;
    localStorage.setItem(LANG, lang);
  }, [lang]);

  const toggleLang = () => setLang(lang === "es" ? "en" : "es");

  if (!session) {
    return (
      <main className="signin">
        <h1>forja</h1>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const key = new FormData(e.currentTarget).get("key");
            if (typeof key === "string" && key.trim()) void signIn(key);
          }}
        >
          <label htmlFor="key">{t("apiKey")}</label>
          <input id="key" name="key" type="password" autoComplete="off" required autoFocus />
          <p className="help">{t("apiKeyHelp")}</p>
          <ErrorLine error={error} />
          <button type="submit" disabled={busy}>
            {t("signIn")}
          </button>
        </form>
        <button className="link" onClick={toggleLang}>
          {t("language")}
        </button>
      </main>
    );
  }

  const tabs = session.me.tenant ? TENANT_TABS : ADMIN_TABS;
  const shown: Tab = tabs.includes(tab) ? tab : tabs[0]!;
  const go = (to: Tab) => {
    location.hash = `#/${to}`;
    setTab(to);
  };
  return (
    <SessionContext.Provider value={{ ...session, lang }}>
      <header className="top">
        <strong className="brand">forja</strong>
        <nav aria-label="views">
          {tabs.map((k) => (
            <button key={k} className={shown === k ? "tab active" : "tab"} aria-current={shown === k} onClick={() => go(k)}>
              {t(k)}
            </button>
          ))}
        </nav>
        <span className="who" data-testid="tenant">
          {session.me.tenant?.name ?? "admin"}
        </span>
        <button className="link" onClick={toggleLang}>
          {t("language")}
        </button>
        <button
          className="link"
          onClick={() => {
            sessionStorage.removeItem(KEY);
            setSession(null);
          }}
        >
          {t("signOut")}
        </button>
      </header>
      {shown === "chat" && <Chat />}
      {shown === "learning" && <Learning />}
      {shown === "models" && <Models />}
      {shown === "documents" && <Documents />}
      {shown === "node" && <Node />}
    </SessionContext.Provider>
  );
}
