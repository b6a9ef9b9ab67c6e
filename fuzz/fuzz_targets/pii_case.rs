// The pii target's case, shared with `crates/forja-data/tests/fuzz_corpus.rs`
// (which `include!`s it): arbitrary text through the PII recognisers and
// the scrubber, with every kind enabled. Findings must be sorted, inside
// the text, on character boundaries and not overlapping; the scrubbed
// text must be valid and no longer than a bound. Only panics (an
// arithmetic overflow in a number check, a slice off a char boundary),
// hangs and OOMs are bugs.

fn pii_case(data: &[u8]) {
    use forja_data::pii::{DocScrub, PiiConfig, Scrubber};
    use std::sync::OnceLock;
    static SCRUBBER: OnceLock<Scrubber> = OnceLock::new();
    let s = SCRUBBER.get_or_init(|| Scrubber::new(&PiiConfig::default()).expect("default config"));
    let text = String::from_utf8_lossy(data);
    let found = s.analyze(&text);
    let mut end = 0;
    for f in &found {
        assert!(f.start >= end && f.start < f.end && f.end <= text.len(), "{f:?} in {text:?}");
        assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end), "{f:?}");
        end = f.end;
    }
    let out = s.scrub(&text, &mut DocScrub::default());
    assert!(out.text.len() <= text.len() * 8 + 64, "{} -> {}", text.len(), out.text.len());
}
