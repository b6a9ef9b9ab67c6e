// The memory target's case, shared with
// `crates/forja-control/tests/it/fuzz_memory_corpus.rs` (which `include!`s it):
// what a model's extraction answer and a user's text become in entity
// memory. The input is `output \0 text`: the output is parsed as the fact
// schema, each fact's fields are keyed (entity, verb, slot, terms) and the
// text's recall terms taken; a fact line is rendered for a prompt. An
// `Err` is a clean refusal; only panics, hangs and OOMs are bugs.

fn memory_case(data: &[u8]) {
    use forja_control::memory::{entity_key, parse, slot, terms, verb_key};
    let s = String::from_utf8_lossy(data);
    let (output, text) = s.split_once('\0').unwrap_or((&s, ""));
    assert!(terms(text).len() <= 64);
    let facts = parse(output).unwrap_or_default();
    let specials = vec!["<|im_start|>".to_string(), "<|im_end|>".to_string()];
    for f in facts {
        let (s, v, o) = (entity_key(&f.subject), verb_key(&f.verb), entity_key(&f.object));
        let _ = slot(&v, &o);
        for k in [&s, &v, &o] {
            assert!(!k.starts_with(' ') && !k.ends_with(' ') && !k.contains("  "), "{k:?}");
        }
        let line = format!("{} | {} | {}", f.subject, f.verb, f.object);
        let shown = forja_knowledge::context::render_fact(&line, &specials);
        assert!(shown.starts_with("> ") && shown.matches('\n').count() == 1, "{shown:?}");
        assert!(!shown.contains("<|im_start|>") && !shown.contains("<|im_end|>"));
    }
}
