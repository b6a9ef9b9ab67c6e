//! The continuous batcher on a tiny random model: requests that arrive at
//! different times, with different adapters (or none), get exactly the
//! tokens they get alone; a sink that returns `false` cancels its request
//! only; bad requests are refused at submit.

use candle_core::Tensor;
use forja_core::{GenerationParams, SamplingParams};
use forja_engine::fixtures::{self as common, Spec};
use forja_engine::lora::{Adapter, LoraConfig};
use forja_engine::{
    Batcher, BatcherConfig, Completion, Engine, FinishReason, Job, JobEvent, LoadOptions, Request,
};
use std::sync::mpsc;
use std::sync::Arc;

fn engine(dir: &std::path::Path) -> Engine {
    let spec = Spec::llama();
    common::write_hf(dir, &spec, &common::weights(&spec, 3));
    Engine::load(
        dir,
        &LoadOptions { threads: Some(2), ubatch: 8, ..Default::default() },
        &mut |_| {},
    )
    .unwrap()
}

fn adapter(e: &Engine, seed: u64) -> Arc<Adapter> {
    let a =
        Adapter::new(e.model(), &LoraConfig { r: 4, alpha: 8.0, ..Default::default() }, "t", seed)
            .unwrap();
    for (i, (_, v)) in a.vars().iter().enumerate() {
        let vals: Vec<f32> = (0..v.elem_count())
            .map(|j| {
                (((j as u64 + 7) * 2654435761 + seed * 31 + i as u64) % 997) as f32 / 2000.0 - 0.25
            })
            .collect();
        v.set(&Tensor::from_vec(vals, v.shape(), v.device()).unwrap()).unwrap();
    }
    Arc::new(a.frozen().unwrap())
}

fn params(max_tokens: usize, seed: Option<u64>) -> GenerationParams {
    let sampling = match seed {
        None => SamplingParams::greedy(),
        Some(s) => SamplingParams { seed: Some(s), temperature: 0.9, ..Default::default() },
    };
    GenerationParams { max_tokens, ignore_eos: true, sampling, ..Default::default() }
}

type Done = mpsc::Receiver<(usize, String, forja_engine::Result<Completion>)>;

fn submit(
    b: &Batcher,
    tx: &mpsc::Sender<(usize, String, forja_engine::Result<Completion>)>,
    i: usize,
    req: Request,
    adapter: Option<Arc<Adapter>>,
    cancel_after: Option<usize>,
) {
    let tx = tx.clone();
    let mut streamed = String::new();
    let mut pieces = 0;
    b.submit(Job {
        request: req,
        adapter,
        filter: None,
        sink: Box::new(move |ev| match ev {
            JobEvent::Text(t) => {
                streamed.push_str(t);
                pieces += 1;
                cancel_after.is_none_or(|n| pieces < n)
            }
            JobEvent::Done(r) => {
                let _ = tx.send((i, std::mem::take(&mut streamed), r));
                true
            }
        }),
    })
    .unwrap();
}

#[test]
fn staggered_requests_with_mixed_adapters_match_running_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Arc::new(engine(tmp.path()));
    let adapters = [None, Some(adapter(&e, 1)), Some(adapter(&e, 2))];
    let prompts: Vec<Vec<u32>> = vec![
        vec![5, 17, 42, 99, 7, 63, 120, 8, 9, 10, 11, 12, 13, 14],
        vec![9, 10],
        vec![30, 31, 32, 33, 34],
        vec![40, 41, 42],
        vec![50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61],
        vec![3, 4],
    ];
    let jobs: Vec<(Request, Option<Arc<Adapter>>)> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let seed = (i % 2 == 1).then_some(i as u64);
            (
                Request { prompt: p.clone(), params: params(10 + i * 3, seed) },
                adapters[i % 3].clone(),
            )
        })
        .collect();
    let b = Batcher::start(e.clone(), BatcherConfig { max_batch: 4, draft: None }).unwrap();
    let (tx, rx): (_, Done) = mpsc::channel();
    for (i, (req, a)) in jobs.iter().enumerate() {
        submit(&b, &tx, i, req.clone(), a.clone(), None);
        if i % 2 == 1 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let mut got: Vec<_> = (0..jobs.len()).map(|_| rx.recv().unwrap()).collect();
    got.sort_by_key(|g| g.0);
    for ((i, streamed, r), (req, a)) in got.into_iter().zip(&jobs) {
        let c = r.unwrap();
        let (alone, _) =
            e.generate_batch(std::slice::from_ref(req), a.as_deref(), &mut |_, _| true).unwrap();
        assert_eq!(c.tokens, alone[0].tokens, "request {i}");
        assert_eq!(c.text, alone[0].text, "request {i}");
        assert_eq!(streamed, c.text, "request {i}: streamed text is the text");
        assert_eq!(c.finish, FinishReason::Length);
    }
    assert_eq!(b.stats().live.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn a_cancelled_request_stops_alone_and_bad_requests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Arc::new(engine(tmp.path()));
    let b = Batcher::start(e.clone(), BatcherConfig::default()).unwrap();
    let (tx, rx): (_, Done) = mpsc::channel();
    let req = Request { prompt: vec![5, 6, 7], params: params(40, None) };
    submit(&b, &tx, 0, req.clone(), None, Some(3));
    submit(&b, &tx, 1, req, None, None);
    let mut got: Vec<_> = (0..2).map(|_| rx.recv().unwrap()).collect();
    got.sort_by_key(|g| g.0);
    let cancelled = got[0].2.as_ref().unwrap();
    let full = got[1].2.as_ref().unwrap();
    assert_eq!(cancelled.finish, FinishReason::Cancelled);
    assert!(cancelled.tokens.len() < 40);
    assert_eq!(full.tokens.len(), 40);
    assert_eq!(full.tokens[..cancelled.tokens.len()], cancelled.tokens[..]);

    let too_long = Request { prompt: vec![1; e.ctx_size()], params: params(4, None) };
    let sink: forja_engine::batcher::Sink = Box::new(|_| true);
    let err = b.submit(Job { request: too_long, adapter: None, filter: None, sink }).unwrap_err();
    assert!(err.to_string().contains("prompt"), "{err}");
    let bad = Request {
        prompt: vec![1],
        params: GenerationParams { max_tokens: 0, ..Default::default() },
    };
    let sink: forja_engine::batcher::Sink = Box::new(|_| true);
    let err = b.submit(Job { request: bad, adapter: None, filter: None, sink }).unwrap_err();
    assert!(err.to_string().contains("max_tokens"), "{err}");
}

#[test]
fn a_request_alone_speculates_with_a_draft_and_keeps_greedy_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Arc::new(engine(&tmp.path().join("target")));
    // A draft with other weights: some drafts are rejected, the output may not change.
    let spec = Spec::llama();
    let ddir = tmp.path().join("draft");
    common::write_hf(&ddir, &spec, &common::weights(&spec, 9));
    let draft = Arc::new(
        Engine::load(&ddir, &LoadOptions { threads: Some(1), ..Default::default() }, &mut |_| {})
            .unwrap(),
    );
    for d in [e.clone(), draft] {
        let cfg =
            forja_engine::speculative::SpecConfig { min_acceptance: 0.0, ..Default::default() };
        let b = Batcher::start(e.clone(), BatcherConfig { max_batch: 4, draft: Some((d, cfg)) })
            .unwrap();
        let (tx, rx): (_, Done) = mpsc::channel();
        let reqs: Vec<Request> = [vec![5u32, 17, 42, 99], vec![9, 10, 11]]
            .into_iter()
            .map(|p| Request { prompt: p, params: params(30, None) })
            .collect();
        for (i, r) in reqs.iter().enumerate() {
            // One at a time: each decodes alone, so it speculates.
            submit(&b, &tx, i, r.clone(), None, None);
            let (_, streamed, got) = rx.recv().unwrap();
            let c = got.unwrap();
            let (alone, _) =
                e.generate_batch(std::slice::from_ref(r), None, &mut |_, _| true).unwrap();
            assert_eq!(c.tokens, alone[0].tokens, "request {i}");
            assert_eq!(streamed, c.text);
        }
        let s = b.stats();
        assert!(s.spec_drafted.load(std::sync::atomic::Ordering::Relaxed) > 0, "no speculation");
    }
}
