// A server-sent events parser for fetch() bodies. EventSource cannot send
// an Authorization header, and the API key must never be in a URL, so the
// UI reads SSE from fetch streams with this.

/** One SSE message. */
export interface SseMessage {
  /** `event:` name; "message" when the server gave none. */
  event: string;
  /** `id:`, when given. */
  id?: string;
  /** The `data:` lines, joined with "\n". */
  data: string;
}

/** Incremental parser: feed text chunks, get whole messages. */
export class SseParser {
  private buf = "";

  /** Parses `chunk` and returns the messages it completed. */
  push(chunk: string): SseMessage[] {
    this.buf += chunk.replace(/\r\n?/g, "\n");
    const out: SseMessage[] = [];
    let end: number;
    while ((end = this.buf.indexOf("\n\n")) >= 0) {
      const block = this.buf.slice(0, end);
      this.buf = this.buf.slice(end + 2);
      const msg = parseBlock(block);
      if (msg) out.push(msg);
    }
    return out;
  }
}

function parseBlock(block: string): SseMessage | undefined {
  let event = "message";
  let id: string | undefined;
  const data: string[] = [];
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue; // comments: keep-alives
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "id") id = value;
    else if (field === "data") data.push(value);
  }
  if (data.length === 0) return undefined;
  return { event, id, data: data.join("\n") };
}

/** Reads `body` to its end (or until `signal` aborts), yielding messages. */
export async function* readSse(
  body: ReadableStream<Uint8Array>,
  signal?: AbortSignal,
): AsyncGenerator<SseMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  try {
    while (!signal?.aborted) {
      const { done, value } = await reader.read();
      if (done) break;
      for (const m of parser.push(decoder.decode(value, { stream: true }))) yield m;
    }
  } finally {
    reader.releaseLock();
  }
}
