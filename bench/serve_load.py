#!/usr/bin/env python3
"""Latency of forja serving around a hot-swap, with zero failed requests.

usage: serve_load.py URL KEY [CONCURRENCY] [PHASE_SECONDS]

Trains two adapters through the jobs API (tiny data, one epoch each),
promotes the first, then keeps CONCURRENCY clients sending chat requests
to `default@champion` while it promotes the second. Prints p50/p99 latency
and failures before, during (promotion until every client sees the new
version) and after the swap. Standard library only.
"""
import json
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request

url, key = sys.argv[1], sys.argv[2]
conc = int(sys.argv[3]) if len(sys.argv) > 3 else 4
phase_s = float(sys.argv[4]) if len(sys.argv) > 4 else 20.0
H = {"authorization": f"Bearer {key}"}


def call(method, path, body=None, ctype="application/json"):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method, headers={**H, "content-type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def train(tag):
    lines = "".join(
        json.dumps({"messages": [{"role": "user", "content": f"{tag} question {i}"},
                                 {"role": "assistant", "content": f"{tag} answer {i}"}]}) + "\n"
        for i in range(16)
    )
    b = "forjabench"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n--{b}\r\n"
            f"Content-Disposition: form-data; name=\"file\"; filename=\"{tag}.jsonl\"\r\n\r\n{lines}\r\n--{b}--\r\n").encode()
    st, f = call("POST", "/v1/files", body, f"multipart/form-data; boundary={b}")
    assert st == 200, f
    st, j = call("POST", "/v1/fine_tuning/jobs", {"model": "default", "training_file": f["id"],
                                                  "hyperparameters": {"n_epochs": 1, "batch_size": 8}})
    assert st == 200, j
    while True:
        st, j = call("GET", f"/v1/fine_tuning/jobs/{j['id']}")
        if j["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(1)
    assert j["status"] == "succeeded", j
    while True:
        st, l = call("GET", "/v1/registry/models")
        v = [m for m in l["data"] if m.get("job_id") == j["id"]]
        if v:
            return v[0]["id"]
        time.sleep(0.5)


def chat():
    return call("POST", "/v1/chat/completions", {
        "model": "default@champion", "max_tokens": 16, "temperature": 0,
        "messages": [{"role": "user", "content": "Summarise the session in one sentence."}]})


def promote(v):
    st, r = call("POST", f"/v1/registry/models/{v}/promote", {"force": True})
    assert st == 200, r


print(f"training two adapters ...", file=sys.stderr)
v1, v2 = train("alpha"), train("beta")
promote(v1)
while chat()[1].get("model") != v1:
    time.sleep(0.2)

records = []  # (t_start, latency_s, ok, model)
stop = threading.Event()


def client():
    while not stop.is_set():
        t = time.time()
        try:
            st, r = chat()
            ok, model = st == 200, (r or {}).get("model")
        except Exception:
            ok, model = False, None
        records.append((t, time.time() - t, ok, model))


threads = [threading.Thread(target=client) for _ in range(conc)]
for th in threads:
    th.start()
time.sleep(phase_s)
t_promote = time.time()
promote(v2)
while not any(r[3] == v2 and r[0] > t_promote for r in records):
    time.sleep(0.05)
t_swapped = max(r[0] + r[1] for r in records if r[3] == v2)
last_v1 = max((r[0] + r[1] for r in records if r[3] == v1), default=t_promote)
t_during_end = max(t_swapped, last_v1)
time.sleep(phase_s)
stop.set()
for th in threads:
    th.join()


def phase(name, lo, hi):
    rs = [r for r in records if lo <= r[0] < hi]
    lat = sorted(r[1] for r in rs if r[2])
    fails = sum(1 for r in rs if not r[2])
    if not lat:
        print(f"{name:7} requests=0 failed={fails}")
        return
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print(f"{name:7} requests={len(rs):4d} failed={fails} p50={p(0.5)*1000:7.1f} ms p99={p(0.99)*1000:7.1f} ms "
          f"mean={statistics.mean(lat)*1000:7.1f} ms")


print(f"concurrency={conc} max_tokens=16 swap took {(t_swapped - t_promote)*1000:.0f} ms (promote -> first answer from the new version)")
phase("before", 0, t_promote)
phase("during", t_promote, t_during_end)
phase("after", t_during_end, float("inf"))
total_fail = sum(1 for r in records if not r[2])
print(f"total requests={len(records)} failed={total_fail}")
sys.exit(1 if total_fail else 0)
