// UI strings in Spanish and English (the seeds' users speak Spanish).

const es = {
  signIn: "Entrar",
  apiKey: "Clave de API",
  apiKeyHelp: "La clave de tu organización (forja keys create). Se guarda solo en esta pestaña.",
  signOut: "Salir",
  chat: "Chat",
  learning: "Aprendizaje",
  models: "Modelos",
  newChat: "Nueva conversación",
  search: "Buscar",
  send: "Enviar",
  stop: "Detener",
  regenerate: "Regenerar",
  good: "Buena respuesta",
  bad: "Mala respuesta",
  correct: "Corregir",
  sendCorrection: "Enviar corrección",
  cancel: "Cancelar",
  rename: "Renombrar",
  delete: "Borrar",
  exportJson: "Exportar JSON",
  exportMd: "Exportar Markdown",
  model: "Modelo",
  mode: "Modo",
  placeholder: "Escribe tu mensaje…",
  curated: "Guardada para entrenar",
  duplicate: "Rechazada: duplicada",
  refused: "Rechazada",
  pending: "Pendientes",
  threshold: "umbral",
  trainNow: "Entrenar ahora",
  jobs: "Entrenamientos",
  noJobs: "Aún no hay entrenamientos.",
  step: "paso",
  eta: "quedan",
  loss: "pérdida",
  versions: "Versiones",
  promote: "Promover",
  rollback: "Volver a la anterior",
  confirmPromote: "¿Promover esta versión? Pasará a responder como campeona.",
  confirmForce: "La puerta de calidad no la aprobó. ¿Forzar la promoción?",
  rollbackReason: "¿Por qué vuelves a la versión anterior?",
  confirmToBase: "No hay una versión anterior: ¿volver al modelo base?",
  champion: "Campeona",
  before: "antes",
  after: "después",
  gate: "Puerta",
  status: "Estado",
  noVersions: "Aún no hay versiones entrenadas.",
  renamePrompt: "Nuevo título",
  confirmDelete: "¿Borrar esta conversación?",
  language: "English",
  modeTechnical: "Técnico",
  modeSimplified: "Sencillo",
  modeNarrated: "Narrado",
  comment: "Comentario (opcional)",
  scrubbed: "datos personales ocultados",
  liveStep: "Entrenando",
};

type Strings = typeof es;

const en: Strings = {
  signIn: "Sign in",
  apiKey: "API key",
  apiKeyHelp: "Your organisation's key (forja keys create). It is kept in this tab only.",
  signOut: "Sign out",
  chat: "Chat",
  learning: "Learning",
  models: "Models",
  newChat: "New conversation",
  search: "Search",
  send: "Send",
  stop: "Stop",
  regenerate: "Regenerate",
  good: "Good answer",
  bad: "Bad answer",
  correct: "Correct",
  sendCorrection: "Send correction",
  cancel: "Cancel",
  rename: "Rename",
  delete: "Delete",
  exportJson: "Export JSON",
  exportMd: "Export Markdown",
  model: "Model",
  mode: "Mode",
  placeholder: "Type your message…",
  curated: "Kept for training",
  duplicate: "Refused: duplicate",
  refused: "Refused",
  pending: "Pending",
  threshold: "threshold",
  trainNow: "Train now",
  jobs: "Training jobs",
  noJobs: "No training jobs yet.",
  step: "step",
  eta: "left",
  loss: "loss",
  versions: "Versions",
  promote: "Promote",
  rollback: "Roll back",
  confirmPromote: "Promote this version? It will answer as the champion.",
  confirmForce: "The quality gate did not pass it. Force the promotion?",
  rollbackReason: "Why are you rolling back?",
  confirmToBase: "There is no earlier version: serve the base model again?",
  champion: "Champion",
  before: "before",
  after: "after",
  gate: "Gate",
  status: "Status",
  noVersions: "No trained versions yet.",
  renamePrompt: "New title",
  confirmDelete: "Delete this conversation?",
  language: "Español",
  modeTechnical: "Technical",
  modeSimplified: "Simplified",
  modeNarrated: "Narrated",
  comment: "Comment (optional)",
  scrubbed: "personal data hidden",
  liveStep: "Training",
};

export type Lang = "es" | "en";
export type Key = keyof Strings;

const tables: Record<Lang, Strings> = { es, en };

/** The language to start in: the saved choice, else the browser's. */
export function initialLang(saved: string | null, browser: string): Lang {
  if (saved === "es" || saved === "en") return saved;
  return browser.toLowerCase().startsWith("es") ? "es" : "en";
}

/** The string `k` in `lang`. */
export function tr(lang: Lang, k: Key): string {
  return tables[lang][k];
}

/** Every key has a string in both languages (used by the tests). */
export function missing(): string[] {
  return (Object.keys(es) as Key[]).filter((k) => !en[k] || !es[k]);
}
