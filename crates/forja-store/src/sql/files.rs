//! [`Files`] in SQL (SQLite and Postgres): file records (bytes live in the artifact store);
//! uploads are charged to the tenant's storage, generated files are not.

use super::rows::{file_row, get_tenant, rows, FILE_COLS};
use super::tenants::{charge, refund};
use super::SqliteStore;
use crate::db::{params, Connection, OptionalExtension};
use crate::error::{sql, Result, StoreError};
use crate::types::*;
use crate::Files;

fn get_file(c: &Connection, tenant_id: &str, id: &str) -> Result<FileRow> {
    c.query_row(
        &format!("SELECT {FILE_COLS} FROM files WHERE id = ?1 AND tenant_id = ?2"),
        [id, tenant_id],
        file_row,
    )
    .optional()
    .map_err(sql("read file"))?
    .ok_or_else(|| StoreError::NotFound { what: "file", id: id.into() })
}

impl Files for SqliteStore {
    fn insert_file(&self, f: &FileRow) -> Result<()> {
        self.tx("store file", |c, _| {
            let tenant = get_tenant(c, &f.tenant_id)?;
            if f.origin == FileOrigin::Upload {
                charge(c, &tenant, f.bytes)?;
            }
            c.execute(
                &format!(
                    "INSERT INTO files ({FILE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ),
                params![
                    f.id,
                    f.tenant_id,
                    f.purpose,
                    f.filename,
                    f.bytes as i64,
                    f.sha256,
                    f.lines as i64,
                    f.status,
                    f.status_details,
                    f.created_at,
                    f.origin.as_str()
                ],
            )
            .map_err(sql("store file"))?;
            Ok(())
        })
    }

    fn file(&self, tenant_id: &str, id: &str) -> Result<FileRow> {
        self.read(|c, _| get_file(c, tenant_id, id))
    }

    fn files(&self, tenant_id: &str) -> Result<Vec<FileRow>> {
        self.read(|c, _| {
            rows(
                c,
                "list files",
                &format!(
                    "SELECT {FILE_COLS} FROM files WHERE tenant_id = ?1 \
                     ORDER BY created_at DESC, id DESC"
                ),
                [tenant_id],
                file_row,
            )
        })
    }

    fn delete_file(&self, tenant_id: &str, id: &str) -> Result<FileRow> {
        self.tx("delete file", |c, _| {
            let f = get_file(c, tenant_id, id)?;
            let busy: Option<String> = c
                .query_row(
                    "SELECT id FROM jobs WHERE tenant_id = ?1 AND (training_file = ?2 OR validation_file = ?2) \
                     AND status IN ('validating_files', 'queued', 'running') LIMIT 1",
                    params![tenant_id, id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql("delete file"))?;
            if let Some(job) = busy {
                return Err(StoreError::Conflict(format!(
                    "file `{id}` is used by job `{job}`, which has not finished; cancel it first"
                )));
            }
            c.execute("DELETE FROM files WHERE id = ?1", [id]).map_err(sql("delete file"))?;
            if f.origin == FileOrigin::Upload {
                refund(c, tenant_id, f.bytes)?;
            }
            Ok(f)
        })
    }
}
