//! Constrained decoding end to end. A tiny random-weight model writes
//! garbage unless constrained, so whatever it writes under a grammar
//! (greedy and seeded sampling) must parse as that grammar says: any JSON
//! object, a JSON Schema with required fields, types and an enum, a regex,
//! and the read-only SQL grammar. Token sequences of known texts are fed
//! through the constraint to check what it accepts and rejects (DROP TABLE,
//! `;`-chained statements, comment and quote tricks, special tokens inside
//! JSON). Invalid grammars are clear errors. With the real SmolLM2 installed,
//! a JSON-Schema-constrained chat answer parses and the per-token mask time
//! is printed.

use forja_core::{ChatMessage, SamplingParams};
use forja_engine::constraint::SQL_SELECT_LARK;
use forja_engine::fixtures::{self, Spec};
use forja_engine::models::llama::{Batch, Lora};
use forja_engine::{
    argmax, Constraint, ConstraintCompiler, Engine, EngineError, Grammar, LoadOptions, Sampler,
    Slot,
};
use serde_json::{json, Value};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const MAX_TOKENS: usize = 200;

struct Model {
    _dir: Option<tempfile::TempDir>,
    engine: Engine,
    compiler: ConstraintCompiler,
}

fn tiny() -> &'static Model {
    static M: OnceLock<Model> = OnceLock::new();
    M.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let spec = Spec::llama();
        fixtures::write_hf(dir.path(), &spec, &fixtures::weights(&spec, 21));
        let opts = LoadOptions { threads: Some(2), ..Default::default() };
        let engine = Engine::load(dir.path(), &opts, &mut |_| {}).unwrap();
        let compiler = ConstraintCompiler::new(engine.tokenizer()).unwrap();
        Model { _dir: Some(dir), engine, compiler }
    })
}

#[derive(Debug, Clone, Copy)]
enum Pick {
    Greedy,
    Sampled(u64),
}

const PICKS: [Pick; 8] = [
    Pick::Greedy,
    Pick::Sampled(1),
    Pick::Sampled(2),
    Pick::Sampled(3),
    Pick::Sampled(4),
    Pick::Sampled(5),
    Pick::Sampled(6),
    Pick::Sampled(7),
];

struct Output {
    text: String,
    /// The grammar completed (an end token was sampled, or nothing may follow).
    complete: bool,
    /// Time spent in each `Constraint::mask` call.
    mask_times: Vec<Duration>,
}

impl Output {
    fn mask_report(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mut t = self.mask_times.clone();
        let total: Duration = t.iter().sum();
        t.sort();
        format!(
            "{} masks: mean {:.3} ms, median {:.3} ms, max {:.3} ms",
            t.len(),
            ms(total) / t.len().max(1) as f64,
            t.get(t.len() / 2).map_or(0.0, |&d| ms(d)),
            t.last().map_or(0.0, |&d| ms(d)),
        )
    }
}

/// The decode loop a scheduler runs: logits → mask → pick → accept, with a
/// KV cache, until an end token, a finished grammar, or MAX_TOKENS.
fn decode(m: &Model, prompt: &[u32], g: &Grammar, pick: Pick) -> Output {
    decode_with(m, prompt, m.compiler.compile(g).unwrap(), pick)
}

fn decode_with(m: &Model, prompt: &[u32], mut c: Constraint, pick: Pick) -> Output {
    let eog = m.engine.tokenizer().eog_ids();
    let mut sampler = Sampler::new(&match pick {
        Pick::Greedy => SamplingParams::greedy(),
        Pick::Sampled(seed) => SamplingParams { seed: Some(seed), ..Default::default() },
    });
    let model = m.engine.model();
    let mut cache = model.new_cache();
    let mut history = prompt.to_vec();
    let mut out = Vec::new();
    let (mut mask_times, mut complete) = (Vec::new(), false);
    let mut feed: Vec<u32> = prompt.to_vec();
    while out.len() < MAX_TOKENS {
        let start = history.len() - feed.len();
        let slots: Vec<Slot> = (0..feed.len()).map(|i| Slot { seq: 0, pos: start + i }).collect();
        let batch = Batch { tokens: &feed, slots: &slots, logits_rows: &[feed.len() - 1] };
        let logits = m.engine.install(|| model.forward(&batch, &mut [&mut cache], Lora::NONE));
        let mut logits: Vec<f32> = logits.unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let t0 = Instant::now();
        c.mask(&mut logits).unwrap();
        mask_times.push(t0.elapsed());
        let t = match pick {
            Pick::Greedy => argmax(&logits),
            Pick::Sampled(_) => sampler.sample(&mut logits, &history).unwrap(),
        };
        c.accept(t).unwrap_or_else(|e| panic!("{pick:?}: sampled token {t} rejected: {e}"));
        if eog.contains(&t) {
            complete = true;
            break;
        }
        out.push(t);
        history.push(t);
        if c.is_finished() {
            complete = true;
            break;
        }
        feed = vec![t];
    }
    let text = m.engine.tokenizer().decode(&out, false).unwrap();
    Output { text, complete, mask_times }
}

/// Runs `g` on the tiny model greedily and with seven seeds; `valid` sees
/// every output and whether it ended. Random weights can wander in a long
/// string, number or identifier until MAX_TOKENS, so only `min_ended` of
/// the eight runs must end (a mask that never allows an end token fails).
fn check_generates(
    g: &Grammar,
    min_ended: usize,
    valid: impl Fn(&str, bool) -> Result<(), String>,
) {
    let m = tiny();
    let prompt = m.engine.tokenizer().encode("hello forja, the council", false).unwrap();
    let mut ended = 0;
    for pick in PICKS {
        let out = decode(m, &prompt, g, pick);
        eprintln!("{pick:?} (ended: {}): {:?}", out.complete, out.text);
        ended += out.complete as usize;
        if let Err(e) = valid(&out.text, out.complete) {
            panic!("{pick:?}: {e}: {:?}", out.text);
        }
    }
    assert!(ended >= min_ended, "only {ended} of {} runs ended", PICKS.len());
}

/// Whether the tokens of `text` (as the tokenizer encodes it, special
/// tokens included) are accepted one by one and then the grammar may end.
fn accepts(g: &Grammar, text: &str) -> bool {
    let m = tiny();
    let tok = m.engine.tokenizer();
    let mut c = m.compiler.compile(g).unwrap();
    let vocab = m.engine.model().config().vocab_size;
    for t in tok.encode(text, false).unwrap() {
        let mut logits = vec![0.0; vocab];
        c.mask(&mut logits).unwrap();
        let allowed = logits[t as usize].is_finite();
        let accepted = c.accept(t).is_ok();
        // The mask and the parser agree token by token.
        assert_eq!(allowed, accepted, "{text:?}: token {t} allowed {allowed}, accepted {accepted}");
        if !accepted {
            return false;
        }
    }
    let mut logits = vec![0.0; vocab];
    c.mask(&mut logits).unwrap();
    tok.eog_ids().iter().any(|&e| logits[e as usize].is_finite())
}

fn check_accepts(g: &Grammar, cases: &[(&str, bool)]) {
    for &(text, want) in cases {
        assert_eq!(
            accepts(g, text),
            want,
            "{text:?} should be {}",
            ["rejected", "accepted"][want as usize]
        );
    }
}

// ---- JSON ----

#[test]
fn json_object_generation_parses() {
    check_generates(&Grammar::JsonObject, PICKS.len() / 2, |s, ended| {
        if !ended {
            return Ok(());
        }
        let v: Value = serde_json::from_str(s).map_err(|e| e.to_string())?;
        v.is_object().then_some(()).ok_or_else(|| "not an object".into())
    });
}

fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "role": {"enum": ["admin", "user", "guest"]},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3},
            "active": {"type": "boolean"}
        },
        "required": ["name", "age", "role"],
        "additionalProperties": false
    })
}

/// Checks a value against `person_schema` by hand.
fn valid_person(s: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(s).map_err(|e| format!("not JSON: {e}"))?;
    let o = v.as_object().ok_or("not an object")?;
    for k in o.keys() {
        if !["name", "age", "role", "tags", "active"].contains(&k.as_str()) {
            return Err(format!("unexpected key {k}"));
        }
    }
    let name = o.get("name").and_then(Value::as_str).ok_or("name missing or not a string")?;
    if !(1..=12).contains(&name.chars().count()) {
        return Err(format!("name {name:?} has a bad length"));
    }
    let age = o.get("age").and_then(Value::as_u64).ok_or("age missing or not a whole number")?;
    if age > 150 {
        return Err(format!("age {age} > 150"));
    }
    let role = o.get("role").and_then(Value::as_str).ok_or("role missing or not a string")?;
    if !["admin", "user", "guest"].contains(&role) {
        return Err(format!("role {role:?} is not in the enum"));
    }
    if let Some(tags) = o.get("tags") {
        let tags = tags.as_array().ok_or("tags is not an array")?;
        if tags.len() > 3 || tags.iter().any(|t| t.as_str().is_none_or(|t| t.chars().count() > 8)) {
            return Err("bad tags".into());
        }
    }
    if o.get("active").is_some_and(|a| !a.is_boolean()) {
        return Err("active is not a boolean".into());
    }
    Ok(())
}

#[test]
fn json_schema_generation_is_valid() {
    check_generates(&Grammar::JsonSchema(person_schema()), PICKS.len() / 2, |s, ended| {
        if ended {
            valid_person(s)
        } else {
            Ok(())
        }
    });
}

#[test]
fn json_texts_accepted_and_rejected() {
    check_accepts(
        &Grammar::JsonObject,
        &[
            (r#"{"a": [1, 2.5, "x"], "b": {"c": null, "d": true}}"#, true),
            ("{\n  \"a\": 1,\n  \"b\": \"two\"\n}", true),
            ("{}", true),
            ("[1, 2]", false),
            (r#"{"a": }"#, false),
            (r#"{"a": 1"#, false),
            (r#"{"a": 1} extra"#, false),
            // Spelled as the special token, not as text: never allowed.
            (r#"{"a": "<|im_start|>"}"#, false),
        ],
    );
    check_accepts(
        &Grammar::JsonSchema(person_schema()),
        &[
            (r#"{"name": "Ana", "age": 31, "role": "admin"}"#, true),
            (r#"{"name":"Bo","age":0,"role":"guest","tags":["x","y"],"active":false}"#, true),
            (r#"{"name": "Ana", "age": 31}"#, false),
            (r#"{"name": "Ana", "age": 31, "role": "root"}"#, false),
            (r#"{"name": "Ana", "age": "31", "role": "user"}"#, false),
            (r#"{"name": "Ana", "age": 31.5, "role": "user"}"#, false),
            (r#"{"name": "Ana", "age": 31, "role": "user", "x": 1}"#, false),
            (r#"{"name": "Anastasia Maria", "age": 31, "role": "user"}"#, false),
        ],
    );
}

#[test]
fn local_refs_resolve() {
    let schema = json!({
        "$defs": {"point": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}},
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/point"}},
        "required": ["a"]
    });
    check_accepts(
        &Grammar::JsonSchema(schema),
        &[(r#"{"a": {"x": 1}}"#, true), (r#"{"a": {"y": 1}}"#, false)],
    );
}

// ---- regex ----

#[test]
fn regex_generation_matches() {
    let rx = r"\d{3}-[a-z]{2,4}";
    let full = regex::Regex::new(&format!("^(?:{rx})$")).unwrap();
    check_generates(&Grammar::Regex(rx.into()), PICKS.len(), |s, _| {
        full.is_match(s).then_some(()).ok_or_else(|| "does not match".into())
    });
}

#[test]
fn regex_texts_accepted_and_rejected() {
    check_accepts(
        &Grammar::Regex(r"\d{3}-[a-z]{2,4}".into()),
        &[
            ("123-ab", true),
            ("123-abcd", true),
            ("12-ab", false),
            ("123-abcde", false),
            ("x123-ab", false),
        ],
    );
}

// ---- SQL ----

/// `sql` with string literals and quoted identifiers blanked out.
fn without_literals(sql: &str) -> String {
    regex::Regex::new(r#"'([^']|'')*'|"[^"]*""#).unwrap().replace_all(sql, " ").into_owned()
}

/// Words of `sql` outside string literals and quoted identifiers, upper-cased.
fn sql_words(sql: &str) -> Vec<String> {
    without_literals(sql)
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_uppercase)
        .collect()
}

const WRITES: &[&str] = &[
    "INSERT", "UPDATE", "DELETE", "DROP", "ALTER", "CREATE", "TRUNCATE", "INTO", "GRANT", "MERGE",
];

/// Every prefix the grammar allows is read-only already, so the check holds
/// for runs cut at MAX_TOKENS too (this model rarely ends a query: its
/// identifiers run to the length limit); complete queries are checked by
/// `sql_texts_accepted_and_rejected` and the SmolLM2 test.
#[test]
fn sql_generation_is_read_only_select() {
    check_generates(&Grammar::Lark(SQL_SELECT_LARK.into()), 0, |s, ended| {
        let words = sql_words(s);
        if words.first().map(String::as_str) != Some("SELECT") {
            return Err("does not start with SELECT".into());
        }
        if let Some(w) = words.iter().find(|w| WRITES.contains(&w.as_str())) {
            return Err(format!("contains {w}"));
        }
        let body = without_literals(s);
        let body = body.trim_end().strip_suffix(';').unwrap_or(&body);
        if body.contains([';', '#']) || body.contains("--") || body.contains("/*") {
            return Err("contains a second statement or a comment".into());
        }
        if ended && !words.iter().any(|w| w == "FROM") {
            return Err("ended without FROM".into());
        }
        Ok(())
    });
}

#[test]
fn sql_texts_accepted_and_rejected() {
    check_accepts(
        &Grammar::Lark(SQL_SELECT_LARK.into()),
        &[
            ("SELECT a FROM t WHERE b = 1", true),
            ("select a, b from t", true),
            ("SELECT * FROM t", true),
            ("SELECT DISTINCT t.a AS x FROM t AS u LIMIT 10 OFFSET 5", true),
            ("SELECT count(*) FROM t GROUP BY a HAVING count(*) > 2 ORDER BY a DESC", true),
            ("SELECT a FROM t LEFT OUTER JOIN u ON t.id = u.id WHERE u.x IS NOT NULL", true),
            ("SELECT a FROM t WHERE b IN (SELECT c FROM u) AND NOT d LIKE 'x%'", true),
            ("SELECT a FROM t WHERE b BETWEEN 1 AND 10 OR (c <> 'it''s' AND d = -2.5)", true),
            ("SELECT a - 1, b*2 FROM t", true),
            ("SELECT\n  a\nFROM t\nWHERE b >= 3", true),
            ("DROP TABLE x", false),
            ("SELECT a FROM t; DROP TABLE t", false),
            ("SELECT a FROM t WHERE b = 1;", true),
            ("SELECT a FROM t ;", true),
            ("SELECT a FROM t;;", false),
            ("SELECT a FROM t; SELECT b FROM u", false),
            ("SELECT a FROM t;\n", false),
            ("DELETE FROM t", false),
            ("INSERT INTO t VALUES (1)", false),
            ("UPDATE t SET a = 1", false),
            ("SELECT a INTO b FROM t", false),
            ("SELECT a FROM drop", false),
            ("SELECTa FROM t", false),
            ("SELECT a FROMt", false),
            ("SELECT a FROM t WHERE b = a--1", false),
            ("SELECT a FROM t WHERE b = 1 /* x */", false),
            (r"SELECT a FROM t WHERE b = 'x\' AND c = '; DROP TABLE t; --'", false),
            ("SELECT a FROM t WHERE b = '; DROP TABLE t'", false),
            ("SELECT pg_sleep(10) FROM t", false),
            ("SELECT a FROM t UNION SELECT b FROM u", false),
            ("SELECT a", false),
            ("ſelect a from t", false),
            ("SELECT a FROM t WHERE b = 'x; y'", false),
            ("SELECT a FROM t WHERE b = 'x y'", true),
        ],
    );
}

// ---- masks ----

#[test]
fn mask_forbids_padding_rows_and_specials_and_ends_with_eog_only() {
    let m = tiny();
    let tok = m.engine.tokenizer();
    let vocab = tok.vocab_size();
    let mut c = m.compiler.compile(&Grammar::Regex("ab?".into())).unwrap();
    let mut logits = vec![0.0; vocab + 7];
    c.mask(&mut logits).unwrap();
    assert!(logits[vocab..].iter().all(|l| *l == f32::NEG_INFINITY), "padding rows allowed");
    for special in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
        let id = tok.token_id(special).unwrap();
        assert_eq!(logits[id as usize], f32::NEG_INFINITY, "{special} allowed before a match");
    }
    let a = tok.encode("a", false).unwrap();
    assert_eq!(a.len(), 1);
    assert!(logits[a[0] as usize].is_finite());
    c.accept(a[0]).unwrap();
    assert!(!c.is_finished(), "`b` may still follow");
    // Complete: end tokens join the allowed set.
    let mut logits = vec![0.0; vocab];
    c.mask(&mut logits).unwrap();
    for &e in tok.eog_ids() {
        assert!(logits[e as usize].is_finite(), "end token {e} masked after a full match");
    }
    let b = tok.encode("b", false).unwrap();
    c.accept(b[0]).unwrap();
    assert!(c.is_finished());
    let mut logits = vec![0.0; vocab];
    c.mask(&mut logits).unwrap();
    let allowed: Vec<u32> = (0..vocab as u32).filter(|&t| logits[t as usize].is_finite()).collect();
    assert_eq!(allowed, tok.eog_ids());
    // Anything but an end token after the end is an error; an end token is fine.
    c.accept(tok.eog_ids()[0]).unwrap();
    assert!(matches!(c.accept(a[0]), Err(EngineError::Constraint { .. })));
}

#[test]
fn rejected_token_is_an_error_and_sticks() {
    let m = tiny();
    let tok = m.engine.tokenizer();
    let mut c = m.compiler.compile(&Grammar::Regex("[0-9]+".into())).unwrap();
    let x = tok.encode("x", false).unwrap()[0];
    let e = c.accept(x).unwrap_err();
    assert!(matches!(e, EngineError::Constraint { .. }), "{e}");
    let one = tok.encode("1", false).unwrap()[0];
    assert!(c.accept(one).is_err());
    assert!(c.mask(&mut vec![0.0; tok.vocab_size()]).is_err());
    assert!(!c.is_finished());
    assert!(c.accept(tok.vocab_size() as u32 + 5).is_err());
}

// ---- invalid grammars ----

#[test]
fn invalid_grammars_are_clear_errors() {
    let m = tiny();
    let cases: &[(Grammar, &str)] = &[
        (Grammar::JsonSchema(json!({"type": "nope"})), "nope"),
        (Grammar::JsonSchema(json!("a string")), "must be an object"),
        (Grammar::JsonSchema(json!({"properties": {"a": {"$ref": "#/$defs/missing"}}})), "missing"),
        (Grammar::JsonSchema(json!({"type": "integer", "minimum": 5, "maximum": 1})), ""),
        (Grammar::Regex("(unclosed".into()), ""),
        (Grammar::Regex("[z-a]".into()), ""),
        (Grammar::Lark("start: undefined_rule".into()), "undefined_rule"),
        (Grammar::Lark("start: \"a\" (".into()), ""),
        (Grammar::Lark(String::new()), ""),
    ];
    for (g, needle) in cases {
        let e = match m.compiler.compile(g) {
            Ok(_) => panic!("{g:?} compiled"),
            Err(e) => e,
        };
        assert!(matches!(e, EngineError::Grammar { .. }), "{g:?}: {e:?}");
        let msg = e.to_string();
        assert!(msg.starts_with("invalid grammar: "), "{msg}");
        assert!(!msg.contains('\n') && msg.len() < 600, "{g:?}: not one short line: {msg}");
        assert!(msg.contains(needle), "{g:?}: {msg} does not name {needle:?}");
        eprintln!("{g:?} -> {msg}");
    }
}

#[test]
fn compiler_needs_an_end_token() {
    let json = fixtures::tokenizer_json();
    let tok = forja_engine::Tokenizer::from_json(json, None, &[], false).unwrap();
    // The fixture names <|endoftext|> and <|im_end|>: they end generation.
    assert!(ConstraintCompiler::new(&tok).is_ok());
    let plain = forja_engine::train_byte_level_bpe(["abc abd"].iter(), 270, &[]).unwrap();
    let tok = forja_engine::Tokenizer::from_json(&plain, None, &[], false).unwrap();
    let e = ConstraintCompiler::new(&tok).unwrap_err();
    assert!(e.to_string().contains("end-of-generation"), "{e}");
}

// ---- the real model ----

/// The installed SmolLM2, or `None` (skip) when it is not installed and
/// FORJA_REQUIRE_TESTDATA is unset.
fn smollm2() -> Option<Model> {
    let path = forja_engine::fixtures::installed_model("default")?;
    let opts = LoadOptions { threads: Some(2), ..Default::default() };
    let engine = Engine::load(&path, &opts, &mut |_| {}).expect("load SmolLM2");
    let t0 = Instant::now();
    let compiler = ConstraintCompiler::new(engine.tokenizer()).unwrap();
    eprintln!("SmolLM2: constraint compiler built in {:?}", t0.elapsed());
    Some(Model { _dir: None, engine, compiler })
}

#[test]
fn smollm2_json_schema_answer_parses() {
    let Some(m) = smollm2() else { return };
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 40},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "city": {"type": "string", "maxLength": 40}
        },
        "required": ["name", "age", "city"],
        "additionalProperties": false
    });
    let msgs = [ChatMessage::user(
        "Describe a fictional person as JSON with the fields name, age and city.",
    )];
    let text = m.engine.render_chat(&msgs, true).unwrap();
    let prompt = m.engine.tokenizer().encode(&text, false).unwrap();
    let t0 = Instant::now();
    let json = m.compiler.compile(&Grammar::JsonSchema(schema)).unwrap();
    eprintln!("SmolLM2: schema compiled in {:?}", t0.elapsed());
    let out = decode_with(&m, &prompt, json.clone(), Pick::Greedy);
    eprintln!("SmolLM2 JSON: {:?}\n  cold: {}", out.text, out.mask_report());
    assert!(out.complete, "no complete answer in {MAX_TOKENS} tokens: {:?}", out.text);
    let v: Value = serde_json::from_str(&out.text).unwrap();
    assert!(v["name"].is_string() && v["age"].is_u64() && v["city"].is_string(), "{v}");
    let again = decode_with(&m, &prompt, json, Pick::Greedy);
    assert_eq!(again.text, out.text);
    eprintln!("  warm (clone of a used constraint): {}", again.mask_report());

    let msgs = [ChatMessage::user(
        "Write an SQL query that lists the names of customers from Spain, table customers.",
    )];
    let text = m.engine.render_chat(&msgs, true).unwrap();
    let prompt = m.engine.tokenizer().encode(&text, false).unwrap();
    let t0 = Instant::now();
    let sql = m.compiler.compile(&Grammar::Lark(SQL_SELECT_LARK.into())).unwrap();
    eprintln!("SmolLM2: SQL grammar compiled in {:?}", t0.elapsed());
    let out = decode_with(&m, &prompt, sql.clone(), Pick::Greedy);
    eprintln!("SmolLM2 SQL: {:?}\n  cold: {}", out.text, out.mask_report());
    assert!(out.complete, "{:?}", out.text);
    assert_eq!(sql_words(&out.text)[0], "SELECT");
    let again = decode_with(&m, &prompt, sql, Pick::Greedy);
    assert_eq!(again.text, out.text);
    eprintln!("  warm (clone of a used constraint): {}", again.mask_report());
}
