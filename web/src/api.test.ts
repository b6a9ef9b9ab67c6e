import { describe, expect, it } from "vitest";
import { progressOf, type JobEvent } from "./api";

const step = (n: number, at: number, extra: Record<string, unknown> = {}): JobEvent => ({
  id: `ftevent-${n}`,
  created_at: at,
  level: "info",
  message: `Step ${n}`,
  type: "metrics",
  data: { step: n, total_steps: 10, train_loss: 2 - n / 10, tokens_per_second: 100 + n, ...extra },
});

describe("progressOf", () => {
  it("reads step, total, loss and tok/s from the newest step event, and estimates the rest", () => {
    const evs = [
      { ...step(0, 0), data: null, message: "Job started" },
      step(1, 100),
      step(3, 104),
    ];
    const p = progressOf(evs, 104);
    expect(p).toEqual({ step: 3, total: 10, tokPerS: 103, etaS: 14, loss: 1.7 });
  });

  it("has no ETA before two steps and none after the last", () => {
    expect(progressOf([step(1, 100)], 120).etaS).toBeNull();
    expect(progressOf([step(1, 100), step(10, 110)], 110).etaS).toBeNull();
  });
});
