// The typed client of the node's API, as the UI uses it. Every call sends
// the key in the Authorization header (never in a URL); streams are read
// from fetch bodies (see sse.ts). The paths here are checked against the
// server's router by crates/forja-server/tests/web_ui.rs.

import { readSse } from "./sse";

export interface List<T> {
  object: "list";
  data: T[];
  has_more?: boolean;
}

export interface WhoAmI {
  /** `null` for an admin key that acts for no tenant. */
  tenant: { id: string; name: string; tier: string } | null;
  key: { id: string; role: "tenant" | "admin" };
  policy: {
    threshold: number | null;
    allow_forced_promotion: boolean;
    base_model: string | null;
    storage_mb: number;
  } | null;
}

export interface NodeState {
  version: string;
  uptime_s: number;
  ready: boolean;
  model: string | null;
  embedding_models: string[];
  workers: number;
  serving: { active: number; queued: number; batch_live: number };
  jobs: Record<string, number>;
  tenants: number;
  memory: { rss_bytes: number | null };
  metrics_url: string;
}

export interface Auditor {
  id: string;
  name: string;
  public_key: string;
  reputation: number;
  active: boolean;
}

export interface AuditVote {
  auditor: string;
  decision: "approve" | "reject";
  report_sha256: string;
  signed_at: number;
  reputation: number;
}

export interface Audit {
  version: string;
  status: string;
  status_reason: string | null;
  report_sha256: string | null;
  votes: AuditVote[];
  tally: {
    votes: number;
    approvals: number;
    min_votes: number;
    approve_share: number;
    approve_fraction: number;
    weighted: boolean;
    outstanding: number;
    deadline: number;
    verdict: "pending" | "approved" | "rejected";
  };
}

/** What `POST /v1/registry/models/{id}/votes` takes. */
export interface SignedVote {
  auditor: string;
  decision: "approve" | "reject";
  report_sha256: string;
  signed_at: number;
  signature: string;
}

export interface GoldenSet {
  id: string;
  version: number;
  name: string;
  examples: number;
  created_at: number;
}

export interface GoldenPage extends GoldenSet {
  offset: number;
  total: number;
  data: { id: string; prompt: string | null; messages: ChatMessage[] | null; reference: string }[];
}

export interface Lineage {
  version: Version;
  ancestors: Version[];
  job: Job | null;
  training_file: { id: string; filename: string; sha256: string } | null;
  golden_set: GoldenSet | null;
  aliases: string[];
}

export interface Model {
  id: string;
  owned_by: string;
  parent: string | null;
  status?: string;
  serving?: string | null;
}

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface ChatResult {
  id: string;
  model: string;
  text: string;
  finishReason: string | null;
}

export interface FeedbackItem {
  messages: ChatMessage[];
  output?: string;
  correction?: string;
  /** 1 (bad) to 5 (good). */
  rating?: number;
  completion_id?: string;
  metadata?: Record<string, string>;
}

export interface FeedbackResult {
  data: { id: string; status: string; reason: string | null; job_id: string | null }[];
  job: Job | null;
  held: string | null;
}

export interface Job {
  id: string;
  status: string;
  model: string;
  created_at: number;
  finished_at: number | null;
  fine_tuned_model: string | null;
  trigger?: string;
  trained_tokens: number | null;
  /** What a triggered job trains on: new, replayed and general rows, and its warm start. */
  training_mix?: {
    new_examples: number;
    replay_examples: number;
    general_rows: number;
    warm_start_from: string | null;
  } | null;
  progress?: { step: number; total_steps: number; progress_percent: number } | null;
  error?: { message: string } | null;
}

export interface JobEvent {
  id: string;
  created_at: number;
  level: string;
  message: string;
  type: string;
  data: Record<string, unknown> | null;
}

export interface LearningStatus {
  pending: { curated: number; rejected: number; claimed: number; held: number };
  threshold: number | null;
  running: { id: string; step: number; total_steps: number; progress_percent: number } | null;
  recent_jobs: Job[];
  champion: Version | null;
  candidate: Version | null;
}

export interface Metrics {
  wer?: number;
  cer?: number;
  similarity?: number;
  exact_match?: number;
  loss?: number;
}

export interface Version {
  id: string;
  status: string;
  aliases?: string[];
  dataset_sha256?: string | null;
  hyperparameters?: Record<string, unknown> | null;
  parent_id: string | null;
  job_id: string | null;
  created_at: number;
  status_reason?: string | null;
  gate?: { outcome: string; reasons: string[] } | null;
  eval?: {
    summary?: {
      baseline?: { subject?: string; metrics?: Metrics };
      candidate?: { metrics?: Metrics };
    };
  } | null;
}

export interface EvalExample {
  id: string;
  reference: string;
  prediction: string;
}

export interface EvalSide {
  metrics: Record<string, number>;
  examples: EvalExample[];
  subject?: string;
}

/** One general-probe comparison of the gate (candidate vs the base model). */
export interface ProbeCheck {
  measure: string;
  candidate: number;
  base: number;
  passed: boolean;
  rule: string;
}

/** A version's stored evaluation: the candidate, its baseline, the gate. */
export interface EvalReport {
  version: string;
  candidate: EvalSide;
  baseline: EvalSide;
  gate: { outcome: string; reasons: string[]; probe_checks?: ProbeCheck[] } | null;
}

export interface ChatMode {
  id: string;
  name: string;
  prompt: string;
}

export interface Conversation {
  id: string;
  title: string;
  model: string | null;
  mode: string | null;
  messages_count: number;
  updated_at: number;
  messages?: (ChatMessage & { id: string; completion_id: string | null })[];
}

export interface DocumentRow {
  id: string;
  kind: "transcript" | "generated" | "final";
  parent_id: string | null;
  session: string | null;
  version: number;
  filename: string;
  bytes: number;
  created_at: number;
}

export interface DeltaParagraph {
  op: string;
  generated: number[];
  final: number[];
  chunk_ids: string[];
  edit_ratio: number;
  generated_text: string | null;
  final_text: string | null;
  learning: "training_pair" | "dictionary" | "none";
  reason?: string;
  entities?: { wrong: string; right: string }[];
  example?: { id: string; status: string; reason: string | null };
}

export interface CorrectionResult {
  summary: Record<string, number>;
  learning: Record<string, number>;
  paragraphs: DeltaParagraph[];
  document: DocumentRow;
  compared_with: DocumentRow;
  dictionary_updated: boolean;
  job: Job | null;
}

export interface DictionaryEntry {
  wrong: string;
  right: string;
  source_document: string | null;
  source_chunk: string | null;
}

/** An error answer of the API: its status, code, field and message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly param: string | null,
    message: string,
  ) {
    super(message);
  }
}

export class Client {
  constructor(
    private readonly key: string,
    private readonly base = "",
  ) {}

  /** One request: the key in its header, never in the URL; a non-2xx answer throws. */
  private async request(
    method: string,
    path: string,
    body?: BodyInit,
    contentType?: string,
    signal?: AbortSignal,
  ): Promise<Response> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.key}` };
    if (contentType) headers["Content-Type"] = contentType;
    const r = await fetch(this.base + path, {
      method,
      headers,
      body,
      signal,
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
    if (!r.ok) throw await errorOf(r);
    return r;
  }

  /** A request with a JSON body (or none). */
  private send(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<Response> {
    return body === undefined
      ? this.request(method, path, undefined, undefined, signal)
      : this.request(method, path, JSON.stringify(body), "application/json", signal);
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    return (await this.send(method, path, body)).json() as Promise<T>;
  }

  whoami = () => this.json<WhoAmI>("GET", "/v1/whoami");
  models = () => this.json<List<Model>>("GET", "/v1/models");
  feedback = (item: FeedbackItem) => this.json<FeedbackResult>("POST", "/v1/feedback", item);
  learningStatus = () => this.json<LearningStatus>("GET", "/v1/learning/status");
  jobs = () => this.json<List<Job>>("GET", "/v1/fine_tuning/jobs?limit=20");
  job = (id: string) => this.json<Job>("GET", `/v1/fine_tuning/jobs/${enc(id)}`);
  trainNow = () => this.json<Job>("POST", "/v1/learning/train", {});
  versions = () => this.json<List<Version>>("GET", "/v1/registry/models");
  lineage = (id: string) => this.json<Lineage>("GET", `/v1/registry/models/${enc(id)}/lineage`);
  goldenSets = () => this.json<List<GoldenSet>>("GET", "/v1/registry/golden");
  golden = (id: string, offset: number) =>
    this.json<GoldenPage>("GET", `/v1/registry/golden/${enc(id)}?offset=${offset}&limit=20`);
  node = () => this.json<NodeState>("GET", "/v1/admin/node");

  /** Uploads a golden set (JSONL) as a new version of the file's name. */
  async uploadGolden(file: File): Promise<GoldenSet> {
    const path = `/v1/registry/golden?name=${encodeURIComponent(file.name)}`;
    return (await this.request("POST", path, file, "application/jsonl")).json() as Promise<GoldenSet>;
  }
  evalReport = (id: string) => this.json<EvalReport>("GET", `/v1/registry/models/${enc(id)}/eval`);
  promote = (id: string, force: boolean) =>
    this.json<Version>("POST", `/v1/registry/models/${enc(id)}/promote`, { force });
  rollback = (reason: string, toBase = false) =>
    this.json<unknown>("POST", "/v1/registry/rollback", { reason, to_base: toBase });
  auditors = () => this.json<List<Auditor>>("GET", "/v1/registry/auditors");
  audit = (id: string) => this.json<Audit>("GET", `/v1/registry/models/${enc(id)}/votes`);
  vote = (id: string, v: SignedVote) =>
    this.json<Audit>("POST", `/v1/registry/models/${enc(id)}/votes`, v);
  conversations = (search?: string) =>
    this.json<List<Conversation>>(
      "GET",
      `/v1/conversations?limit=100${search ? `&search=${encodeURIComponent(search)}` : ""}`,
    );
  conversation = (id: string) => this.json<Conversation>("GET", `/v1/conversations/${enc(id)}`);
  createConversation = (c: { title?: string; model?: string; mode?: string; messages: ChatMessage[] }) =>
    this.json<Conversation>("POST", "/v1/conversations", c);
  appendMessages = (id: string, messages: (ChatMessage & { completion_id?: string })[]) =>
    this.json<Conversation>("POST", `/v1/conversations/${enc(id)}/messages`, { messages });
  renameConversation = (id: string, title: string) =>
    this.json<Conversation>("PATCH", `/v1/conversations/${enc(id)}`, { title });
  deleteConversation = (id: string) => this.json<unknown>("DELETE", `/v1/conversations/${enc(id)}`);

  modes = () => this.json<List<ChatMode> & { custom: boolean }>("GET", "/v1/modes");
  saveModes = (modes: ChatMode[]) => this.json<List<ChatMode>>("PUT", "/v1/modes", { modes });
  resetModes = () => this.json<List<ChatMode>>("DELETE", "/v1/modes");
  documents = () => this.json<List<DocumentRow>>("GET", "/v1/documents");
  dictionary = () => this.json<List<DictionaryEntry>>("GET", "/v1/dictionary");
  removeDictionary = (wrong: string) => this.json<unknown>("DELETE", `/v1/dictionary/${enc(wrong)}`);

  /** A chart of learning (PNG): a version's loss, or metrics across versions. */
  async versionLossChart(id: string): Promise<Blob> {
    return (await this.send("GET", `/v1/registry/models/${enc(id)}/loss.png`)).blob();
  }
  async metricsChart(metrics: string): Promise<Blob> {
    return (await this.send("GET", `/v1/registry/metrics.png?metric=${enc(metrics)}`)).blob();
  }

  /** A stored document's bytes (a draft or a final DOCX). */
  async documentContent(id: string): Promise<Blob> {
    return (await this.send("GET", `/v1/documents/${enc(id)}/content`)).blob();
  }

  /** Uploads a corrected DOCX; without `generatedId`, the draft it names. */
  async uploadCorrection(file: File, generatedId?: string): Promise<CorrectionResult> {
    const form = new FormData();
    form.append("file", file, file.name);
    if (generatedId) form.append("generated_id", generatedId);
    return (await this.request("POST", "/v1/corrections", form)).json() as Promise<CorrectionResult>;
  }

  /** The export as a Blob (the key stays in the header, not in a link). */
  async exportConversation(id: string, format: "json" | "markdown"): Promise<Blob> {
    return (await this.send("GET", `/v1/conversations/${enc(id)}/export?format=${format}`)).blob();
  }

  /** Streams a chat completion; `onText` gets the text so far. */
  async chat(
    req: { model: string; messages: ChatMessage[]; max_tokens?: number; temperature?: number },
    onText: (text: string) => void,
    signal: AbortSignal,
  ): Promise<ChatResult> {
    const r = await this.send("POST", "/v1/chat/completions", { ...req, stream: true }, signal);
    const out: ChatResult = { id: "", model: req.model, text: "", finishReason: null };
    if (!r.body) return out;
    try {
      for await (const m of readSse(r.body, signal)) {
        if (m.data === "[DONE]") break;
        const chunk = JSON.parse(m.data) as {
          id?: string;
          model?: string;
          error?: { message: string; code?: string };
          choices?: { delta?: { content?: string }; finish_reason?: string | null }[];
        };
        if (chunk.error) throw new ApiError(500, chunk.error.code ?? "stream_error", null, chunk.error.message);
        out.id = chunk.id ?? out.id;
        out.model = chunk.model ?? out.model;
        const c = chunk.choices?.[0];
        if (c?.delta?.content) {
          out.text += c.delta.content;
          onText(out.text);
        }
        if (c?.finish_reason) out.finishReason = c.finish_reason;
      }
    } catch (e) {
      if (!signal.aborted) throw e;
      out.finishReason = "stopped";
    }
    return out;
  }

  /** Follows a job's events live until it ends or `signal` aborts. */
  async followJob(
    id: string,
    on: { event: (e: JobEvent) => void; job: (j: Job) => void },
    signal: AbortSignal,
  ): Promise<void> {
    const r = await this.send("GET", `/v1/fine_tuning/jobs/${enc(id)}/events/stream`, undefined, signal);
    if (!r.body) return;
    try {
      for await (const m of readSse(r.body, signal)) {
        if (m.event === "message") on.event(JSON.parse(m.data) as JobEvent);
        else if (m.event === "job" || m.event === "done") on.job(JSON.parse(m.data) as Job);
        if (m.event === "done") return;
      }
    } catch (e) {
      if (!signal.aborted) throw e;
    }
  }
}

function enc(s: string): string {
  return encodeURIComponent(s);
}

async function errorOf(r: Response): Promise<ApiError> {
  try {
    const b = (await r.json()) as { error?: { message?: string; code?: string; param?: string | null } };
    return new ApiError(r.status, b.error?.code ?? "error", b.error?.param ?? null, b.error?.message ?? r.statusText);
  } catch {
    return new ApiError(r.status, "error", null, `HTTP ${r.status}`);
  }
}

/** Progress of a job from its step events: step, total, tok/s, ETA (s). */
export function progressOf(
  events: JobEvent[],
  now: number,
): { step: number; total: number; tokPerS: number | null; etaS: number | null; loss: number | null } {
  let step = 0;
  let total = 0;
  let tokPerS: number | null = null;
  let loss: number | null = null;
  let first: { step: number; at: number } | null = null;
  let last: { step: number; at: number } | null = null;
  for (const e of events) {
    const d = e.data ?? {};
    if (typeof d.step === "number" && typeof d.train_loss === "number") {
      step = d.step;
      total = typeof d.total_steps === "number" ? d.total_steps : total;
      loss = d.train_loss;
      tokPerS = typeof d.tokens_per_second === "number" ? d.tokens_per_second : tokPerS;
      first ??= { step: d.step, at: e.created_at };
      last = { step: d.step, at: e.created_at };
    }
  }
  let etaS: number | null = null;
  if (first && last && last.step > first.step && total > step) {
    const perStep = (last.at - first.at) / (last.step - first.step);
    etaS = Math.max(0, Math.round(perStep * (total - step) - (now - last.at)));
  }
  return { step, total, tokPerS, etaS, loss };
}
