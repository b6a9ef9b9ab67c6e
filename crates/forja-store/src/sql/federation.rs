//! [`Federation`] in SQL (SQLite and Postgres): nodes, deltas and rounds, each change in one
//! immediate transaction with its ledger entry. One round is open at a
//! time (a partial unique index), and a node has at most one accepted
//! delta per round (another).

use super::governance::ledger_in;
use super::rows::{col_json, rows, to_json};
use super::SqliteStore;
use crate::db::{params, Connection, OptionalExtension, Row};
use crate::error::{sql, Result, StoreError};
use crate::federation::*;

const NODE_COLS: &str = "public_key, name, status, created_at, updated_at";
const DELTA_COLS: &str =
    "sha256, node, round_id, manifest, signature, status, reason, checks, created_at";
const ROUND_COLS: &str = "id, status, opened_at, deadline, closed_at, reason, manifest, signature";

fn node_row(r: &Row<'_>) -> crate::db::Result<FedNode> {
    Ok(FedNode {
        public_key: r.get(0)?,
        name: r.get(1)?,
        status: r.get(2)?,
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

fn delta_row(r: &Row<'_>) -> crate::db::Result<FedDelta> {
    Ok(FedDelta {
        sha256: r.get(0)?,
        node: r.get(1)?,
        round_id: r.get(2)?,
        manifest: r.get(3)?,
        signature: r.get(4)?,
        status: r.get(5)?,
        reason: r.get(6)?,
        checks: col_json(r, 7)?,
        created_at: r.get(8)?,
    })
}

fn round_row(r: &Row<'_>) -> crate::db::Result<FedRound> {
    Ok(FedRound {
        id: r.get(0)?,
        status: r.get(1)?,
        opened_at: r.get(2)?,
        deadline: r.get(3)?,
        closed_at: r.get(4)?,
        reason: r.get(5)?,
        manifest: r.get(6)?,
        signature: r.get(7)?,
    })
}

fn get_node(c: &Connection, key: &str) -> Result<FedNode> {
    c.query_row(
        &format!("SELECT {NODE_COLS} FROM fed_nodes WHERE public_key = lower(?1)"),
        [key],
        node_row,
    )
    .optional()
    .map_err(sql("read node"))?
    .ok_or_else(|| StoreError::NotFound { what: "federation node", id: key.into() })
}

fn get_round(c: &Connection, id: i64) -> Result<FedRound> {
    c.query_row(&format!("SELECT {ROUND_COLS} FROM fed_rounds WHERE id = ?1"), [id], round_row)
        .optional()
        .map_err(sql("read round"))?
        .ok_or_else(|| StoreError::NotFound { what: "round", id: id.to_string() })
}

fn get_delta(c: &Connection, sha: &str) -> Result<Option<FedDelta>> {
    c.query_row(&format!("SELECT {DELTA_COLS} FROM fed_deltas WHERE sha256 = ?1"), [sha], delta_row)
        .optional()
        .map_err(sql("read delta"))
}

fn open_in(c: &Connection) -> Result<Option<FedRound>> {
    c.query_row(
        &format!("SELECT {ROUND_COLS} FROM fed_rounds WHERE status = 'open'"),
        params![],
        round_row,
    )
    .optional()
    .map_err(sql("read open round"))
}

impl Federation for SqliteStore {
    fn join_node(&self, public_key: &str, name: &str) -> Result<FedNode> {
        let key = forja_core::identity::public_key(public_key)
            .map_err(|e| StoreError::Conflict(format!("node `{name}`: {e}")))?;
        self.tx("join node", |c, now| {
            if let Some(n) = c
                .query_row(
                    &format!("SELECT {NODE_COLS} FROM fed_nodes WHERE public_key = ?1"),
                    [&key],
                    node_row,
                )
                .optional()
                .map_err(sql("join node"))?
            {
                return Ok(n);
            }
            let pending: i64 = c
                .query_row("SELECT COUNT(*) FROM fed_nodes WHERE status = 'pending'", params![], |r| {
                    r.get(0)
                })
                .map_err(sql("join node"))?;
            if pending >= 1000 {
                return Err(StoreError::Conflict(
                    "1000 nodes already wait for approval; an admin must approve or revoke some first".into(),
                ));
            }
            c.execute(
                &format!("INSERT INTO fed_nodes ({NODE_COLS}) VALUES (?1, ?2, 'pending', ?3, ?3)"),
                params![key, name, now],
            )
            .map_err(sql("join node"))?;
            let body = serde_json::json!({ "node": key, "name": name });
            ledger_in(c, &self.key, "node_joined", None, &body, now)?;
            get_node(c, &key)
        })
    }

    fn fed_node(&self, public_key: &str) -> Result<FedNode> {
        self.read(|c, _| get_node(c, public_key))
    }

    fn fed_nodes(&self) -> Result<Vec<FedNode>> {
        self.read(|c, _| {
            rows(
                c,
                "list nodes",
                &format!("SELECT {NODE_COLS} FROM fed_nodes ORDER BY name, public_key"),
                params![],
                node_row,
            )
        })
    }

    fn set_node_status(&self, public_key: &str, status: &str, actor: &str) -> Result<FedNode> {
        if !["approved", "revoked"].contains(&status) {
            return Err(StoreError::Conflict(format!(
                "a node is approved or revoked, not {status}"
            )));
        }
        self.tx("set node status", |c, now| {
            let n = get_node(c, public_key)?;
            if n.status == "revoked" && status == "approved" {
                return Err(StoreError::Conflict(format!(
                    "node {} was revoked; it must join again with a new key",
                    n.public_key
                )));
            }
            c.execute(
                "UPDATE fed_nodes SET status = ?1, updated_at = ?2 WHERE public_key = ?3",
                params![status, now, n.public_key],
            )
            .map_err(sql("set node status"))?;
            let kind = if status == "approved" { "node_approved" } else { "node_revoked" };
            let body = serde_json::json!({ "node": n.public_key, "name": n.name, "actor": actor });
            ledger_in(c, &self.key, kind, None, &body, now)?;
            get_node(c, &n.public_key)
        })
    }

    fn fed_delta(&self, sha256: &str) -> Result<Option<FedDelta>> {
        self.read(|c, _| get_delta(c, sha256))
    }

    fn record_delta(&self, d: &NewDelta, deadline_s: i64) -> Result<FedDelta> {
        self.tx("record delta", |c, now| {
            if let Some(existing) = get_delta(c, &d.sha256)? {
                return Ok(existing);
            }
            let (status, reason, round) = match &d.verdict {
                Err(why) => ("rejected", Some(why.clone()), None),
                Ok(()) => {
                    let round = match open_in(c)? {
                        Some(r) => r.id,
                        None => {
                            let id = c.insert_id(
                                "INSERT INTO fed_rounds (status, opened_at, deadline) VALUES ('open', ?1, ?2)",
                                params![now, now.saturating_add(deadline_s)],
                            )
                            .map_err(sql("open round"))?;
                            let body = serde_json::json!({ "round": id, "deadline": now.saturating_add(deadline_s) });
                            ledger_in(c, &self.key, "round_opened", None, &body, now)?;
                            id
                        }
                    };
                    let dup: Option<String> = c
                        .query_row(
                            "SELECT sha256 FROM fed_deltas WHERE round_id = ?1 AND node = ?2 AND status = 'accepted'",
                            params![round, d.node],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(sql("record delta"))?;
                    if let Some(other) = dup {
                        return Err(StoreError::Conflict(format!(
                            "node {} already contributed delta {other} to round {round}; send the next one after it closes",
                            d.node
                        )));
                    }
                    ("accepted", None, Some(round))
                }
            };
            c.execute(
                &format!("INSERT INTO fed_deltas ({DELTA_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                params![d.sha256, d.node, round, d.manifest, d.signature, status, reason, to_json(&d.checks), now],
            )
            .map_err(sql("record delta"))?;
            let body = serde_json::json!({
                "delta": d.sha256, "node": d.node, "round": round, "reason": reason, "checks": d.checks,
            });
            let kind = if round.is_some() { "delta_accepted" } else { "delta_rejected" };
            ledger_in(c, &self.key, kind, None, &body, now)?;
            get_delta(c, &d.sha256)?.ok_or_else(|| StoreError::NotFound { what: "delta", id: d.sha256.clone() })
        })
    }

    fn open_round(&self) -> Result<Option<(FedRound, Vec<FedDelta>)>> {
        self.read(|c, _| {
            let Some(r) = open_in(c)? else { return Ok(None) };
            let deltas = rows(
                c,
                "list round deltas",
                &format!(
                    "SELECT {DELTA_COLS} FROM fed_deltas WHERE round_id = ?1 AND status = 'accepted' ORDER BY created_at, sha256"
                ),
                [r.id],
                delta_row,
            )?;
            Ok(Some((r, deltas)))
        })
    }

    fn close_round(
        &self,
        id: i64,
        outcome: std::result::Result<(String, String), String>,
    ) -> Result<FedRound> {
        self.tx("close round", |c, now| {
            let r = get_round(c, id)?;
            if r.status != "open" {
                return Err(StoreError::Conflict(format!("round {id} is {}, not open", r.status)));
            }
            match &outcome {
                Ok((manifest, sig)) => {
                    c.execute(
                        "UPDATE fed_rounds SET status = 'published', closed_at = ?1, manifest = ?2, signature = ?3 WHERE id = ?4",
                        params![now, manifest, sig, id],
                    )
                    .map_err(sql("publish round"))?;
                    let m: serde_json::Value = serde_json::from_str(manifest).unwrap_or_default();
                    let body = serde_json::json!({
                        "round": id, "files": m["files"], "contributors": m["contributors"], "method": m["method"],
                    });
                    ledger_in(c, &self.key, "round_published", None, &body, now)?;
                }
                Err(why) => {
                    c.execute(
                        "UPDATE fed_rounds SET status = 'failed', closed_at = ?1, reason = ?2 WHERE id = ?3",
                        params![now, why, id],
                    )
                    .map_err(sql("fail round"))?;
                    let body = serde_json::json!({ "round": id, "reason": why });
                    ledger_in(c, &self.key, "round_failed", None, &body, now)?;
                }
            }
            get_round(c, id)
        })
    }

    fn rounds(&self, limit: usize) -> Result<Vec<FedRound>> {
        self.read(|c, _| {
            rows(
                c,
                "list rounds",
                &format!("SELECT {ROUND_COLS} FROM fed_rounds ORDER BY id DESC LIMIT ?1"),
                [limit.min(10_000) as i64],
                round_row,
            )
        })
    }

    fn round(&self, id: i64) -> Result<FedRound> {
        self.read(|c, _| get_round(c, id))
    }
}
