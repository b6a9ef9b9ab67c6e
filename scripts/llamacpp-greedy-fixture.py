#!/usr/bin/env python3
"""Record llama.cpp's greedy output as a test fixture.

Starts `llama-server` (from ../shared/peers/setup.sh llamacpp) on loopback
with the given GGUF, and for each prompt records llama.cpp's prompt tokens
(/tokenize) and its first N greedy tokens (/completion, top-k 1,
ignore_eos). forja's test `smollm2::greedy_matches_llama_cpp` replays them.

usage: scripts/llamacpp-greedy-fixture.py MODEL.gguf OUT.json [N] [-- extra llama-server flags]
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

PROMPTS = [
    # Raw completions (BOS handling as the model's GGUF says).
    {"kind": "raw", "text": "The capital of France is"},
    {"kind": "raw", "text": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"},
    {"kind": "raw", "text": "Once upon a time, in a small village by the sea,"},
    {"kind": "raw", "text": "El pleno del ayuntamiento aprobó por unanimidad"},
    # A chat turn, already rendered with SmolLM2's template.
    {"kind": "chat", "text": "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat are three uses of a paperclip?<|im_end|>\n<|im_start|>assistant\n"},
]


def post(port, path, body):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    return json.load(urllib.request.urlopen(req, timeout=120))


def main() -> int:
    argv, extra = sys.argv[1:], []
    if "--" in argv:
        extra = argv[argv.index("--") + 1:]
        argv = argv[: argv.index("--")]
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    model, out = argv[0], argv[1]
    n = int(argv[2]) if len(argv) == 3 else 48
    server = shutil.which("llama-server")
    if not server:
        print("llama-server not on PATH: run ../shared/peers/setup.sh llamacpp and source its env", file=sys.stderr)
        return 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [server, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-t", "2", "-c", "2048", "-np", "1", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        cases = []
        for p in PROMPTS:
            # /completion tokenizes with special tokens parsed and BOS per the model.
            toks = post(port, "/tokenize", {"content": p["text"], "add_special": p["kind"] == "raw", "parse_special": True})["tokens"]
            r = post(port, "/completion", {
                "prompt": toks, "n_predict": n, "temperature": 0, "top_k": 1, "samplers": ["top_k"],
                "ignore_eos": True, "cache_prompt": False, "return_tokens": True, "seed": 0,
            })
            cases.append({"kind": p["kind"], "prompt": p["text"], "prompt_tokens": toks, "tokens": r["tokens"], "text": r["content"]})
        version = subprocess.run([server, "--version"], capture_output=True, text=True)
        doc = {
            "generator": "scripts/llamacpp-greedy-fixture.py",
            "llama_cpp": (version.stdout + version.stderr).strip().splitlines()[0] if (version.stdout + version.stderr).strip() else "unknown",
            "model": os.path.basename(model),
            "server_flags": extra,
            "cases": cases,
        }
        with open(out, "w") as f:
            json.dump(doc, f, indent=1, ensure_ascii=False)
            f.write("\n")
    finally:
        proc.terminate()
        proc.wait()
    print(f"wrote {len(cases)} cases to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
