//! [`Memory`] in SQL (SQLite and Postgres): facts charged to the tenant's quota, merged or
//! superseded in one transaction, found for recall through their terms.

use super::rows::{get_tenant, rows};
use super::tenants::{charge, refund};
use super::{new_id, SqliteStore};
use crate::db::{params, params_from_iter, Connection, OptionalExtension, Row};
use crate::error::{sql, Result, StoreError};
use crate::memory::*;

const COLS: &str = "id, tenant_id, subject, verb, object, since, subject_key, verb_key, \
    object_key, source_kind, source_ref, confidence, mentions, created_at, updated_at, \
    superseded_by, superseded_at";

fn fact_row(r: &Row<'_>) -> crate::db::Result<Fact> {
    Ok(Fact {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        subject: r.get(2)?,
        verb: r.get(3)?,
        object: r.get(4)?,
        since: r.get(5)?,
        subject_key: r.get(6)?,
        verb_key: r.get(7)?,
        object_key: r.get(8)?,
        source_kind: r.get(9)?,
        source_ref: r.get(10)?,
        confidence: r.get::<_, f64>(11)? as f32,
        mentions: r.get::<_, i64>(12)? as u64,
        created_at: r.get(13)?,
        updated_at: r.get(14)?,
        superseded_by: r.get(15)?,
        superseded_at: r.get(16)?,
    })
}

fn rejection_row(r: &Row<'_>) -> crate::db::Result<MemoryRejection> {
    Ok(MemoryRejection {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        source_kind: r.get(2)?,
        source_ref: r.get(3)?,
        reason: r.get(4)?,
        text: r.get(5)?,
        created_at: r.get(6)?,
    })
}

fn get_fact(c: &Connection, tenant_id: &str, id: &str) -> Result<Fact> {
    c.query_row(
        &format!("SELECT {COLS} FROM memory_facts WHERE id = ?1 AND tenant_id = ?2"),
        [id, tenant_id],
        fact_row,
    )
    .optional()
    .map_err(sql("read memory fact"))?
    .ok_or_else(|| StoreError::NotFound { what: "memory fact", id: id.into() })
}

fn bytes_of(f: &NewFact) -> u64 {
    (f.subject.len() * 2
        + f.verb.len() * 2
        + f.object.len() * 2
        + f.terms.iter().map(|t| t.len() + 48).sum::<usize>()
        + f.source_ref.as_deref().map_or(0, str::len)
        + 160) as u64
}

fn fact_bytes(c: &Connection, id: &str) -> Result<u64> {
    c.query_row("SELECT bytes FROM memory_facts WHERE id = ?1", [id], |r| r.get::<_, i64>(0))
        .map(|b| b as u64)
        .map_err(sql("read memory fact"))
}

fn write_terms(c: &Connection, tenant_id: &str, id: &str, terms: &[String]) -> Result<()> {
    c.execute("DELETE FROM memory_terms WHERE fact_id = ?1", [id])
        .map_err(sql("write memory terms"))?;
    let mut st = c
        .prepare(
            "INSERT INTO memory_terms (fact_id, tenant_id, term) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )
        .map_err(sql("write memory terms"))?;
    for t in terms {
        st.execute(params![id, tenant_id, t]).map_err(sql("write memory terms"))?;
    }
    Ok(())
}

/// Deletes facts (refunded); the facts each had superseded are current
/// again unless they are deleted too. Returns how many were restored.
fn delete_facts(c: &Connection, tenant_id: &str, ids: &[String]) -> Result<u64> {
    let mut restored = 0;
    for id in ids {
        let bytes = fact_bytes(c, id)?;
        restored += c
            .execute(
                "UPDATE memory_facts SET superseded_by = NULL, superseded_at = NULL
                 WHERE superseded_by = ?1 AND tenant_id = ?2",
                [id, tenant_id],
            )
            .map_err(sql("restore memory facts"))? as u64;
        c.execute("DELETE FROM memory_facts WHERE id = ?1", [id])
            .map_err(sql("forget memory fact"))?;
        refund(c, tenant_id, bytes)?;
    }
    Ok(restored)
}

/// `key` as a LIKE pattern matching it as whole words inside
/// `' ' || column || ' '` (keys are folded words: no `%` or `_`).
fn whole_words(key: &str) -> String {
    format!("% {} %", key.replace(['%', '_', '\\'], ""))
}

impl Memory for SqliteStore {
    fn remember_fact(&self, tenant_id: &str, f: &NewFact) -> Result<Remembered> {
        self.tx("remember memory fact", |c, now| {
            let same: Option<Fact> = c
                .query_row(
                    &format!(
                        "SELECT {COLS} FROM memory_facts WHERE tenant_id = ?1 AND subject_key = ?2 \
                         AND verb_key = ?3 AND object_key = ?4 AND superseded_at IS NULL"
                    ),
                    params![tenant_id, f.subject_key, f.verb_key, f.object_key],
                    fact_row,
                )
                .optional()
                .map_err(sql("read memory fact"))?;
            if let Some(old) = same {
                c.execute(
                    &format!(
                        "UPDATE memory_facts SET mentions = mentions + 1, updated_at = ?2,
                         confidence = {}(confidence, ?3), since = COALESCE(?4, since) WHERE id = ?1",
                        c.greatest()
                    ),
                    params![old.id, now, f.confidence as f64, f.since],
                )
                .map_err(sql("merge memory fact"))?;
                return Ok(Remembered::Merged(get_fact(c, tenant_id, &old.id)?));
            }
            let count: i64 = c
                .query_row("SELECT COUNT(*) FROM memory_facts WHERE tenant_id = ?1", [tenant_id], |r| {
                    r.get(0)
                })
                .map_err(sql("count memory facts"))?;
            if count as u64 >= MAX_FACTS {
                return Err(StoreError::Conflict(format!(
                    "the tenant's memory holds {MAX_FACTS} facts, its limit; forget some \
                     (DELETE /v1/memory/facts/ID or POST /v1/memory/forget) first"
                )));
            }
            let bytes = bytes_of(f);
            charge(c, &get_tenant(c, tenant_id)?, bytes)?;
            let id = new_id("mem");
            c.execute(
                "INSERT INTO memory_facts (id, tenant_id, subject, verb, object, since, subject_key, \
                 verb_key, object_key, source_kind, source_ref, confidence, bytes, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)",
                params![
                    id,
                    tenant_id,
                    f.subject,
                    f.verb,
                    f.object,
                    f.since,
                    f.subject_key,
                    f.verb_key,
                    f.object_key,
                    f.source_kind,
                    f.source_ref,
                    f.confidence as f64,
                    bytes as i64,
                    now
                ],
            )
            .map_err(sql("remember memory fact"))?;
            write_terms(c, tenant_id, &id, &f.terms)?;
            let rivals = match f.slot {
                Slot::None => None,
                Slot::Subject => Some((
                    "subject_key = ?2 AND verb_key = ?3 AND object_key <> ?4",
                    [&f.subject_key, &f.verb_key, &f.object_key],
                )),
                Slot::Object => Some((
                    "verb_key = ?3 AND object_key = ?4 AND subject_key <> ?2",
                    [&f.subject_key, &f.verb_key, &f.object_key],
                )),
            };
            let mut superseded = Vec::new();
            if let Some((cond, [s, v, o])) = rivals {
                superseded = rows(
                    c,
                    "read memory facts",
                    &format!(
                        "SELECT {COLS} FROM memory_facts WHERE tenant_id = ?1 AND {cond} \
                         AND superseded_at IS NULL AND id <> ?5"
                    ),
                    params![tenant_id, s, v, o, id],
                    fact_row,
                )?;
                for old in &superseded {
                    c.execute(
                        "UPDATE memory_facts SET superseded_by = ?2, superseded_at = ?3 WHERE id = ?1",
                        params![old.id, id, now],
                    )
                    .map_err(sql("supersede memory fact"))?;
                }
            }
            Ok(Remembered::New { fact: get_fact(c, tenant_id, &id)?, superseded })
        })
    }

    fn memory_facts(&self, tenant_id: &str, filter: &FactFilter) -> Result<Vec<Fact>> {
        self.read(|c, _| {
            let entity = filter.entity.as_deref().map(whole_words);
            rows(
                c,
                "list memory facts",
                &format!(
                    "SELECT {COLS} FROM memory_facts WHERE tenant_id = ?1 \
                     AND (?2 OR superseded_at IS NULL) \
                     AND (CAST(?3 AS TEXT) IS NULL OR (' ' || subject_key || ' ') {like} ?3 \
                          OR (' ' || object_key || ' ') {like} ?3) \
                     ORDER BY updated_at DESC, id LIMIT ?4",
                    like = c.ilike()
                ),
                params![tenant_id, filter.history, entity, filter.limit.max(1) as i64],
                fact_row,
            )
        })
    }

    fn memory_fact(&self, tenant_id: &str, id: &str) -> Result<Fact> {
        self.read(|c, _| get_fact(c, tenant_id, id))
    }

    fn edit_memory_fact(&self, tenant_id: &str, id: &str, f: &NewFact) -> Result<Fact> {
        self.tx("edit memory fact", |c, now| {
            get_fact(c, tenant_id, id)?;
            let (old, bytes) = (fact_bytes(c, id)?, bytes_of(f));
            refund(c, tenant_id, old)?;
            charge(c, &get_tenant(c, tenant_id)?, bytes)?;
            c.execute(
                "UPDATE memory_facts SET subject = ?2, verb = ?3, object = ?4, since = ?5,
                 subject_key = ?6, verb_key = ?7, object_key = ?8, confidence = ?9, bytes = ?10,
                 source_kind = ?11, updated_at = ?12 WHERE id = ?1",
                params![
                    id,
                    f.subject,
                    f.verb,
                    f.object,
                    f.since,
                    f.subject_key,
                    f.verb_key,
                    f.object_key,
                    f.confidence as f64,
                    bytes as i64,
                    f.source_kind,
                    now
                ],
            )
            .map_err(sql("edit memory fact"))?;
            write_terms(c, tenant_id, id, &f.terms)?;
            get_fact(c, tenant_id, id)
        })
    }

    fn forget_memory_fact(&self, tenant_id: &str, id: &str) -> Result<Fact> {
        self.tx("forget memory fact", |c, _| {
            let f = get_fact(c, tenant_id, id)?;
            delete_facts(c, tenant_id, std::slice::from_ref(&f.id))?;
            Ok(f)
        })
    }

    fn forget_memory_entity(&self, tenant_id: &str, key: &str) -> Result<Forgotten> {
        let pattern = whole_words(key);
        self.tx("forget memory entity", |c, _| {
            let ids: Vec<String> = rows(
                c,
                "find memory entity",
                &format!(
                    "SELECT id FROM memory_facts WHERE tenant_id = ?1 \
                     AND ((' ' || subject_key || ' ') {like} ?2 OR (' ' || object_key || ' ') {like} ?2)",
                    like = c.ilike()
                ),
                params![tenant_id, pattern],
                |r| r.get::<_, String>(0),
            )?;
            // Facts superseded by a forgotten one that are forgotten too
            // are not counted as restored.
            let restored = delete_facts(c, tenant_id, &ids)?;
            let rejections = c
                .execute(
                    &format!(
                        "DELETE FROM memory_rejections WHERE tenant_id = ?1 \
                         AND (' ' || text_key || ' ') {} ?2",
                        c.ilike()
                    ),
                    params![tenant_id, pattern],
                )
                .map_err(sql("forget memory rejections"))? as u64;
            Ok(Forgotten { facts: ids.len() as u64, rejections, restored })
        })
    }

    fn recall_memory(&self, tenant_id: &str, terms: &[String], limit: usize) -> Result<Vec<Fact>> {
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        self.read(|c, _| {
            let marks = vec!["?"; terms.len()].join(", ");
            let cols: String =
                COLS.split(", ").map(|col| format!("f.{col}")).collect::<Vec<_>>().join(", ");
            let q = format!(
                "SELECT {cols} FROM memory_terms t JOIN memory_facts f ON f.id = t.fact_id \
                 WHERE t.tenant_id = ? AND t.term IN ({marks}) AND f.superseded_at IS NULL \
                 GROUP BY f.id ORDER BY COUNT(*) DESC, f.confidence DESC, f.updated_at DESC LIMIT ?"
            );
            let mut args: Vec<crate::db::Value> = vec![tenant_id.to_string().into()];
            args.extend(terms.iter().map(|t| t.clone().into()));
            args.push((limit as i64).into());
            rows(c, "recall memory", &q, params_from_iter(args), fact_row)
        })
    }

    fn reject_memory_fact(
        &self,
        tenant_id: &str,
        r: &MemoryRejection,
        text_key: &str,
    ) -> Result<()> {
        self.tx("record memory rejection", |c, now| {
            c.execute(
                "INSERT INTO memory_rejections (tenant_id, source_kind, source_ref, reason, text, \
                 text_key, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![tenant_id, r.source_kind, r.source_ref, r.reason, r.text, text_key, now],
            )
            .map_err(sql("record memory rejection"))?;
            c.execute(
                "DELETE FROM memory_rejections WHERE tenant_id = ?1 AND id NOT IN \
                 (SELECT id FROM memory_rejections WHERE tenant_id = ?1 ORDER BY id DESC LIMIT ?2)",
                params![tenant_id, MAX_REJECTIONS as i64],
            )
            .map_err(sql("trim memory rejections"))?;
            Ok(())
        })
    }

    fn memory_rejections(&self, tenant_id: &str, limit: usize) -> Result<Vec<MemoryRejection>> {
        self.read(|c, _| {
            rows(
                c,
                "list memory rejections",
                "SELECT id, tenant_id, source_kind, source_ref, reason, text, created_at \
                 FROM memory_rejections WHERE tenant_id = ?1 ORDER BY id DESC LIMIT ?2",
                params![tenant_id, limit.max(1) as i64],
                rejection_row,
            )
        })
    }
}
