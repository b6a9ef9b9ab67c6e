#!/usr/bin/env python3
"""Writes crates/forja-data/tests/data/hf.parquet with HF `datasets` (the
reader's fixture: a text column, a chat column, an int id, a license and a
null). Run with the peers' python: ~/.cache/forja-peers/venv/bin/python."""
import sys
from datasets import Dataset

out = sys.argv[1] if len(sys.argv) > 1 else "crates/forja-data/tests/data/hf.parquet"
rows = {
    "id": [1, 2, 3, 4],
    "text": ["Hola, ¿qué tal?", None, "print('hi')", "tres"],
    "messages": [
        None,
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
        None,
        None,
    ],
    "license": ["MIT", "apache-2.0", None, "GPL-3.0"],
}
# Two row groups so skipping across groups is exercised.
Dataset.from_dict(rows).to_parquet(out, batch_size=2)
print(out)
