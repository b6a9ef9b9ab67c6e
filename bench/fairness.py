#!/usr/bin/env python3
"""Two-tenant fairness: tenant `quiet`'s one-token chat latency with and
without tenant `flood` saturating the server.

usage: fairness.py URL FLOOD_KEY QUIET_KEY [ROUNDS] [SAMPLES_PER_PHASE] [FLOOD_CLIENTS]

Alternates phases round by round (quiet alone, then quiet under the flood)
so both see the same machine state. The flood is FLOOD_CLIENTS clients each
sending `/v1/completions` with 4 prompts x n=8 and 128 tokens (ignore_eos),
back to back; answers 429 (over the tenant's in-flight cap) are counted and
retried after Retry-After. Prints p50/p90 of quiet's latency per phase, the
ratio, and the flood's throughput and refusals. Standard library only.
"""
import json
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request

url, flood_key, quiet_key = sys.argv[1], sys.argv[2], sys.argv[3]
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
samples = int(sys.argv[5]) if len(sys.argv) > 5 else 8
clients = int(sys.argv[6]) if len(sys.argv) > 6 else 4


def post(key, path, body, timeout=600):
    req = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), method="POST",
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read()), None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null"), e.headers.get("retry-after")


def quiet_once():
    t = time.perf_counter()
    st, _, _ = post(quiet_key, "/v1/chat/completions", {
        "model": "base", "messages": [{"role": "user", "content": "Hola"}],
        "max_tokens": 1, "temperature": 0})
    assert st == 200, st
    return time.perf_counter() - t


stop = threading.Event()
stats = {"ok": 0, "tokens": 0, "refused": 0}
lock = threading.Lock()


def flooder():
    body = {"model": "base", "prompt": ["El pleno", "La sesión", "El alcalde", "Se aprueba"],
            "n": 8, "max_tokens": 128, "ignore_eos": True, "temperature": 0.8}
    while not stop.is_set():
        st, v, retry = post(flood_key, "/v1/completions", body)
        with lock:
            if st == 200:
                stats["ok"] += 1
                stats["tokens"] += v["usage"]["completion_tokens"]
            elif st == 429:
                stats["refused"] += 1
        if st == 429:
            time.sleep(float(retry or 1))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


alone, flooded = [], []
quiet_once()  # warm-up
for r in range(rounds):
    alone += [quiet_once() for _ in range(samples)]
    stop.clear()
    threads = [threading.Thread(target=flooder, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(3)  # the flood fills the batch
    t0 = time.perf_counter()
    flooded += [quiet_once() for _ in range(samples)]
    dt = time.perf_counter() - t0
    stop.set()
    for t in threads:
        t.join()
    print(f"round {r + 1}: alone p50 {statistics.median(alone[-samples:]):.3f} s, "
          f"under flood p50 {statistics.median(flooded[-samples:]):.3f} s ({dt:.1f} s phase)", file=sys.stderr)

a50, f50 = statistics.median(alone), statistics.median(flooded)
print(f"quiet tenant, 1-token chat: alone p50 {a50:.3f} s p90 {pct(alone, 0.9):.3f} s; "
      f"under the flood p50 {f50:.3f} s p90 {pct(flooded, 0.9):.3f} s; ratio {f50 / a50:.2f}x")
print(f"flood: {stats['ok']} requests answered ({stats['tokens']} tokens), {stats['refused']} refused with 429")
