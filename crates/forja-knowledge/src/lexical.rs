//! The BM25 side: one tantivy index on disk for every tenant of a node,
//! each passage a document with its tenant, source and sequence number,
//! its text in the field of its language (Spanish and English analyzers:
//! lower case, ASCII folding, stop words, Snowball stemming; other
//! languages folded but not stemmed).
//!
//! The index is derived data. The store holds the passages; the index
//! records, in each commit's payload, the [`Marker`] it has applied up to,
//! so after a crash (or another process adding to the store) the caller
//! replays what came after it. A commit is atomic: a kill mid-ingest
//! leaves the last commit, never half of one. Every search is filtered by
//! tenant inside the query, so one tenant never scores another's text.

use std::path::Path;
use std::sync::Mutex;

use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, INDEXED, STORED,
    STRING,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::{KnowledgeError, Result};

/// How far the index has applied the store's changes: the highest passage
/// sequence number and removal sequence number it holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Marker {
    /// Highest passage sequence number applied.
    pub chunks: i64,
    /// Highest removal sequence number applied.
    pub removals: i64,
}

/// The language a passage is analysed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Spanish stemming and stop words.
    Es,
    /// English stemming and stop words.
    En,
    /// Folding only.
    Other,
}

impl Lang {
    /// The language of a text by `whatlang` (Spanish, English, or other
    /// when unsure).
    pub fn detect(text: &str) -> Lang {
        let sample: String = text.chars().take(4000).collect();
        match whatlang::detect(&sample) {
            Some(i) if i.lang() == whatlang::Lang::Spa => Lang::Es,
            Some(i) if i.lang() == whatlang::Lang::Eng => Lang::En,
            _ => Lang::Other,
        }
    }

    /// `es`, `en` or `other`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Es => "es",
            Lang::En => "en",
            Lang::Other => "other",
        }
    }

    /// The inverse of [`Lang::code`].
    pub fn from_code(s: &str) -> Lang {
        match s {
            "es" => Lang::Es,
            "en" => Lang::En,
            _ => Lang::Other,
        }
    }
}

/// A passage to index.
#[derive(Debug, Clone, PartialEq)]
pub struct LexDoc<'a> {
    /// The store's sequence number (unique in the node).
    pub seq: i64,
    /// Owner.
    pub tenant: &'a str,
    /// The source it came from.
    pub source: &'a str,
    /// What is searched: title, heading path and text.
    pub text: &'a str,
    /// Its language.
    pub lang: Lang,
}

#[derive(Debug, Clone, Copy)]
struct Fields {
    seq: Field,
    tenant: Field,
    source: Field,
    es: Field,
    en: Field,
    other: Field,
}

/// The index.
pub struct Lexical {
    index: Index,
    reader: IndexReader,
    writer: Mutex<Option<IndexWriter<TantivyDocument>>>,
    f: Fields,
}

impl std::fmt::Debug for Lexical {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lexical").finish_non_exhaustive()
    }
}

fn analyzer(lang: Option<Language>) -> TextAnalyzer {
    let b = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter);
    match lang {
        Some(l) => b
            .filter(StopWordFilter::new(l).unwrap_or_else(|| StopWordFilter::remove(Vec::new())))
            .filter(Stemmer::new(l))
            .build(),
        None => b.build(),
    }
}

fn ix(e: tantivy::TantivyError) -> KnowledgeError {
    KnowledgeError::Index(e.to_string())
}

impl Lexical {
    /// Opens the index in `dir`, creating it (and the directory) when new.
    pub fn open(dir: &Path) -> Result<Lexical> {
        std::fs::create_dir_all(dir).map_err(|e| KnowledgeError::io(dir, e))?;
        let mut s = Schema::builder();
        let text = |name: &str| {
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(name)
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            )
        };
        let f = Fields {
            seq: s.add_u64_field("seq", INDEXED | STORED | FAST),
            tenant: s.add_text_field("tenant", STRING),
            source: s.add_text_field("source", STRING),
            es: s.add_text_field("text_es", text("forja_es")),
            en: s.add_text_field("text_en", text("forja_en")),
            other: s.add_text_field("text", text("forja_fold")),
        };
        let mmap = MmapDirectory::open(dir).map_err(|e| KnowledgeError::Index(e.to_string()))?;
        let index = Index::open_or_create(mmap, s.build()).map_err(|e| match e {
            tantivy::TantivyError::SchemaError(m) => KnowledgeError::Index(format!(
                "{}: the index was written by another version of forja ({m}); delete the directory and it is rebuilt from the store",
                dir.display()
            )),
            e => ix(e),
        })?;
        let t = index.tokenizers();
        t.register("forja_es", analyzer(Some(Language::Spanish)));
        t.register("forja_en", analyzer(Some(Language::English)));
        t.register("forja_fold", analyzer(None));
        let reader =
            index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into().map_err(ix)?;
        Ok(Lexical { index, reader, writer: Mutex::new(None), f })
    }

    /// What the last commit applied.
    pub fn marker(&self) -> Result<Marker> {
        let metas = self.index.load_metas().map_err(ix)?;
        Ok(metas.payload.and_then(|p| serde_json::from_str(&p).ok()).unwrap_or_default())
    }

    /// Adds passages and removes sources in one commit that records
    /// `marker`. `Busy` when another process holds the index's writer.
    pub fn apply(&self, added: &[LexDoc<'_>], removed: &[&str], marker: Marker) -> Result<()> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            let w = self.index.writer_with_num_threads(1, 32 << 20).map_err(|e| match e {
                tantivy::TantivyError::LockFailure(..) => KnowledgeError::Busy,
                e => ix(e),
            })?;
            *guard = Some(w);
        }
        let Some(w) = guard.as_mut() else { return Err(KnowledgeError::Busy) };
        let result = (|| {
            for s in removed {
                w.delete_term(Term::from_field_text(self.f.source, s));
            }
            for d in added {
                let field = match d.lang {
                    Lang::Es => self.f.es,
                    Lang::En => self.f.en,
                    Lang::Other => self.f.other,
                };
                let mut doc = TantivyDocument::default();
                doc.add_u64(self.f.seq, d.seq as u64);
                doc.add_text(self.f.tenant, d.tenant);
                doc.add_text(self.f.source, d.source);
                doc.add_text(field, d.text);
                w.add_document(doc).map_err(ix)?;
            }
            let payload = serde_json::to_string(&marker).unwrap_or_default();
            let mut pc = w.prepare_commit().map_err(ix)?;
            pc.set_payload(&payload);
            pc.commit().map_err(ix)?;
            Ok(())
        })();
        if result.is_err() {
            // A failed commit leaves the writer unusable: drop it (its
            // uncommitted documents go) and open a fresh one next time.
            *guard = None;
        }
        result?;
        self.reader.reload().map_err(ix)
    }

    /// Reads what other processes committed.
    pub fn refresh(&self) -> Result<()> {
        self.reader.reload().map_err(ix)
    }

    /// The tenant's `k` best passages for `query` by BM25, best first,
    /// only from `sources` when given. A query with no indexable word
    /// finds nothing.
    pub fn search(
        &self,
        tenant: &str,
        query: &str,
        sources: Option<&[String]>,
        k: usize,
    ) -> Result<Vec<(i64, f32)>> {
        let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for field in [self.f.es, self.f.en, self.f.other] {
            let mut a = self.index.tokenizer_for_field(field).map_err(ix)?;
            let mut stream = a.token_stream(query);
            let mut seen = std::collections::HashSet::new();
            while stream.advance() {
                let word = stream.token().text.clone();
                if seen.insert(word.clone()) && seen.len() <= 64 {
                    let term = Term::from_field_text(field, &word);
                    should.push((
                        Occur::Should,
                        Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)),
                    ));
                }
            }
        }
        if should.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let mut must: Vec<(Occur, Box<dyn Query>)> = vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(self.f.tenant, tenant),
                    IndexRecordOption::Basic,
                )),
            ),
            (Occur::Must, Box::new(BooleanQuery::new(should))),
        ];
        if let Some(sources) = sources {
            let any: Vec<(Occur, Box<dyn Query>)> = sources
                .iter()
                .map(|s| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(
                        Term::from_field_text(self.f.source, s),
                        IndexRecordOption::Basic,
                    ));
                    (Occur::Should, q)
                })
                .collect();
            must.push((Occur::Must, Box::new(BooleanQuery::new(any))));
        }
        let searcher = self.reader.searcher();
        let top = searcher.search(&BooleanQuery::new(must), &TopDocs::with_limit(k)).map_err(ix)?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let doc: TantivyDocument = searcher.doc(addr).map_err(ix)?;
            if let Some(seq) = doc.get_first(self.f.seq).and_then(|v| v.as_u64()) {
                out.push((seq as i64, score));
            }
        }
        Ok(out)
    }

    /// Passages in the index (every tenant's).
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Whether the index holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc<'a>(seq: i64, tenant: &'a str, source: &'a str, text: &'a str) -> LexDoc<'a> {
        LexDoc { seq, tenant, source, text, lang: Lang::detect(text) }
    }

    #[test]
    fn bm25_with_stemming_tenant_filter_removal_and_marker() {
        let dir = tempfile::tempdir().unwrap();
        let lx = Lexical::open(dir.path()).unwrap();
        assert_eq!(lx.marker().unwrap(), Marker::default());
        let docs = [
            doc(
                1,
                "a",
                "s1",
                "El Pleno aprobó las ordenanzas fiscales de la piscina municipal por unanimidad.",
            ),
            doc(
                2,
                "a",
                "s2",
                "The council approved the new parking fees for the city centre yesterday.",
            ),
            doc(
                3,
                "b",
                "s3",
                "El Pleno aprobó la ordenanza de la piscina con los votos de todos los grupos.",
            ),
        ];
        lx.apply(&docs, &[], Marker { chunks: 3, removals: 0 }).unwrap();
        assert_eq!(lx.marker().unwrap(), Marker { chunks: 3, removals: 0 });
        // Stemming: "ordenanza" finds "ordenanzas"; "approving" finds "approved".
        let hits = lx.search("a", "ordenanza piscina", None, 5).unwrap();
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [1]);
        assert_eq!(lx.search("a", "approving fee", None, 5).unwrap()[0].0, 2);
        // Tenant b sees only its own passage; a source filter narrows.
        assert_eq!(lx.search("b", "piscina", None, 5).unwrap().len(), 1);
        assert!(lx.search("a", "piscina", Some(&["s2".into()]), 5).unwrap().is_empty());
        // Query syntax is just words.
        assert!(lx.search("a", "tenant:b AND ) (", None, 5).unwrap().is_empty());
        lx.apply(&[], &["s1"], Marker { chunks: 3, removals: 1 }).unwrap();
        assert!(lx.search("a", "piscina", None, 5).unwrap().is_empty());
        drop(lx);
        let lx = Lexical::open(dir.path()).unwrap();
        assert_eq!(lx.marker().unwrap(), Marker { chunks: 3, removals: 1 });
        assert_eq!(lx.len(), 2);
    }

    #[test]
    fn a_second_writer_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let a = Lexical::open(dir.path()).unwrap();
        let b = Lexical::open(dir.path()).unwrap();
        a.apply(&[doc(1, "t", "s", "hola")], &[], Marker { chunks: 1, removals: 0 }).unwrap();
        let e = b.apply(&[], &[], Marker::default()).unwrap_err();
        assert!(matches!(e, KnowledgeError::Busy), "{e}");
        b.refresh().unwrap();
        assert_eq!(b.search("t", "hola", None, 1).unwrap().len(), 1);
    }
}
