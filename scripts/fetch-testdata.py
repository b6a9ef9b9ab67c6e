#!/usr/bin/env python3
"""Fetch test data that forja's tests compare against, from PyPI only.

llama.cpp's tokenizer conformance files (vocab-only GGUFs plus expected
token ids, `models/ggml-vocab-*.gguf{,.inp,.out}`) ship inside the
llama-cpp-python source distribution. This downloads that sdist from the
PyPI simple index, checks its pinned sha256 and extracts only those files.
Idempotent: does nothing when the files are already there.

usage: scripts/fetch-testdata.py DEST_DIR
"""
import hashlib
import os
import re
import sys
import tarfile
import tempfile
import urllib.request

PACKAGE = "llama-cpp-python"
SDIST = "llama_cpp_python-0.3.36.tar.gz"
SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
INDEX = os.environ.get("FORJA_PYPI_SIMPLE", "https://pypi.org/simple")
PREFIX = "llama_cpp_python-0.3.36/vendor/llama.cpp/models/"


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    dest = sys.argv[1]
    stamp = os.path.join(dest, ".complete-" + SHA256[:12])
    if os.path.exists(stamp):
        return 0
    os.makedirs(dest, exist_ok=True)
    page = urllib.request.urlopen(f"{INDEX}/{PACKAGE}/", timeout=60).read().decode()
    links = [l for l in re.findall(r'href="([^"]+)"', page) if SDIST in l]
    if not links:
        print(f"error: {SDIST} not found on {INDEX}/{PACKAGE}/", file=sys.stderr)
        return 1
    url = links[0].split("#")[0]
    if url.startswith("/"):
        url = INDEX.split("/simple")[0] + url
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, SDIST)
        h = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=180) as r, open(path, "wb") as f:
            while chunk := r.read(1 << 20):
                h.update(chunk)
                f.write(chunk)
        if h.hexdigest() != SHA256:
            print(f"error: {SDIST}: sha256 {h.hexdigest()} != pinned {SHA256}", file=sys.stderr)
            return 1
        n = 0
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                name = m.name
                if name.startswith(PREFIX) and "/ggml-vocab-" in "/" + name[len(PREFIX):] and m.isfile():
                    m.name = os.path.basename(name)
                    tar.extract(m, dest, filter="data")
                    n += 1
    open(stamp, "w").close()
    print(f"extracted {n} llama.cpp vocab test files into {dest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
