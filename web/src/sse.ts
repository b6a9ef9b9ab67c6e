// Server-sent events from fetch() bodies. EventSource cannot send an
// Authorization header, and the API key must never be in a URL, so the UI
// reads SSE from fetch streams; `eventsource-parser` does the parsing.

import { createParser, type EventSourceParser } from "eventsource-parser";

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
  private done: SseMessage[] = [];
  private parser: EventSourceParser = createParser({
    onEvent: (e) => this.done.push({ event: e.event ?? "message", id: e.id, data: e.data }),
  });

  /** Parses `chunk` and returns the messages it completed. */
  push(chunk: string): SseMessage[] {
    this.parser.feed(chunk);
    const out = this.done;
    this.done = [];
    return out;
  }
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
