#!/usr/bin/env python3
"""Record sentence-transformers' all-MiniLM-L6-v2 embeddings as a test fixture.

forja's test `crates/forja-engine/tests/it/minilm.rs` embeds the same sentences
with `forja_engine::Embedder` and compares every component with these.

The sentences mix Spanish and English, short and long texts, accents,
digits and punctuation, a single word, and one text longer than the model's
256 word pieces (sentence-transformers truncates it; so must forja).

The model is read from forja's own install (no network, no Hugging Face
hub), so both sides see byte-identical files:

    ./target/debug/forja models install minilm
    ~/.cache/forja-peers/venv/bin/python scripts/minilm-reference.py \\
        ~/.cache/forja/models/all-minilm-l6-v2 \\
        [crates/forja-engine/tests/fixtures/minilm_reference.json]

The peers venv (../shared/peers) has sentence-transformers and torch; the
versions used are written into the fixture.

usage: scripts/minilm-reference.py MODEL_DIR [OUT.json]
"""
import json
import os
import sys

LONG = " ".join(
    f"Párrafo {i}: el modelo lee la frase número {i} y, sin prisa, la convierte en un vector."
    for i in range(1, 30)
)

SENTENCES = [
    "Hola",
    "The quick brown fox jumps over the lazy dog.",
    "El veloz murciélago hindú comía feliz cardillo y kiwi.",
    "¿Dónde está la estación de tren más cercana?",
    "A man is playing a guitar on the street.",
    "Un hombre toca la guitarra en la calle.",
    "Order #4521 shipped on 2024-03-15 for $1,299.99 (3 items).",
    "¡Atención! Niño, pingüino, acción: ñandú, café & crème brûlée...",
    "Machine learning models convert text into dense vectors, which can be "
    "compared with cosine similarity to find semantically related documents "
    "even when they share no words.",
    "Los modelos de lenguaje pequeños pueden ejecutarse en una CPU sin "
    "problemas, siempre que la memoria alcance para los pesos.",
    "   whitespace   around\tand\ninside   ",
    LONG,
]


def to_json(fixture):
    """Pretty JSON with each list of numbers (one embedding) on one line."""
    lines = []
    for i, (key, value) in enumerate(fixture.items()):
        sep = "," if i + 1 < len(fixture) else ""
        if key == "embeddings":
            rows = [json.dumps(v) for v in value]
            body = "[\n  " + ",\n  ".join(rows) + "\n ]"
        elif key == "sentences":
            rows = [json.dumps(v, ensure_ascii=False) for v in value]
            body = "[\n  " + ",\n  ".join(rows) + "\n ]"
        else:
            body = json.dumps(value, ensure_ascii=False)
        lines.append(f" {json.dumps(key)}: {body}{sep}")
    return "{\n" + "\n".join(lines) + "\n}\n"


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    model_dir = os.path.expanduser(sys.argv[1])
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[2] if len(sys.argv) == 3 else os.path.join(
        here, "..", "crates", "forja-engine", "tests", "fixtures", "minilm_reference.json"
    )

    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    model = SentenceTransformer(model_dir, device="cpu")
    model.eval()
    pieces = [len(model.tokenizer(s)["input_ids"]) for s in SENTENCES]
    if max(pieces) <= model.max_seq_length:
        sys.exit(f"no sentence exceeds max_seq_length {model.max_seq_length}: {pieces}")
    with torch.no_grad():
        vecs = model.encode(SENTENCES, batch_size=32, convert_to_numpy=True)

    fixture = {
        "model": "all-MiniLM-L6-v2 (forja catalog: all-minilm-l6-v2)",
        "generator": "scripts/minilm-reference.py",
        "sentence_transformers": sentence_transformers.__version__,
        "torch": torch.__version__,
        "max_seq_length": model.max_seq_length,
        "word_pieces_untruncated": pieces,
        "sentences": SENTENCES,
        "embeddings": [[float(x) for x in v] for v in vecs],
    }
    with open(out, "w", encoding="utf-8") as f:
        f.write(to_json(fixture))
    print(f"wrote {len(SENTENCES)} embeddings of dim {vecs.shape[1]} to {out} (word pieces: {pieces})")


if __name__ == "__main__":
    main()
