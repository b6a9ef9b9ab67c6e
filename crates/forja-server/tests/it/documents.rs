//! Learning from corrected documents over HTTP: a corrected DOCX becomes a
//! delta, a dictionary entry (the tenant's only) and training pairs in the
//! pending pool (that serving applies the dictionary to the next
//! generation is tested on the real model, `forja/tests/it/documents_api.rs`); a cloned session's V2 is what a final compares with; hostile and
//! wrong uploads get clear 4xx answers and store nothing.

use crate::common;

use axum::body::Body;
use common::Bed;
use forja_control::documents::NewDraft;
use forja_docs::docx::{write_docx, DraftMeta};
use forja_docs::Block;
use forja_store::{ChunkSource, TenantSettings};
use serde_json::{json, Value};

fn paragraphs() -> Vec<Block> {
    [
        "La alcaldesa abre la sesión ordinaria del Pleno a las 19:00 horas.",
        "Interviene D. Jhon Yonson, portavoz del grupo vecinal, sobre el carril bici.",
        "La concejala de Hacienda propone destinar 12.000 euros a las fiestas del barrio norte.",
        "Se levanta la sesión a las 21:10 horas.",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| Block::paragraph(*t).with_chunk(format!("s{i}")))
    .collect()
}

/// Stores a draft for tenant `name` (as `POST /v1/documents` will).
fn draft(bed: &Bed, name: &str, session: &str, blocks: &[Block]) -> String {
    let tenant = bed.node.store.tenant_by_name(name).unwrap();
    let id = forja_control::documents::new_document_id();
    let bytes =
        write_docx(blocks, &DraftMeta { title: Some("Acta"), document_id: Some(&id) }).unwrap();
    let chunks = blocks
        .iter()
        .map(|b| ChunkSource {
            chunk_id: b.chunk_ids[0].clone(),
            source: format!("transcripción de {}", b.chunk_ids[0]),
            start_s: None,
            end_s: None,
        })
        .collect();
    let new = NewDraft {
        id,
        filename: "acta.docx".into(),
        bytes: bytes.into(),
        session: Some(session.into()),
        parent_id: None,
        model: Some("base".into()),
        chunks,
    };
    let row = bed.node.block_on(bed.node.control.store_generated(&tenant, new)).unwrap();
    row.id
}

fn docx(blocks: &[Block], id: &str) -> Vec<u8> {
    write_docx(blocks, &DraftMeta { title: None, document_id: Some(id) }).unwrap()
}

fn upload(bed: &Bed, key: &str, file: &[u8], generated_id: Option<&str>) -> common::Resp {
    let b = "xXbOuNdArYx";
    let mut body = Vec::new();
    if let Some(id) = generated_id {
        body.extend(
            format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"generated_id\"\r\n\r\n{id}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend(
        format!("--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"final.docx\"\r\n\r\n").as_bytes(),
    );
    body.extend(file);
    body.extend(format!("\r\n--{b}--\r\n").as_bytes());
    let ctype = format!("multipart/form-data; boundary={b}");
    bed.call("POST", "/v1/corrections", key, &[("content-type", &ctype)], Body::from(body))
}

#[test]
fn an_entity_fix_goes_to_the_dictionary_and_edits_become_pairs() {
    let bed = Bed::new(|_| {});
    let key = bed.tenant("acme", TenantSettings { threshold: None, ..TenantSettings::default() });
    let other =
        bed.tenant("other", TenantSettings { threshold: None, ..TenantSettings::default() });
    let gen = paragraphs();
    let v1 = draft(&bed, "acme", "pleno-1", &gen);

    let mut fin = gen.clone();
    fin[1].text = fin[1].text.replace("Jhon Yonson", "John Johnson");
    fin[2].text = fin[2].text.replace("12.000 euros a las fiestas", "15.000 euros a la biblioteca");
    fin.swap(0, 3);
    let r = upload(&bed, &key, &docx(&fin, &v1), None);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["compared_with"]["id"], v1.as_str());
    assert_eq!(r.body["dictionary_updated"], 1);
    assert_eq!(r.body["learning"]["training_pair"], 1);
    let paras = r.body["paragraphs"].as_array().unwrap();
    let pair = paras.iter().find(|p| p["learning"] == "training_pair").unwrap();
    assert_eq!(pair["example"]["status"], "curated", "{pair}");
    assert!(paras.iter().any(|p| p["op"] == "moved"), "{paras:?}");

    // The dictionary holds the fix with its provenance, for acme only.
    let d = bed.get("/v1/dictionary", &key);
    assert_eq!(d.body["data"][0]["wrong"], "Jhon Yonson");
    assert_eq!(d.body["data"][0]["source_document"], r.body["document"]["id"]);
    assert_eq!(d.body["data"][0]["source_chunk"], "s1");
    assert_eq!(bed.get("/v1/dictionary", &other).body["data"], json!([]));

    // The pair is pending, with the transcript segment as its input.
    let status = bed.get("/v1/learning/status", &key);
    assert_eq!(status.body["pending"]["curated"], 1, "{:?}", status.body);

    // Hand-added entries and removal, acme only.
    let add = bed.post(
        "/v1/dictionary",
        &key,
        json!({"entries": [{"wrong": "Balverde", "right": "Valverde"}]}),
    );
    assert_eq!(add.body["entries"], 2, "{:?}", add.body);
    let del = bed.call("DELETE", "/v1/dictionary/Balverde", &other, &[], Body::empty());
    assert_eq!(del.status, 404);
    let del = bed.call("DELETE", "/v1/dictionary/Balverde", &key, &[], Body::empty());
    assert_eq!(del.status, 200, "{:?}", del.body);
    assert_eq!(bed.get("/v1/dictionary", &key).body["data"].as_array().unwrap().len(), 1);
}

#[test]
fn a_cloned_session_compares_with_v2_and_wrong_uploads_store_nothing() {
    let bed = Bed::new(|_| {});
    let key = bed.tenant("acme", TenantSettings { threshold: None, ..TenantSettings::default() });
    let other =
        bed.tenant("other", TenantSettings { threshold: None, ..TenantSettings::default() });
    let gen = paragraphs();
    let v1 = draft(&bed, "acme", "pleno-2", &gen);
    let mut gen2 = gen.clone();
    gen2[2].text = "La concejala de Hacienda propone destinar 15.000 euros a la biblioteca.".into();
    let v2 = draft(&bed, "acme", "pleno-2", &gen2);
    let unrelated = draft(&bed, "acme", "pleno-3", &gen);

    // A final saved from V1's file is compared with V2 (audit v2.1): the
    // paragraph V2 already fixed is not an edit.
    let r = upload(&bed, &key, &docx(&gen2, &v1), None);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["compared_with"]["id"], v2.as_str());
    assert_eq!(r.body["compared_with"]["version"], 2);
    assert_eq!(r.body["named_draft"], v1.as_str());
    assert_eq!(r.body["summary"]["unchanged"], 4, "{:?}", r.body["summary"]);
    let docs_before = bed.get("/v1/documents", &key).body["data"].as_array().unwrap().len();

    let bad = |resp: common::Resp, status: u16, want: &str| {
        assert_eq!(resp.status.as_u16(), status, "{:?}", resp.body);
        assert!(resp.body["error"]["message"].as_str().unwrap().contains(want), "{:?}", resp.body);
    };
    // Not a DOCX; an OLE (encrypted) file; a zip bomb.
    bad(upload(&bed, &key, b"hola", Some(&v1)), 400, "not a DOCX document");
    let mut ole = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    ole.resize(2048, 0);
    bad(upload(&bed, &key, &ole, Some(&v1)), 400, "encrypted");
    // Another session's final against this draft.
    bad(upload(&bed, &key, &docx(&gen, &unrelated), Some(&v1)), 400, "descends from document");
    // Another tenant's draft id: not found, whichever way it is named.
    bad(upload(&bed, &other, &docx(&gen, &v1), None), 404, "no document");
    bad(upload(&bed, &other, &docx(&gen, &v1), Some(&v1)), 404, "no document");
    // No file field; a file without forja's id and no generated_id.
    let b = "bb";
    let body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"generated_id\"\r\n\r\n{v1}\r\n--{b}--\r\n"
    );
    let ctype = format!("multipart/form-data; boundary={b}");
    bad(
        bed.call("POST", "/v1/corrections", &key, &[("content-type", &ctype)], Body::from(body)),
        400,
        "`file`",
    );
    let plain = write_docx(&gen, &DraftMeta::default()).unwrap();
    bad(upload(&bed, &key, &plain, None), 400, "no forja document id");
    // Over the size limit: refused before it is read.
    let big = vec![b'P'; forja_control::documents::MAX_DOCUMENT_BYTES + 1];
    let r = upload(&bed, &key, &big, Some(&v1));
    assert_eq!(r.status.as_u16(), 413, "{:?}", r.body);
    // Nothing of it was stored.
    assert_eq!(bed.get("/v1/documents", &key).body["data"].as_array().unwrap().len(), docs_before);
    // Another tenant cannot read, download or delete acme's documents.
    for (m, p) in [
        ("GET", format!("/v1/documents/{v1}")),
        ("GET", format!("/v1/documents/{v1}/content")),
        ("DELETE", format!("/v1/documents/{v1}")),
    ] {
        assert_eq!(bed.call(m, &p, &other, &[], Body::empty()).status, 404);
    }
    let c = bed.call("GET", &format!("/v1/documents/{v1}/content"), &key, &[], Body::empty());
    assert_eq!(c.status, 200);
    // Bad dictionary entries name the field.
    for (body, want) in [
        (json!({"entries": []}), "entries"),
        (json!({"entries": [{"wrong": "", "right": "x"}]}), "entries[0].wrong"),
        (json!({"entries": [{"wrong": "a", "right": "a"}]}), "entries[0].right"),
        (json!({"entries": [{"wrong": "a", "right": "b", "extra": 1}]}), "unknown field"),
    ] {
        let r = bed.post("/v1/dictionary", &key, body);
        assert_eq!(r.status, 400);
        let text = format!("{}", r.body);
        assert!(text.contains(want), "{text}");
    }
}

fn upload_fields(bed: &Bed, key: &str, file: &[u8], fields: &[(&str, &str)]) -> common::Resp {
    let b = "aLiGnBoUnDaRy";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend(
        format!("--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"acta.docx\"\r\n\r\n")
            .as_bytes(),
    );
    body.extend(file);
    body.extend(format!("\r\n--{b}--\r\n").as_bytes());
    let ctype = format!("multipart/form-data; boundary={b}");
    bed.call("POST", "/v1/corrections", key, &[("content-type", &ctype)], Body::from(body))
}

#[test]
fn minutes_written_by_hand_are_aligned_to_their_transcript() {
    let bed = Bed::new(|_| {});
    let key = bed.tenant("acme", TenantSettings { threshold: None, ..TenantSettings::default() });
    let other =
        bed.tenant("other", TenantSettings { threshold: None, ..TenantSettings::default() });
    let transcript = json!([
        {"text": "buenas tardes se abre la sesión ordinaria del pleno", "start": 0.0, "end": 4.0},
        {"text": "punto primero aprobación del acta de la sesión anterior", "start": 4.0, "end": 8.0},
        {"text": "queda aprobada por unanimidad", "start": 8.0, "end": 10.0},
        {"text": "punto segundo modificación de la ordenanza de terrazas del casco antiguo", "start": 10.0, "end": 15.0},
        {"text": "con el voto en contra del grupo vecinal", "start": 15.0, "end": 18.0},
        {"text": "punto tercero contrato de recogida de residuos urbanos", "start": 18.0, "end": 22.0},
        {"text": "se aprueba la prórroga por dos años", "start": 22.0, "end": 25.0},
        {"text": "sin más asuntos se levanta la sesión", "start": 25.0, "end": 28.0},
    ]);
    let r = bed.post(
        "/v1/documents",
        &key,
        json!({"transcript": transcript, "max_tokens": 4, "session": "pleno-9"}),
    );
    assert_eq!(r.status, 200, "{:?}", r.body);
    let transcript_id = r.body["parent_id"].as_str().unwrap().to_string();
    let draft_id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["paragraphs"].as_array().unwrap().len(), 8, "a chunk per segment");

    // Minutes written by hand: no chunk ids, item 3 written before item 1.
    let minutes: Vec<Block> = std::iter::once(
        Block::paragraph("Acta del Pleno").with_kind(forja_docs::BlockKind::Heading { level: 1 }),
    )
    .chain(
        [
            "Se abre la sesión ordinaria del Pleno.",
            "Punto 3. Contrato de recogida de residuos urbanos: se aprueba la prórroga por dos años.",
            "Punto 1. Aprobación del acta de la sesión anterior: queda aprobada por unanimidad.",
            "Punto 2. Modificación de la ordenanza de terrazas del casco antiguo, con el voto en contra del grupo vecinal.",
            "Se levanta la sesión.",
        ]
        .iter()
        .map(|t| Block::paragraph(*t)),
    )
    .collect();
    let file = write_docx(&minutes, &DraftMeta::default()).unwrap();
    let r = upload_fields(&bed, &key, &file, &[("transcript_id", &transcript_id)]);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["object"], "corrections.aligned");
    let spans: Vec<Value> =
        r.body["paragraphs"].as_array().unwrap().iter().map(|p| p["segments"].clone()).collect();
    assert_eq!(spans, [json!([0, 0]), json!([5, 6]), json!([1, 2]), json!([3, 4]), json!([7, 7])]);
    assert!(r.body["paragraphs"][1]["out_of_order"].as_bool().unwrap());
    assert!(r.body["coverage"].as_f64().unwrap() > 0.99);
    for p in r.body["paragraphs"].as_array().unwrap() {
        assert_eq!(p["example"]["status"], "curated", "{p}");
    }
    assert_eq!(r.body["document"]["parent_id"], transcript_id.as_str());
    let status = bed.get("/v1/learning/status", &key);
    assert_eq!(status.body["pending"]["curated"], 5, "{:?}", status.body);

    // Wrong ids and fields.
    let r = upload_fields(&bed, &other, &file, &[("transcript_id", &transcript_id)]);
    assert_eq!(r.status, 404, "{:?}", r.body);
    let r = upload_fields(&bed, &key, &file, &[("transcript_id", &draft_id)]);
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("not a transcript"));
    let r = upload_fields(
        &bed,
        &key,
        &file,
        &[("transcript_id", &transcript_id), ("generated_id", &draft_id)],
    );
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = upload_fields(
        &bed,
        &key,
        &file,
        &[("transcript_id", &transcript_id), ("max_lookahead", "-3")],
    );
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.body["error"]["param"], "max_lookahead");
    let r = upload_fields(&bed, &key, &file, &[("colour", "red")]);
    assert_eq!(r.status, 400, "{:?}", r.body);
}
