//! [`Documents`] in SQL (SQLite and Postgres): documents with lineage, chunk sources, and the
//! entity dictionary.

use super::rows::{get_tenant, rows};
use super::tenants::{charge, refund};
use super::SqliteStore;
use crate::db::{params, Connection, OptionalExtension, Row};
use crate::documents::{ChunkSource, DictionaryEntry, DocKind, DocumentRow, Documents};
use crate::error::{sql, Result, StoreError};

const DOC_COLS: &str =
    "id, tenant_id, kind, parent_id, session, version, filename, sha256, bytes, model, created_at";

fn doc_row(r: &Row<'_>) -> crate::db::Result<DocumentRow> {
    let kind: String = r.get(2)?;
    Ok(DocumentRow {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        kind: DocKind::parse(&kind).unwrap_or(DocKind::Final),
        parent_id: r.get(3)?,
        session: r.get(4)?,
        version: r.get::<_, i64>(5)? as u32,
        filename: r.get(6)?,
        sha256: r.get(7)?,
        bytes: r.get::<_, i64>(8)? as u64,
        model: r.get(9)?,
        created_at: r.get(10)?,
    })
}

fn get_doc(c: &Connection, tenant_id: &str, id: &str) -> Result<DocumentRow> {
    c.query_row(
        &format!("SELECT {DOC_COLS} FROM documents WHERE id = ?1 AND tenant_id = ?2"),
        [id, tenant_id],
        doc_row,
    )
    .optional()
    .map_err(sql("read document"))?
    .ok_or_else(|| StoreError::NotFound { what: "document", id: id.into() })
}

fn entry_row(r: &Row<'_>) -> crate::db::Result<DictionaryEntry> {
    Ok(DictionaryEntry {
        wrong: r.get(0)?,
        right: r.get(1)?,
        source_document: r.get(2)?,
        source_chunk: r.get(3)?,
        created_at: r.get(4)?,
    })
}

/// Bytes a dictionary entry is charged.
fn entry_bytes(e: &DictionaryEntry) -> u64 {
    (e.wrong.len() + e.right.len() + 64) as u64
}

impl Documents for SqliteStore {
    fn insert_document(&self, d: &DocumentRow, chunks: &[ChunkSource]) -> Result<DocumentRow> {
        self.tx("store document", |c, now| {
            let tenant = get_tenant(c, &d.tenant_id)?;
            if let Some(parent) = &d.parent_id {
                get_doc(c, &d.tenant_id, parent)?;
            }
            let chunk_bytes: usize = chunks.iter().map(|ch| ch.chunk_id.len() + ch.source.len() + 32).sum();
            charge(c, &tenant, d.bytes + chunk_bytes as u64)?;
            c.execute(
                &format!(
                    "INSERT INTO documents ({DOC_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ),
                params![
                    d.id,
                    d.tenant_id,
                    d.kind.as_str(),
                    d.parent_id,
                    d.session,
                    d.version as i64,
                    d.filename,
                    d.sha256,
                    d.bytes as i64,
                    d.model,
                    now
                ],
            )
            .map_err(sql("store document"))?;
            for ch in chunks {
                c.execute(
                    "INSERT INTO document_chunks (document_id, chunk_id, source, start_s, end_s)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![d.id, ch.chunk_id, ch.source, ch.start_s, ch.end_s],
                )
                .map_err(sql("store document chunk"))?;
            }
            get_doc(c, &d.tenant_id, &d.id)
        })
    }

    fn document(&self, tenant_id: &str, id: &str) -> Result<DocumentRow> {
        self.read(|c, _| get_doc(c, tenant_id, id))
    }

    fn documents(&self, tenant_id: &str) -> Result<Vec<DocumentRow>> {
        self.read(|c, _| {
            rows(
                c,
                "list documents",
                &format!(
                    "SELECT {DOC_COLS} FROM documents WHERE tenant_id = ?1 ORDER BY created_at DESC, id DESC"
                ),
                [tenant_id],
                doc_row,
            )
        })
    }

    fn document_chunks(&self, tenant_id: &str, id: &str) -> Result<Vec<ChunkSource>> {
        self.read(|c, _| {
            get_doc(c, tenant_id, id)?;
            rows(
                c,
                "list document chunks",
                "SELECT chunk_id, source, start_s, end_s FROM document_chunks WHERE document_id = ?1 ORDER BY rowid",
                [id],
                |r| Ok(ChunkSource { chunk_id: r.get(0)?, source: r.get(1)?, start_s: r.get(2)?, end_s: r.get(3)? }),
            )
        })
    }

    fn latest_generated(&self, tenant_id: &str, session: &str) -> Result<Option<DocumentRow>> {
        self.read(|c, _| {
            c.query_row(
                &format!(
                    "SELECT {DOC_COLS} FROM documents WHERE tenant_id = ?1 AND session = ?2 AND kind = 'generated'
                     ORDER BY version DESC, created_at DESC, id DESC LIMIT 1"
                ),
                [tenant_id, session],
                doc_row,
            )
            .optional()
            .map_err(sql("read latest generated document"))
        })
    }

    fn delete_document(&self, tenant_id: &str, id: &str) -> Result<DocumentRow> {
        self.tx("delete document", |c, _| {
            let d = get_doc(c, tenant_id, id)?;
            let chunk_bytes: i64 = c
                .query_row(
                    if c.is_postgres() {
                        "SELECT COALESCE(SUM(octet_length(chunk_id) + octet_length(source) + 32), 0) \
                         FROM document_chunks WHERE document_id = ?1"
                    } else {
                        "SELECT COALESCE(SUM(LENGTH(CAST(chunk_id AS BLOB)) + LENGTH(CAST(source AS BLOB)) + 32), 0) \
                         FROM document_chunks WHERE document_id = ?1"
                    },
                    [id],
                    |r| r.get(0),
                )
                .map_err(sql("delete document"))?;
            c.execute("UPDATE documents SET parent_id = NULL WHERE parent_id = ?1 AND tenant_id = ?2", [id, tenant_id])
                .map_err(sql("delete document"))?;
            c.execute("DELETE FROM document_chunks WHERE document_id = ?1", [id]).map_err(sql("delete document"))?;
            c.execute("DELETE FROM documents WHERE id = ?1 AND tenant_id = ?2", [id, tenant_id])
                .map_err(sql("delete document"))?;
            refund(c, tenant_id, d.bytes + chunk_bytes as u64)?;
            Ok(d)
        })
    }

    fn dictionary(&self, tenant_id: &str) -> Result<Vec<DictionaryEntry>> {
        self.read(|c, _| {
            get_tenant(c, tenant_id)?;
            rows(
                c,
                "list dictionary",
                "SELECT wrong, \"right\", source_document, source_chunk, created_at FROM dictionary
                 WHERE tenant_id = ?1 ORDER BY wrong",
                [tenant_id],
                entry_row,
            )
        })
    }

    fn upsert_dictionary(&self, tenant_id: &str, entries: &[DictionaryEntry]) -> Result<usize> {
        self.tx("update dictionary", |c, now| {
            let tenant = get_tenant(c, tenant_id)?;
            for e in entries {
                let old: Option<DictionaryEntry> = c
                    .query_row(
                        "SELECT wrong, \"right\", source_document, source_chunk, created_at FROM dictionary
                         WHERE tenant_id = ?1 AND wrong = ?2",
                        [tenant_id, e.wrong.as_str()],
                        entry_row,
                    )
                    .optional()
                    .map_err(sql("update dictionary"))?;
                if let Some(old) = &old {
                    refund(c, tenant_id, entry_bytes(old))?;
                }
                charge(c, &tenant, entry_bytes(e))?;
                c.execute(
                    "INSERT INTO dictionary (tenant_id, wrong, \"right\", source_document, source_chunk, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (tenant_id, wrong) DO UPDATE SET \"right\" = excluded.\"right\",
                       source_document = excluded.source_document, source_chunk = excluded.source_chunk,
                       created_at = excluded.created_at",
                    params![tenant_id, e.wrong, e.right, e.source_document, e.source_chunk, now],
                )
                .map_err(sql("update dictionary"))?;
            }
            let n: i64 = c
                .query_row("SELECT COUNT(*) FROM dictionary WHERE tenant_id = ?1", [tenant_id], |r| r.get(0))
                .map_err(sql("update dictionary"))?;
            Ok(n as usize)
        })
    }

    fn remove_dictionary(&self, tenant_id: &str, wrong: &str) -> Result<DictionaryEntry> {
        self.tx("remove dictionary entry", |c, _| {
            let e = c
                .query_row(
                    "SELECT wrong, \"right\", source_document, source_chunk, created_at FROM dictionary
                     WHERE tenant_id = ?1 AND wrong = ?2",
                    [tenant_id, wrong],
                    entry_row,
                )
                .optional()
                .map_err(sql("remove dictionary entry"))?
                .ok_or_else(|| StoreError::NotFound {
                    what: "dictionary entry",
                    id: wrong.into(),
                })?;
            c.execute(
                "DELETE FROM dictionary WHERE tenant_id = ?1 AND wrong = ?2",
                [tenant_id, wrong],
            )
            .map_err(sql("remove dictionary entry"))?;
            refund(c, tenant_id, entry_bytes(&e))?;
            Ok(e)
        })
    }
}
