//! [`Knowledge`] in SQL (SQLite and Postgres): sources and passages charged to the tenant's
//! quota, removals recorded for the index to replay, feeds and their polls.

use super::rows::{get_tenant, rows};
use super::tenants::{charge, refund};
use super::{new_id, SqliteStore};
use crate::db::{params, Connection, OptionalExtension, Row};
use crate::error::{sql, Result, StoreError};
use crate::knowledge::*;
use crate::Timestamp;

const SRC_COLS: &str = "id, tenant_id, kind, title, url, format, lang, pii, feed_id, content_sha, \
    chunks, duplicates, bytes, created_at";
const CHUNK_COLS: &str = "k.seq, k.tenant_id, k.source_id, s.title, s.url, s.lang, k.ordinal, \
    k.heading, k.text, k.span_start, k.span_end, k.content_hash";
const CHUNK_FROM: &str = "FROM knowledge_chunks k JOIN knowledge_sources s ON s.id = k.source_id";
const FEED_COLS: &str = "id, tenant_id, url, title, interval_s, pii, next_at, last_polled_at, \
    last_status, items, failures, created_at";

fn src_row(r: &Row<'_>) -> crate::db::Result<KnowledgeSource> {
    Ok(KnowledgeSource {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        kind: r.get(2)?,
        title: r.get(3)?,
        url: r.get(4)?,
        format: r.get(5)?,
        lang: r.get(6)?,
        pii: r.get(7)?,
        feed_id: r.get(8)?,
        content_sha: r.get(9)?,
        chunks: r.get::<_, i64>(10)? as u64,
        duplicates: r.get::<_, i64>(11)? as u64,
        bytes: r.get::<_, i64>(12)? as u64,
        created_at: r.get(13)?,
    })
}

/// A passage; its signature and embedding when the query selects them
/// after [`CHUNK_COLS`].
fn chunk_row(r: &Row<'_>, blobs: bool) -> crate::db::Result<StoredChunk> {
    Ok(StoredChunk {
        seq: r.get(0)?,
        tenant_id: r.get(1)?,
        source_id: r.get(2)?,
        title: r.get(3)?,
        url: r.get(4)?,
        lang: r.get(5)?,
        chunk: NewChunk {
            ordinal: r.get::<_, i64>(6)? as u32,
            heading: r.get(7)?,
            text: r.get(8)?,
            start: r.get::<_, i64>(9)? as u64,
            end: r.get::<_, i64>(10)? as u64,
            content_hash: r.get(11)?,
            signature: if blobs { r.get(12)? } else { Vec::new() },
            embedding: if blobs { r.get(13)? } else { Vec::new() },
        },
    })
}

fn feed_row(r: &Row<'_>) -> crate::db::Result<KnowledgeFeed> {
    Ok(KnowledgeFeed {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        url: r.get(2)?,
        title: r.get(3)?,
        interval_s: r.get::<_, i64>(4)? as u64,
        pii: r.get(5)?,
        next_at: r.get(6)?,
        last_polled_at: r.get(7)?,
        last_status: r.get(8)?,
        items: r.get::<_, i64>(9)? as u64,
        failures: r.get::<_, i64>(10)? as u64,
        created_at: r.get(11)?,
    })
}

fn get_source(c: &Connection, tenant_id: &str, id: &str) -> Result<KnowledgeSource> {
    c.query_row(
        &format!("SELECT {SRC_COLS} FROM knowledge_sources WHERE id = ?1 AND tenant_id = ?2"),
        [id, tenant_id],
        src_row,
    )
    .optional()
    .map_err(sql("read knowledge source"))?
    .ok_or_else(|| StoreError::NotFound { what: "knowledge source", id: id.into() })
}

fn get_feed(c: &Connection, tenant_id: &str, id: &str) -> Result<KnowledgeFeed> {
    c.query_row(
        &format!("SELECT {FEED_COLS} FROM knowledge_feeds WHERE id = ?1 AND tenant_id = ?2"),
        [id, tenant_id],
        feed_row,
    )
    .optional()
    .map_err(sql("read knowledge feed"))?
    .ok_or_else(|| StoreError::NotFound { what: "knowledge feed", id: id.into() })
}

/// Deletes a source (its passages cascade), refunds it and records the
/// removal.
fn remove(c: &Connection, s: &KnowledgeSource, now: Timestamp) -> Result<()> {
    c.execute("DELETE FROM knowledge_sources WHERE id = ?1", [&s.id])
        .map_err(sql("remove knowledge source"))?;
    refund(c, &s.tenant_id, s.bytes)?;
    c.execute(
        "INSERT INTO knowledge_removals (tenant_id, source_id, removed_at) VALUES (?1, ?2, ?3)",
        params![s.tenant_id, s.id, now],
    )
    .map_err(sql("record knowledge removal"))?;
    Ok(())
}

/// The source a feed entry's key was added as.
fn origin_source(c: &Connection, tenant_id: &str, origin: &str) -> Result<Option<String>> {
    c.query_row(
        "SELECT id FROM knowledge_sources WHERE tenant_id = ?1 AND origin = ?2",
        [tenant_id, origin],
        |r| r.get(0),
    )
    .optional()
    .map_err(sql("read knowledge source"))
}

impl Knowledge for SqliteStore {
    fn add_knowledge_source(
        &self,
        tenant_id: &str,
        s: &NewSource,
        chunks: &[NewChunk],
    ) -> Result<KnowledgeSource> {
        self.tx("add knowledge source", |c, now| {
            if let Some(o) = &s.origin {
                if let Some(id) = origin_source(c, tenant_id, o)? {
                    return Err(StoreError::Conflict(format!("this entry is already {id}")));
                }
            }
            let bytes = (s.text.len()
                + s.title.len()
                + chunks
                    .iter()
                    .map(|k| k.text.len() + k.heading.len() + k.signature.len() + k.embedding.len() + 96)
                    .sum::<usize>()
                + 256) as u64;
            charge(c, &get_tenant(c, tenant_id)?, bytes)?;
            let id = new_id("ksrc");
            c.execute(
                "INSERT INTO knowledge_sources (id, tenant_id, kind, title, url, format, lang, pii, origin, \
                 feed_id, content_sha, text, chunks, duplicates, bytes, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                params![
                    id,
                    tenant_id,
                    s.kind,
                    s.title,
                    s.url,
                    s.format,
                    s.lang,
                    s.pii,
                    s.origin,
                    s.feed_id,
                    s.content_sha,
                    s.text,
                    chunks.len() as i64,
                    s.duplicates as i64,
                    bytes as i64,
                    now
                ],
            )
            .map_err(sql("add knowledge source"))?;
            let mut st = c
                .prepare(
                    "INSERT INTO knowledge_chunks (tenant_id, source_id, ordinal, heading, text, span_start, \
                     span_end, content_hash, signature, embedding)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(sql("add knowledge chunk"))?;
            for k in chunks {
                st.execute(params![
                    tenant_id,
                    id,
                    k.ordinal,
                    k.heading,
                    k.text,
                    k.start as i64,
                    k.end as i64,
                    k.content_hash,
                    k.signature,
                    k.embedding
                ])
                .map_err(sql("add knowledge chunk"))?;
            }
            if let Some(f) = &s.feed_id {
                c.execute("UPDATE knowledge_feeds SET items = items + 1 WHERE id = ?1", [f])
                    .map_err(sql("count feed item"))?;
            }
            get_source(c, tenant_id, &id)
        })
    }

    fn knowledge_sources(&self, tenant_id: &str, limit: usize) -> Result<Vec<KnowledgeSource>> {
        self.read(|c, _| {
            rows(
                c,
                "list knowledge sources",
                &format!(
                    "SELECT {SRC_COLS} FROM knowledge_sources WHERE tenant_id = ?1 \
                     ORDER BY created_at DESC, rowid DESC LIMIT ?2"
                ),
                params![tenant_id, limit as i64],
                src_row,
            )
        })
    }

    fn knowledge_source(&self, tenant_id: &str, id: &str) -> Result<KnowledgeSource> {
        self.read(|c, _| get_source(c, tenant_id, id))
    }

    fn knowledge_source_text(&self, tenant_id: &str, id: &str) -> Result<String> {
        self.read(|c, _| {
            c.query_row(
                "SELECT text FROM knowledge_sources WHERE id = ?1 AND tenant_id = ?2",
                [id, tenant_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("read knowledge source"))?
            .ok_or_else(|| StoreError::NotFound { what: "knowledge source", id: id.into() })
        })
    }

    fn knowledge_origin_exists(&self, tenant_id: &str, origin: &str) -> Result<bool> {
        self.read(|c, _| Ok(origin_source(c, tenant_id, origin)?.is_some()))
    }

    fn remove_knowledge_source(&self, tenant_id: &str, id: &str) -> Result<KnowledgeSource> {
        self.tx("remove knowledge source", |c, now| {
            let s = get_source(c, tenant_id, id)?;
            remove(c, &s, now)?;
            Ok(s)
        })
    }

    fn knowledge_marker(&self) -> Result<(i64, i64)> {
        self.read(|c, _| {
            // The sequences, not MAX(seq): a removed last passage still counts.
            let seq = |table: &str| -> Result<i64> {
                let q = if c.is_postgres() {
                    "SELECT COALESCE(pg_sequence_last_value(pg_get_serial_sequence(?1, 'seq')), 0)"
                } else {
                    "SELECT seq FROM sqlite_sequence WHERE name = ?1"
                };
                c.query_row(q, [table], |r| r.get(0))
                    .optional()
                    .map(|v| v.unwrap_or(0))
                    .map_err(sql("read knowledge marker"))
            };
            Ok((seq("knowledge_chunks")?, seq("knowledge_removals")?))
        })
    }

    fn knowledge_chunks_after(
        &self,
        tenant_id: Option<&str>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredChunk>> {
        self.read(|c, _| {
            rows(
                c,
                "read knowledge chunks",
                &format!(
                    "SELECT {CHUNK_COLS}, k.signature, k.embedding {CHUNK_FROM} WHERE k.seq > ?1 \
                     AND (CAST(?3 AS TEXT) IS NULL OR k.tenant_id = ?3) \
                     ORDER BY k.seq LIMIT ?2"
                ),
                params![after, limit as i64, tenant_id],
                |r| chunk_row(r, true),
            )
        })
    }

    fn knowledge_removals_after(
        &self,
        tenant_id: Option<&str>,
        after: i64,
        limit: usize,
    ) -> Result<Vec<KnowledgeRemoval>> {
        self.read(|c, _| {
            rows(
                c,
                "read knowledge removals",
                "SELECT k.seq, k.tenant_id, k.source_id FROM knowledge_removals k WHERE k.seq > ?1 \
                 AND (CAST(?3 AS TEXT) IS NULL OR k.tenant_id = ?3) ORDER BY k.seq LIMIT ?2",
                params![after, limit as i64, tenant_id],
                |r| Ok(KnowledgeRemoval { seq: r.get(0)?, tenant_id: r.get(1)?, source_id: r.get(2)? }),
            )
        })
    }

    fn knowledge_chunks(&self, tenant_id: &str, seqs: &[i64]) -> Result<Vec<StoredChunk>> {
        self.read(|c, _| {
            let mut st = c
                .prepare(&format!(
                    "SELECT {CHUNK_COLS} {CHUNK_FROM} WHERE k.seq = ?1 AND k.tenant_id = ?2"
                ))
                .map_err(sql("read knowledge chunks"))?;
            let mut out = Vec::with_capacity(seqs.len());
            for seq in seqs {
                let v = st
                    .query_row(params![seq, tenant_id], |r| chunk_row(r, false))
                    .optional()
                    .map_err(sql("read knowledge chunks"))?;
                out.extend(v);
            }
            Ok(out)
        })
    }

    fn add_knowledge_feed(
        &self,
        tenant_id: &str,
        url: &str,
        interval_s: u64,
        pii: &str,
    ) -> Result<KnowledgeFeed> {
        self.tx("add knowledge feed", |c, now| {
            get_tenant(c, tenant_id)?;
            let id = new_id("kfd");
            let n = c
                .execute(
                    "INSERT INTO knowledge_feeds (id, tenant_id, url, interval_s, pii, next_at, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (tenant_id, url) DO NOTHING",
                    params![id, tenant_id, url, interval_s as i64, pii, now],
                )
                .map_err(sql("add knowledge feed"))?;
            if n == 0 {
                return Err(StoreError::Conflict(format!("this tenant already follows {url}")));
            }
            get_feed(c, tenant_id, &id)
        })
    }

    fn knowledge_feeds(&self, tenant_id: &str) -> Result<Vec<KnowledgeFeed>> {
        self.read(|c, _| {
            rows(
                c,
                "list knowledge feeds",
                &format!(
                    "SELECT {FEED_COLS} FROM knowledge_feeds WHERE tenant_id = ?1 ORDER BY created_at, id"
                ),
                [tenant_id],
                feed_row,
            )
        })
    }

    fn knowledge_feed(&self, tenant_id: &str, id: &str) -> Result<KnowledgeFeed> {
        self.read(|c, _| get_feed(c, tenant_id, id))
    }

    fn remove_knowledge_feed(&self, tenant_id: &str, id: &str) -> Result<KnowledgeFeed> {
        self.tx("remove knowledge feed", |c, now| {
            let f = get_feed(c, tenant_id, id)?;
            let sources = rows(
                c,
                "list feed sources",
                &format!("SELECT {SRC_COLS} FROM knowledge_sources WHERE feed_id = ?1 AND tenant_id = ?2"),
                [id, tenant_id],
                src_row,
            )?;
            for s in &sources {
                remove(c, s, now)?;
            }
            c.execute("DELETE FROM knowledge_feeds WHERE id = ?1", [id])
                .map_err(sql("remove knowledge feed"))?;
            Ok(f)
        })
    }

    fn due_knowledge_feeds(&self, now: Timestamp, limit: usize) -> Result<Vec<KnowledgeFeed>> {
        self.read(|c, _| {
            rows(
                c,
                "list due feeds",
                &format!(
                    "SELECT {FEED_COLS} FROM knowledge_feeds WHERE next_at <= ?1 ORDER BY next_at, id LIMIT ?2"
                ),
                params![now, limit as i64],
                feed_row,
            )
        })
    }

    fn knowledge_feed_polled(&self, id: &str, p: &FeedPoll) -> Result<()> {
        self.tx("record feed poll", |c, now| {
            c.execute(
                "UPDATE knowledge_feeds SET title = COALESCE(?2, title), last_polled_at = ?3, last_status = ?4, \
                 next_at = ?5, failures = CASE WHEN ?6 THEN failures + 1 ELSE 0 END WHERE id = ?1",
                params![id, p.title, now, p.status, p.next_at, p.failed],
            )
            .map_err(sql("record feed poll"))?;
            Ok(())
        })
    }
}
