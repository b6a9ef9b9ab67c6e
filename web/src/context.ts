// What every view needs: the API client, who is signed in, the language.
import { createContext, useContext } from "react";
import type { Client, WhoAmI } from "./api";
import { tr, type Key, type Lang } from "./i18n";

export interface Session {
  client: Client;
  me: WhoAmI;
  lang: Lang;
}

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session & { t: (k: Key) => string } {
  const s = useContext(SessionContext);
  if (!s) throw new Error("useSession outside a signed-in view");
  return { ...s, t: (k: Key) => tr(s.lang, k) };
}
