#!/usr/bin/env python3
"""Loads a `forja curate` output directory with Hugging Face `datasets` and
checks it against manifest.json: every split loads, row counts match, chat
rows are lists of {role, content}. Run with the peers' python
(../shared/peers/setup.sh py):

    ~/.cache/forja-peers/venv/bin/python scripts/datasets-check.py target/curated/acme
"""
import json
import sys
from pathlib import Path

from datasets import load_dataset

out = Path(sys.argv[1])
manifest = json.loads((out / "manifest.json").read_text())
ds = load_dataset(str(out / "data"))
print(ds)
want = manifest["counts"]["splits"]
got = {name: split.num_rows for name, split in ds.items()}
assert got == want, f"rows per split: datasets {got}, manifest {want}"
for name, split in ds.items():
    for row in split.select(range(min(50, split.num_rows))):
        if "messages" in row:
            assert all(set(m) == {"role", "content"} for m in row["messages"]), row
            assert row["messages"][-1]["role"] == "assistant", row
print(f"ok: {sum(got.values())} rows in {len(got)} splits match the manifest "
      f"(dataset {manifest['dataset_sha256'][:16]})")
