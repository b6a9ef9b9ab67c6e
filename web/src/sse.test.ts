import { describe, expect, it } from "vitest";
import { SseParser } from "./sse";

describe("SseParser", () => {
  it("parses events split across chunks, with ids, names and keep-alives", () => {
    const p = new SseParser();
    expect(p.push("id: ftevent-1\ndata: {\"a\"")).toEqual([]);
    expect(p.push(":1}\n\n: keep-alive\n\nevent: done\r\ndata: x\r\n\r\n")).toEqual([
      { event: "message", id: "ftevent-1", data: '{"a":1}' },
      { event: "done", id: undefined, data: "x" },
    ]);
  });

  it("joins multi-line data and ignores unknown fields", () => {
    const p = new SseParser();
    expect(p.push("retry: 10\ndata: one\ndata: two\nfoo: bar\n\n")).toEqual([
      { event: "message", id: undefined, data: "one\ntwo" },
    ]);
  });

  it("reads OpenAI's chat stream end marker as data", () => {
    const p = new SseParser();
    const msgs = p.push('data: {"choices":[{"delta":{"content":"Ho"}}]}\n\ndata: [DONE]\n\n');
    expect(msgs.map((m) => m.data)).toEqual(['{"choices":[{"delta":{"content":"Ho"}}]}', "[DONE]"]);
  });
});
