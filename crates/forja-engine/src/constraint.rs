//! Constrained decoding: token masks that keep generated text inside a
//! grammar (any JSON object, a JSON Schema, a regular expression, or a Lark
//! grammar), computed by the `llguidance` crate.
//!
//! A [`ConstraintCompiler`] is built once per tokenizer: it turns every
//! token into the bytes it stands for and indexes them in a trie. Each
//! sequence then gets its own [`Constraint`] from
//! [`ConstraintCompiler::compile`]; per step the scheduler calls
//! [`Constraint::mask`] on the logits, samples, and hands the token to
//! [`Constraint::accept`]. Special tokens (`<|im_start|>`, ...) are never
//! allowed inside constrained text; end-of-generation tokens
//! ([`Tokenizer::eog_ids`]) are allowed exactly when the grammar is complete.
//!
//! ```
//! # fn main() -> forja_engine::Result<()> {
//! use forja_engine::{ConstraintCompiler, Grammar, Tokenizer};
//! let json = forja_engine::train_byte_level_bpe(["0 12 345"].iter(), 300, &["<|end|>"])?;
//! let tok = Tokenizer::from_json(&json, None, &[0], false)?;
//! let compiler = ConstraintCompiler::new(&tok)?;
//! let mut c = compiler.compile(&Grammar::Regex("[0-9]{3}".into()))?;
//! for t in tok.encode("123", false)? {
//!     let mut logits = vec![0.0; tok.vocab_size()];
//!     c.mask(&mut logits)?;
//!     assert!(logits[t as usize].is_finite());
//!     c.accept(t)?;
//! }
//! assert!(c.is_finished());
//! # Ok(()) }
//! ```
//!
//! Also here: [`SQL_SELECT_LARK`], the grammar of the read-only SQL a
//! text-to-SQL tenant may emit.

use crate::{EngineError, Result, Tokenizer};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{JsonCompileOptions, Matcher, ParserFactory};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokenizers::{normalizers, pre_tokenizers, DecoderWrapper, NormalizerWrapper};
use tokenizers::{PreTokenizerWrapper, Tokenizer as HfTokenizer};

/// What the output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// Any JSON object (OpenAI `response_format: {type: json_object}`).
    JsonObject,
    /// A JSON Schema (OpenAI `json_schema`); the output is a JSON value valid against it.
    JsonSchema(serde_json::Value),
    /// A regular expression the whole output must match.
    Regex(String),
    /// A Lark grammar (llguidance's Lark dialect).
    Lark(String),
}

/// Whitespace allowed between JSON tokens: one space, or a line break and
/// up to 20 spaces or tabs of indentation (compact and pretty-printed JSON
/// both fit). Bounded, unlike JSON itself, so that a model cannot stall in
/// endless whitespace; llama.cpp's JSON grammars bound it the same way.
const JSON_WHITESPACE: &str = r"(?:\x20|\x0A[\x20\x09]{0,20})";

/// Compiles grammars for one tokenizer. Built once (indexing SmolLM2's
/// 49k-token vocabulary takes about 0.15 s); cloning shares the index.
#[derive(Clone)]
pub struct ConstraintCompiler {
    factory: Arc<ParserFactory>,
    vocab: usize,
    eog: Vec<u32>,
}

impl std::fmt::Debug for ConstraintCompiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConstraintCompiler({} tokens, end ids {:?})", self.vocab, self.eog)
    }
}

/// Per-sequence state of a compiled grammar.
///
/// Cloning is cheap and shares the lexer automaton, which llguidance builds
/// lazily as masks are computed (behind a mutex): keeping one compiled
/// constraint per grammar and cloning it for each sequence skips both the
/// compilation and the warm-up of the first masks.
#[derive(Clone)]
pub struct Constraint {
    matcher: Matcher,
    vocab: usize,
    eog: Vec<u32>,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Constraint(finished: {}, error: {:?})",
            self.is_finished(),
            self.matcher.get_error()
        )
    }
}

// The scheduler shares the compiler between threads and moves constraints
// between them.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<ConstraintCompiler>();
    send::<Constraint>();
};

impl ConstraintCompiler {
    /// Indexes `tok`'s vocabulary. Fails for tokenizers whose tokens are
    /// not byte-level BPE or SentencePiece pieces (WordPiece, ...), and for
    /// ones without an end-of-generation token.
    pub fn new(tok: &Tokenizer) -> Result<Self> {
        let err = |reason: String| EngineError::Tokenizer {
            source_desc: tok.source().to_string(),
            reason: format!("constrained decoding: {reason}"),
        };
        let (words, specials) = token_bytes(tok.hf()).map_err(err)?;
        let vocab = words.len();
        let eog: Vec<u32> =
            tok.eog_ids().iter().copied().filter(|&t| (t as usize) < vocab).collect();
        let Some(&first) = eog.first() else {
            return Err(err("the tokenizer has no end-of-generation token".into()));
        };
        let mut hf = tok.hf().clone();
        canonical_pipeline(&mut hf).map_err(err)?;
        // TokTrie asserts on malformed vocabularies: a panic becomes an error.
        let factory = llguidance::panic_utils::catch_unwind(AssertUnwindSafe(|| {
            let info = TokRxInfo::new(vocab as u32, first);
            let trie = TokTrie::from(&info, &words).with_eos_tokens(&eog);
            let env: TokEnv = Arc::new(Env { hf, trie });
            let mut factory = ParserFactory::new_simple(&env)?;
            factory.quiet();
            // Bounded work per grammar and per token, and errors without the
            // parser's state or the grammar (no internal text reaches a client).
            let limits = factory.limits_mut();
            limits.max_grammar_size = 100_000;
            limits.max_lexer_states = 50_000;
            limits.verbose_errors = false;
            Ok(factory)
        }))
        .map_err(|e| err(one_line(&e.to_string())))?;
        tracing::debug!(vocab, specials, "constraint compiler ready");
        Ok(ConstraintCompiler { factory: Arc::new(factory), vocab, eog })
    }

    /// Compiles a grammar; an invalid grammar, schema or regex is
    /// [`EngineError::Grammar`].
    pub fn compile(&self, g: &Grammar) -> Result<Constraint> {
        let top = match g {
            Grammar::JsonObject => json_grammar(serde_json::json!({"type": "object"}))?,
            Grammar::JsonSchema(schema) => json_grammar(schema.clone())?,
            Grammar::Regex(rx) => TopLevelGrammar::from_regex(rx),
            Grammar::Lark(lark) => TopLevelGrammar::from_lark(lark.clone()),
        };
        let factory = &self.factory;
        let parser =
            llguidance::panic_utils::catch_unwind(AssertUnwindSafe(|| factory.create_parser(top)))
                .map_err(|e| EngineError::Grammar { reason: one_line(&e.to_string()) })?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(EngineError::Grammar { reason: one_line(&e) });
        }
        Ok(Constraint { matcher, vocab: self.vocab, eog: self.eog.clone() })
    }

    /// Tokens in the indexed vocabulary (ids at or above it are never allowed).
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }
}

impl Constraint {
    /// Sets logits of every token the grammar forbids next to
    /// `f32::NEG_INFINITY`. If the grammar is complete, only
    /// end-of-generation tokens stay allowed. Logits past the vocabulary
    /// (padding rows of the output matrix) are always forbidden.
    pub fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        let allowed = self.matcher.compute_mask_or_eos().map_err(|e| self.failed(e))?;
        let words = allowed.as_slice();
        for (chunk, &word) in logits.chunks_mut(32).zip(words) {
            if word != u32::MAX {
                for (bit, l) in chunk.iter_mut().enumerate() {
                    if word >> bit & 1 == 0 {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
        }
        let covered = (words.len() * 32).min(self.vocab).min(logits.len());
        logits[covered..].fill(f32::NEG_INFINITY);
        Ok(())
    }

    /// Records the sampled token. It must be one [`Constraint::mask`]
    /// allowed; any other is an error, and the constraint stays failed.
    pub fn accept(&mut self, token: u32) -> Result<()> {
        if token as usize >= self.vocab {
            return Err(EngineError::Constraint {
                reason: format!("token {token} is outside the vocabulary ({} tokens)", self.vocab),
            });
        }
        if self.is_finished() {
            if self.eog.contains(&token) {
                return Ok(());
            }
            return Err(EngineError::Constraint {
                reason: format!("token {token} follows a complete grammar match"),
            });
        }
        self.matcher.consume_token(token).map_err(|e| self.failed(e))
    }

    /// True when the grammar has matched and nothing more may follow
    /// (generation should stop as if an end token was sampled).
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped() && !self.matcher.is_error()
    }

    fn failed(&self, e: impl std::fmt::Display) -> EngineError {
        EngineError::Constraint { reason: one_line(&e.to_string()) }
    }
}

/// The bytes each token id of `tok` stands for (byte-level BPE or
/// SentencePiece pieces; special tokens as their text). What a log-probability
/// report shows as the token's `bytes`.
pub fn vocab_bytes(tok: &Tokenizer) -> Result<Vec<Vec<u8>>> {
    let (mut words, _) = token_bytes(tok.hf()).map_err(|reason| EngineError::Tokenizer {
        source_desc: tok.source().to_string(),
        reason,
    })?;
    for w in &mut words {
        if w.first() == Some(&TokTrie::SPECIAL_TOKEN_MARKER) {
            w.remove(0);
        }
    }
    Ok(words)
}

/// A JSON Schema with our whitespace rules (any `x-guidance` options in the
/// schema are replaced: they are llguidance's, not the caller's).
fn json_grammar(mut schema: serde_json::Value) -> Result<TopLevelGrammar> {
    if let Some(obj) = schema.as_object_mut() {
        let opts = JsonCompileOptions {
            whitespace_pattern: Some(JSON_WHITESPACE.into()),
            ..Default::default()
        };
        let opts = serde_json::to_value(&opts)
            .map_err(|e| EngineError::Grammar { reason: format!("JSON options: {e}") })?;
        obj.insert("x-guidance".into(), opts);
    } else if !schema.is_boolean() {
        return Err(EngineError::Grammar {
            reason: format!("a JSON Schema must be an object or a boolean, not `{schema}`"),
        });
    }
    Ok(TopLevelGrammar::from_json_schema(schema))
}

/// An llguidance message on one line: no backtrace, no caret lines, no
/// quoted grammar source (`3 | start: ...`, which for a regex is our
/// wrapper, not the caller's text).
fn one_line(msg: &str) -> String {
    let msg = msg.split("\n<backtrace>").next().unwrap_or(msg);
    let source = |l: &str| l.split_once(" |").is_some_and(|(n, _)| n.parse::<u32>().is_ok());
    let caret = |l: &str| l.chars().all(|c| c == '^' || c == '~' || c.is_whitespace());
    let kept: Vec<&str> =
        msg.lines().map(str::trim).filter(|l| !caret(l) && !source(l) && *l != "|").collect();
    kept.join("; ").replace(":;", ":")
}

/// The tokenizer environment llguidance sees: the trie, plus the real
/// tokenizer for the text a grammar forces (so forced text is tokenized as
/// the model was trained).
struct Env {
    hf: HfTokenizer,
    trie: TokTrie,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.tokenize_with_greedy_fallback(s, |text| match self.hf.encode(text, false) {
            Ok(enc) => enc.get_ids().to_vec(),
            Err(_) => self.trie.greedy_tokenize(text.as_bytes()),
        })
    }
}

/// Makes `hf` tokenize a fragment as it would appear mid-text: no
/// SentencePiece prefix space, and special-token strings as plain text.
fn canonical_pipeline(hf: &mut HfTokenizer) -> Result<(), String> {
    fn no_prepend(n: NormalizerWrapper) -> Option<NormalizerWrapper> {
        match n {
            NormalizerWrapper::Prepend(_) => None,
            NormalizerWrapper::Sequence(seq) => {
                let kept: Vec<_> = seq.as_ref().iter().cloned().filter_map(no_prepend).collect();
                (!kept.is_empty())
                    .then(|| NormalizerWrapper::Sequence(normalizers::Sequence::new(kept)))
            }
            other => Some(other),
        }
    }
    fn never_prepend(p: PreTokenizerWrapper) -> PreTokenizerWrapper {
        match p {
            PreTokenizerWrapper::Metaspace(mut m) => {
                m.set_prepend_scheme(pre_tokenizers::metaspace::PrependScheme::Never);
                PreTokenizerWrapper::Metaspace(m)
            }
            PreTokenizerWrapper::Sequence(seq) => {
                let all = seq.as_ref().iter().cloned().map(never_prepend).collect();
                PreTokenizerWrapper::Sequence(pre_tokenizers::sequence::Sequence::new(all))
            }
            other => other,
        }
    }
    if let Some(n) = hf.get_normalizer().cloned() {
        hf.with_normalizer(no_prepend(n)).map_err(|e| e.to_string())?;
    }
    if let Some(p) = hf.get_pre_tokenizer().cloned() {
        hf.with_pre_tokenizer(Some(never_prepend(p)));
    }
    hf.set_encode_special_tokens(true);
    Ok(())
}

/// How token strings map to bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pieces {
    /// GPT-2 byte-level BPE: each char stands for one byte.
    ByteLevel,
    /// SentencePiece: `space` (`▁`) stands for a space, `<0xNN>` for a byte.
    SentencePiece { space: char },
}

fn pieces(d: Option<&DecoderWrapper>) -> Option<Pieces> {
    fn walk(d: &DecoderWrapper, byte_level: &mut bool, fallback: &mut bool, space: &mut char) {
        match d {
            DecoderWrapper::ByteLevel(_) => *byte_level = true,
            DecoderWrapper::ByteFallback(_) => *fallback = true,
            DecoderWrapper::Metaspace(m) => {
                *space = m.get_replacement();
                *fallback = true;
            }
            DecoderWrapper::Replace(r) if r.content == " " => {
                let v = serde_json::to_value(r).unwrap_or_default();
                let mut chars = v["pattern"]["String"].as_str().unwrap_or_default().chars();
                if let (Some(c), None) = (chars.next(), chars.next()) {
                    *space = c;
                }
            }
            DecoderWrapper::Sequence(seq) => {
                for d in seq.get_decoders() {
                    walk(d, byte_level, fallback, space);
                }
            }
            _ => {}
        }
    }
    let (mut byte_level, mut fallback, mut space) = (false, false, '\u{2581}');
    walk(d?, &mut byte_level, &mut fallback, &mut space);
    if byte_level {
        Some(Pieces::ByteLevel)
    } else if fallback {
        Some(Pieces::SentencePiece { space })
    } else {
        None
    }
}

/// GPT-2's byte-to-char table, inverted: printable Latin-1 bytes stand for
/// themselves, the others for U+0100 upwards in byte order.
fn byte_level_chars() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 0x100u32;
    let mut map = HashMap::with_capacity(256);
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(next - 1).unwrap_or_default()
        };
        map.insert(c, b);
    }
    map
}

/// The bytes each token id stands for (empty: never allowed), and how many
/// are special. Special tokens get llguidance's marker byte in front, so no
/// grammar over text can produce them.
fn token_bytes(hf: &HfTokenizer) -> Result<(Vec<Vec<u8>>, usize), String> {
    let kind = pieces(hf.get_decoder()).ok_or_else(|| {
        "the tokenizer is neither byte-level BPE nor SentencePiece with byte fallback".to_string()
    })?;
    let vocab = hf.get_vocab(true);
    let size = vocab.values().map(|&id| id as usize + 1).max().unwrap_or(0);
    let mut words = vec![Vec::new(); size];
    let chars = byte_level_chars();
    for (piece, &id) in &vocab {
        let bytes = match kind {
            Pieces::ByteLevel => piece.chars().map(|c| chars.get(&c).copied()).collect(),
            Pieces::SentencePiece { space } => Some(spm_bytes(piece, space)),
        };
        // A piece outside the byte alphabet cannot be produced from text.
        words[id as usize] = bytes.unwrap_or_default();
    }
    let mut specials = 0;
    for (id, added) in hf.get_added_tokens_decoder() {
        let Some(w) = words.get_mut(id as usize) else { continue };
        let c = &added.content;
        if added.special || (c.starts_with('<') && c.ends_with('>')) {
            *w = [&[TokTrie::SPECIAL_TOKEN_MARKER], c.as_bytes()].concat();
            specials += 1;
        } else {
            *w = c.as_bytes().to_vec();
        }
    }
    Ok((words, specials))
}

fn spm_bytes(piece: &str, space: char) -> Vec<u8> {
    if let Some(hex) = piece.strip_prefix("<0x").and_then(|p| p.strip_suffix('>')) {
        if hex.len() == 2 {
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                return vec![b];
            }
        }
    }
    piece.replace(space, " ").into_bytes()
}

/// A read-only SQL grammar (llguidance Lark): one SELECT query, `SELECT
/// [DISTINCT] cols FROM table [[INNER|LEFT|RIGHT|FULL [OUTER]] JOIN table
/// ON cond]... [WHERE cond] [GROUP BY exprs] [HAVING cond] [ORDER BY exprs
/// [ASC|DESC]] [LIMIT n [OFFSET n]]`, with `IN (subquery)`, and nothing
/// after it but an optional `;` (models like to end with one): no
/// INSERT/UPDATE/DELETE/DROP or any other statement, no second statement,
/// no `SELECT ... INTO`. Keywords are case-insensitive and are never
/// identifiers.
///
/// What keeps the text read-only to every SQL dialect's lexer, not just to
/// this grammar: words are separated by mandatory whitespace, so no
/// keyword can be glued into an identifier; string literals escape quotes
/// by doubling and may not contain `\` (MySQL's escape) or `;`; `--` and
/// `/*` cannot occur outside string literals (binary minus needs spaces
/// around it and there is no unary minus besides a number's sign), so no
/// comment can hide or reveal text; functions are a fixed list of
/// side-effect-free ones (aggregates and a few scalar functions).
pub const SQL_SELECT_LARK: &str = r#"
start: query (WS? ";")?
query: SELECT (WS DISTINCT)? WS select_list WS FROM WS table_ref join* where? group_by? having? order_by? limit?

select_list: STAR | select_item (comma select_item)*
select_item: expr (WS AS WS IDENT)?
table_ref: name (WS AS WS IDENT)?
join: WS (join_kind WS)? JOIN WS table_ref WS ON WS condition
join_kind: INNER | (LEFT | RIGHT | FULL) (WS OUTER)?
where: WS WHERE WS condition
group_by: WS GROUP WS BY WS expr (comma expr)*
having: WS HAVING WS condition
order_by: WS ORDER WS BY WS order_item (comma order_item)*
order_item: expr (WS (ASC | DESC))?
limit: WS LIMIT WS INT (WS OFFSET WS INT)?

condition: conjunction (WS OR WS conjunction)*
conjunction: negation (WS AND WS negation)*
negation: (NOT WS)* predicate
predicate: expr WS? CMP WS? expr
    | expr WS IS (WS NOT)? WS NULL
    | expr (WS NOT)? WS IN WS? "(" WS? (expr (comma expr)* | query) WS? ")"
    | expr (WS NOT)? WS LIKE WS STRING
    | expr (WS NOT)? WS BETWEEN WS expr WS AND WS expr
    | "(" WS? condition WS? ")"

expr: term (WS? ARITH WS? term | WS MINUS WS term)*
term: name | NUMBER | STRING | NULL | call | "(" WS? expr WS? ")"
call: FUNC WS? "(" WS? (STAR | (DISTINCT WS)? expr (comma expr)*) WS? ")"
name: IDENT ("." IDENT)?

comma: WS? "," WS?

WS: /[ \t\r\n]{1,16}/
STAR: "*"
CMP: "=" | "!=" | "<>" | "<=" | ">=" | "<" | ">"
ARITH: "+" | "*" | "/" | "%"
MINUS: "-"
INT: /[0-9]{1,9}/
NUMBER: /-?[0-9]{1,18}(\.[0-9]{1,18})?/
STRING: /'([^'\\;]|''){0,256}'/
IDENT: /[A-Za-z_][A-Za-z0-9_]{0,63}/ & ~KEYWORD | /"[A-Za-z0-9_ ]{1,64}"/
FUNC: ("COUNT"i | "SUM"i | "AVG"i | "MIN"i | "MAX"i | "LOWER"i | "UPPER"i | "LENGTH"i
    | "COALESCE"i | "ROUND"i | "ABS"i) & LETTERS

// ASCII only: `"select"i` alone also matches `ſelect` (Unicode case folding).
LETTERS: /[A-Za-z]+/
SELECT: "SELECT"i & LETTERS
DISTINCT: "DISTINCT"i & LETTERS
FROM: "FROM"i & LETTERS
AS: "AS"i & LETTERS
JOIN: "JOIN"i & LETTERS
INNER: "INNER"i & LETTERS
LEFT: "LEFT"i & LETTERS
RIGHT: "RIGHT"i & LETTERS
FULL: "FULL"i & LETTERS
OUTER: "OUTER"i & LETTERS
ON: "ON"i & LETTERS
WHERE: "WHERE"i & LETTERS
GROUP: "GROUP"i & LETTERS
BY: "BY"i & LETTERS
HAVING: "HAVING"i & LETTERS
ORDER: "ORDER"i & LETTERS
ASC: "ASC"i & LETTERS
DESC: "DESC"i & LETTERS
LIMIT: "LIMIT"i & LETTERS
OFFSET: "OFFSET"i & LETTERS
OR: "OR"i & LETTERS
AND: "AND"i & LETTERS
NOT: "NOT"i & LETTERS
IS: "IS"i & LETTERS
NULL: "NULL"i & LETTERS
IN: "IN"i & LETTERS
LIKE: "LIKE"i & LETTERS
BETWEEN: "BETWEEN"i & LETTERS
KEYWORD: SELECT | DISTINCT | FROM | AS | JOIN | INNER | LEFT | RIGHT | FULL | OUTER | ON
    | WHERE | GROUP | BY | HAVING | ORDER | ASC | DESC | LIMIT | OFFSET | OR | AND | NOT
    | IS | NULL | IN | LIKE | BETWEEN | WRITE_KEYWORD
WRITE_KEYWORD: "INSERT"i | "UPDATE"i | "DELETE"i | "DROP"i | "ALTER"i | "CREATE"i
    | "TRUNCATE"i | "REPLACE"i | "MERGE"i | "UPSERT"i | "GRANT"i | "REVOKE"i | "INTO"i
    | "UNION"i | "EXEC"i | "EXECUTE"i | "CALL"i | "ATTACH"i | "DETACH"i | "PRAGMA"i
    | "VACUUM"i | "COPY"i | "SET"i | "LOCK"i | "COMMIT"i | "ROLLBACK"i | "BEGIN"i
"#;

impl crate::TokenFilter for Constraint {
    fn mask(&mut self, logits: &mut [f32]) -> Result<()> {
        Constraint::mask(self, logits)
    }
    fn accept(&mut self, token: u32) -> Result<()> {
        Constraint::accept(self, token)
    }
    fn is_finished(&self) -> bool {
        Constraint::is_finished(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_table_is_gpt2s() {
        let m = byte_level_chars();
        assert_eq!(m.len(), 256);
        assert_eq!(m[&'Ġ'], b' ');
        assert_eq!(m[&'Ċ'], b'\n');
        assert_eq!(m[&'a'], b'a');
        assert_eq!(m[&'\u{0100}'], 0);
    }

    #[test]
    fn sentencepiece_pieces_become_bytes() {
        for (piece, bytes) in
            [("▁hello", &b" hello"[..]), ("<0x0A>", b"\n"), ("<0xZZ>", b"<0xZZ>"), ("a▁b", b"a b")]
        {
            assert_eq!(spm_bytes(piece, '▁'), bytes, "{piece}");
        }
    }

    #[test]
    fn messages_fit_one_line() {
        assert_eq!(one_line("a\n  b\n\n<backtrace>\nframes"), "a; b");
        assert_eq!(
            one_line("at 1(8): bad regex:\n(x\n ^\nerror: unclosed group\n1 | start: /(x/\n   ^"),
            "at 1(8): bad regex: (x; error: unclosed group"
        );
    }
}
