#!/usr/bin/env python3
"""Two-tenant fairness: tenant `quiet`'s one-token chat latency with and
without tenant `flood` saturating the server.

usage: fairness.py [--rounds R] [--samples S] [--clients C] [--phase-s P] LABEL=URL,FLOOD_KEY,QUIET_KEY...

Each round runs, for every server in turn (so all see the same machine
state): S quiet requests alone, then the flood (C clients each sending
`/v1/completions` with 4 prompts x n=8 and 128 tokens, ignore_eos, back to
back; answers 429 are counted and retried after Retry-After), 3 s for it
to fill the batch, and S quiet requests under it. A phase stops early once
it has run P seconds (at least one request), so a server that makes the
quiet tenant wait minutes is measured with fewer samples, not for hours;
a quiet request unanswered after --timeout-s counts as "> TIMEOUT". Prints p50/p90 of quiet's
latency per phase and server, the ratio, and the flood's throughput and
refusals. Standard library only.
"""
import argparse
import json
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request


def post(url, key, path, body, timeout=900):
    req = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), method="POST",
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read()), None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), e.headers.get("retry-after")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def fmt(x, cap):
    return f"> {cap:.0f}" if x == float("inf") else f"{x:.3f}"


class Target:
    def __init__(self, spec):
        self.label, rest = spec.split("=", 1)
        self.url, self.flood_key, self.quiet_key = rest.split(",")
        self.alone, self.flooded = [], []
        self.stats = {"ok": 0, "tokens": 0, "refused": 0}
        self.lock = threading.Lock()
        self.cap = 900

    def quiet_once(self, timeout=900):
        """Seconds to answer, or `inf` when no answer came within `timeout`."""
        t = time.perf_counter()
        try:
            st, _, _ = post(self.url, self.quiet_key, "/v1/chat/completions", {
                "model": "base", "messages": [{"role": "user", "content": "Hola"}],
                "max_tokens": 1, "temperature": 0}, timeout=timeout)
        except (TimeoutError, urllib.error.URLError) as e:
            if isinstance(e, urllib.error.URLError) and not isinstance(e.reason, TimeoutError):
                raise
            return float("inf")
        assert st == 200, st
        return time.perf_counter() - t

    def flooder(self, stop):
        body = {"model": "base", "prompt": ["El pleno", "La sesión", "El alcalde", "Se aprueba"],
                "n": 8, "max_tokens": 128, "ignore_eos": True, "temperature": 0.8}
        while not stop.is_set():
            st, v, retry = post(self.url, self.flood_key, "/v1/completions", body)
            with self.lock:
                if st == 200:
                    self.stats["ok"] += 1
                    self.stats["tokens"] += v["usage"]["completion_tokens"]
                elif st == 429:
                    self.stats["refused"] += 1
            if st == 429:
                time.sleep(float(retry or 1))

    def phase(self, samples, budget):
        t0, out = time.perf_counter(), []
        while len(out) < samples and (not out or time.perf_counter() - t0 < budget):
            out.append(self.quiet_once(timeout=self.cap))
        return out

    def round(self, samples, clients, budget):
        self.alone += self.phase(samples, budget)
        stop = threading.Event()
        threads = [threading.Thread(target=self.flooder, args=(stop,), daemon=True)
                   for _ in range(clients)]
        for t in threads:
            t.start()
        time.sleep(3)  # the flood fills the batch
        self.flooded += self.phase(samples, budget)
        stop.set()
        for t in threads:
            t.join(self.cap)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--phase-s", type=float, default=120)
    ap.add_argument("--timeout-s", type=float, default=900,
                    help="a quiet request unanswered this long counts as > TIMEOUT")
    ap.add_argument("targets", nargs="+")
    a = ap.parse_args()
    targets = [Target(s) for s in a.targets]
    for t in targets:
        t.cap = a.timeout_s
    for t in targets:
        t.quiet_once()  # warm-up
    for r in range(a.rounds):
        for t in targets:
            n = (len(t.alone), len(t.flooded))
            t.round(a.samples, a.clients, a.phase_s)
            alone, flooded = t.alone[n[0]:], t.flooded[n[1]:]
            print(f"round {r + 1} {t.label}: alone p50 {fmt(pct(alone, 0.5), t.cap)} s ({len(alone)}), "
                  f"under flood p50 {fmt(pct(flooded, 0.5), t.cap)} s ({len(flooded)})", file=sys.stderr,
                  flush=True)
    for t in targets:
        a50, f50 = statistics.median(t.alone), statistics.median(t.flooded)
        ratio = "n/a" if f50 == float("inf") else f"{f50 / a50:.2f}x"
        print(f"{t.label}: quiet tenant, 1-token chat: alone p50 {fmt(a50, t.cap)} s "
              f"p90 {fmt(pct(t.alone, 0.9), t.cap)} s ({len(t.alone)}); under the flood "
              f"p50 {fmt(f50, t.cap)} s p90 {fmt(pct(t.flooded, 0.9), t.cap)} s "
              f"({len(t.flooded)}); ratio {ratio}; "
              f"flood: {t.stats['ok']} requests answered ({t.stats['tokens']} tokens), "
              f"{t.stats['refused']} refused with 429")


if __name__ == "__main__":
    main()
