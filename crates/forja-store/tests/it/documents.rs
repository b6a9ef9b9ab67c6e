//! Documents and dictionaries on a real SQLite file: lineage (a cloned
//! session's V2 is what a final compares with), tenant isolation, storage
//! accounting, deletion unlinking children, dictionary upserts.

use forja_store::prelude::*;
use forja_store::*;
use std::time::Duration;

fn doc(tenant: &str, id: &str, kind: DocKind, parent: Option<&str>, version: u32) -> DocumentRow {
    DocumentRow {
        id: id.into(),
        tenant_id: tenant.into(),
        kind,
        parent_id: parent.map(Into::into),
        session: Some("pleno-1".into()),
        version,
        filename: format!("{id}.docx"),
        sha256: "a".repeat(64),
        bytes: 1000,
        model: None,
        created_at: 0,
    }
}

#[test]
fn lineage_isolation_storage_and_dictionary() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::backend::open(&dir.path().join("forja.db"), Duration::from_secs(30));
        let a = s.create_tenant("a", "free", &TenantSettings::default()).unwrap();
        let b = s.create_tenant("b", "free", &TenantSettings::default()).unwrap();
        let used = |t: &Tenant| s.storage(&t.id).unwrap().used_bytes;
        let before = used(&a);

        s.insert_document(&doc(&a.id, "doc-t", DocKind::Transcript, None, 1), &[]).unwrap();
        let chunks = [ChunkSource {
            chunk_id: "s1".into(),
            source: "se abre la sesión".into(),
            start_s: Some(0.0),
            end_s: Some(2.5),
        }];
        s.insert_document(&doc(&a.id, "doc-v1", DocKind::Generated, Some("doc-t"), 1), &chunks)
            .unwrap();
        s.insert_document(&doc(&a.id, "doc-v2", DocKind::Generated, Some("doc-t"), 2), &chunks)
            .unwrap();
        assert_eq!(s.latest_generated(&a.id, "pleno-1").unwrap().unwrap().id, "doc-v2");
        assert_eq!(s.latest_generated(&a.id, "pleno-9").unwrap(), None);
        assert_eq!(s.document_chunks(&a.id, "doc-v1").unwrap(), chunks);
        assert!(used(&a) > before + 3000);

        // Another tenant sees none of it and cannot hang its documents under them.
        assert!(matches!(s.document(&b.id, "doc-v1"), Err(StoreError::NotFound { .. })));
        assert!(matches!(s.document_chunks(&b.id, "doc-v1"), Err(StoreError::NotFound { .. })));
        assert_eq!(s.latest_generated(&b.id, "pleno-1").unwrap(), None);
        let stolen = doc(&b.id, "doc-x", DocKind::Final, Some("doc-v2"), 1);
        assert!(matches!(s.insert_document(&stolen, &[]), Err(StoreError::NotFound { .. })));
        assert!(s.documents(&b.id).unwrap().is_empty());

        // Deleting the transcript unlinks its children and refunds its bytes.
        s.delete_document(&a.id, "doc-t").unwrap();
        assert_eq!(s.document(&a.id, "doc-v1").unwrap().parent_id, None);
        s.delete_document(&a.id, "doc-v1").unwrap();
        s.delete_document(&a.id, "doc-v2").unwrap();
        assert_eq!(used(&a), before);

        // Dictionary: upsert by `wrong`, per tenant, with provenance.
        let e = |w: &str, r: &str| DictionaryEntry {
            wrong: w.into(),
            right: r.into(),
            source_document: Some("doc-f".into()),
            source_chunk: Some("s1".into()),
            created_at: 0,
        };
        assert_eq!(
            s.upsert_dictionary(
                &a.id,
                &[e("Jhon Yonson", "John Jonson"), e("Balverde", "Valverde")]
            )
            .unwrap(),
            2
        );
        assert_eq!(s.upsert_dictionary(&a.id, &[e("Jhon Yonson", "John Johnson")]).unwrap(), 2);
        let d = s.dictionary(&a.id).unwrap();
        assert_eq!(
            d.iter().map(|x| (x.wrong.as_str(), x.right.as_str())).collect::<Vec<_>>(),
            [("Balverde", "Valverde"), ("Jhon Yonson", "John Johnson")]
        );
        assert_eq!(d[1].source_chunk.as_deref(), Some("s1"));
        assert!(s.dictionary(&b.id).unwrap().is_empty());
        assert!(matches!(s.remove_dictionary(&b.id, "Balverde"), Err(StoreError::NotFound { .. })));
        s.remove_dictionary(&a.id, "Balverde").unwrap();
        s.remove_dictionary(&a.id, "Jhon Yonson").unwrap();
        assert_eq!(used(&a), before);
    });
}
