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
        owner: "t".into(),
        cancelled: None,
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
    let err = b.submit(Job { sink, ..Job::new(too_long, "t", Box::new(|_| true)) }).unwrap_err();
    assert!(err.to_string().contains("prompt"), "{err}");
    let bad = Request {
        prompt: vec![1],
        params: GenerationParams { max_tokens: 0, ..Default::default() },
    };
    let sink: forja_engine::batcher::Sink = Box::new(|_| true);
    let err = b.submit(Job { sink, ..Job::new(bad, "t", Box::new(|_| true)) }).unwrap_err();
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

/// A job of `owner` whose completion (or error) and finish order are sent
/// to `tx`.
fn owned(
    owner: &str,
    req: Request,
    tx: &mpsc::Sender<(String, forja_engine::Result<Completion>)>,
    cancelled: Option<forja_engine::batcher::Cancelled>,
) -> Job {
    let (tx, tag) = (tx.clone(), owner.to_string());
    let mut job = Job::new(
        req,
        owner,
        Box::new(move |ev| {
            if let JobEvent::Done(r) = ev {
                let _ = tx.send((tag.clone(), r));
            }
            true
        }),
    );
    job.cancelled = cancelled;
    job
}

/// Regression (hardening #4): one tenant's flood (many long sequences)
/// delayed another tenant's one-token request until the flood ended. Slots
/// are shared between owners: the short request finishes while the flood
/// is still running, and the flood still finishes whole.
#[test]
fn one_owners_flood_does_not_hold_back_another_owners_short_request() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Arc::new(engine(tmp.path()));
    let b = Batcher::start(e.clone(), BatcherConfig { max_batch: 2, draft: None }).unwrap();
    let (tx, rx) = mpsc::channel();
    let long = Request { prompt: vec![5, 6, 7], params: params(60, None) };
    for _ in 0..6 {
        b.submit(owned("flood", long.clone(), &tx, None)).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    let short = Request { prompt: vec![9, 10], params: params(1, None) };
    b.submit(owned("quiet", short.clone(), &tx, None)).unwrap();
    let order: Vec<(String, Completion)> =
        (0..7).map(|_| rx.recv().map(|(o, r)| (o, r.unwrap())).unwrap()).collect();
    let quiet = order.iter().position(|(o, _)| o == "quiet").unwrap();
    assert!(
        quiet < 2,
        "the short request waited for the flood: {:?}",
        order.iter().map(|o| &o.0).collect::<Vec<_>>()
    );
    // Pausing a sequence changes nothing in what it generates.
    let (alone, _) = e.generate_batch(std::slice::from_ref(&long), None, &mut |_, _| true).unwrap();
    for (o, c) in &order {
        if o == "flood" {
            assert_eq!(c.tokens, alone[0].tokens);
        }
    }
    assert!(b.stats().preempted.load(std::sync::atomic::Ordering::Relaxed) >= 1);
}

/// Regression (hardening #4): work whose client disconnected still ran.
/// A cancelled job is dropped before admission and mid-generation.
#[test]
fn work_whose_client_left_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Arc::new(engine(tmp.path()));
    let b = Batcher::start(e.clone(), BatcherConfig { max_batch: 1, draft: None }).unwrap();
    let (tx, rx) = mpsc::channel();
    let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = |g: &Arc<std::sync::atomic::AtomicBool>| -> forja_engine::batcher::Cancelled {
        let g = g.clone();
        Box::new(move || g.load(std::sync::atomic::Ordering::SeqCst))
    };
    let long = Request { prompt: vec![5, 6, 7], params: params(400, None) };
    b.submit(owned("a", long.clone(), &tx, Some(probe(&gone)))).unwrap();
    b.submit(owned("a", long.clone(), &tx, Some(probe(&gone)))).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    gone.store(true, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..2 {
        let (_, r) = rx.recv().unwrap();
        let c = r.unwrap();
        assert_eq!(c.finish, FinishReason::Cancelled);
        assert!(c.tokens.len() < 400, "{}", c.tokens.len());
    }
    assert_eq!(b.stats().dropped.load(std::sync::atomic::Ordering::Relaxed), 2);
}

/// Regression (hardening #6): a NaN adapter made the sampler panic on the
/// batcher thread, and every later request failed until a restart. The
/// request fails with a clear error; the next one is served.
#[test]
fn a_nan_adapter_or_a_panicking_sink_fails_its_request_not_the_batcher() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Arc::new(engine(tmp.path()));
    let bad =
        Adapter::new(e.model(), &LoraConfig { r: 4, alpha: 8.0, ..Default::default() }, "t", 1)
            .unwrap();
    for (_, v) in bad.vars() {
        let nan = vec![f32::NAN; v.elem_count()];
        v.set(&Tensor::from_vec(nan, v.shape(), v.device()).unwrap()).unwrap();
    }
    let bad = Arc::new(bad.frozen().unwrap());
    let b = Batcher::start(e.clone(), BatcherConfig::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    for min_p in [0.0, 0.1] {
        let mut req = Request { prompt: vec![5, 6, 7], params: params(5, Some(1)) };
        req.params.sampling.min_p = min_p;
        let mut job = owned("a", req, &tx, None);
        job.adapter = Some(bad.clone());
        b.submit(job).unwrap();
        let e = rx.recv().unwrap().1.unwrap_err().to_string();
        assert!(e.contains("NaN"), "{e}");
    }
    // A sink that panics on text: its request is lost, the thread is not.
    let req = Request { prompt: vec![5, 6, 7], params: params(5, None) };
    b.submit(Job::new(
        req.clone(),
        "a",
        Box::new(|ev| match ev {
            JobEvent::Text(_) => panic!("a sink bug"),
            JobEvent::Done(_) => true,
        }),
    ))
    .unwrap();
    b.submit(owned("a", req, &tx, None)).unwrap();
    let (_, ok) = rx.recv().unwrap();
    assert_eq!(ok.unwrap().tokens.len(), 5);
    assert!(b.stats().panics.load(std::sync::atomic::Ordering::Relaxed) >= 1);
}

/// Echo scoring: the prompt's log-probabilities (the first token has
/// none) equal log-softmax of `Engine::logits_at`, whatever the chunking;
/// with `max_tokens` 0 nothing is generated.
#[test]
fn prompt_and_token_logprobs_match_the_models_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Arc::new(engine(tmp.path()));
    let b = Batcher::start(e.clone(), BatcherConfig::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    let prompt: Vec<u32> = (0..21).map(|i| (i * 7 + 3) % 100).collect();
    let mut p = params(0, None);
    p.prompt_logprobs = Some(2);
    b.submit(owned("a", Request { prompt: prompt.clone(), params: p }, &tx, None)).unwrap();
    let c = rx.recv().unwrap().1.unwrap();
    assert!(c.tokens.is_empty());
    assert_eq!(c.prompt_logprobs.len(), prompt.len());
    assert!(c.prompt_logprobs[0].is_none());
    let positions: Vec<usize> = (0..prompt.len()).collect();
    let rows = e.logits_at(&prompt, &positions, None).unwrap();
    for (i, lp) in c.prompt_logprobs.iter().enumerate().skip(1) {
        let lp = lp.as_ref().unwrap();
        let want = forja_engine::logprob(&rows[i - 1], prompt[i], 2);
        assert_eq!(lp.token, prompt[i]);
        assert!(
            (lp.logprob - want.logprob).abs() < 1e-4,
            "{i}: {} vs {}",
            lp.logprob,
            want.logprob
        );
        assert_eq!(lp.top.len(), 2);
        assert_eq!(lp.top[0].0, want.top[0].0);
    }
    // Generated tokens: greedy, so each is the arg-max of its row.
    let mut p = params(4, None);
    p.logprobs = Some(1);
    b.submit(owned("a", Request { prompt: prompt.clone(), params: p }, &tx, None)).unwrap();
    let c = rx.recv().unwrap().1.unwrap();
    assert_eq!(c.logprobs.len(), 4);
    for (t, lp) in c.tokens.iter().zip(&c.logprobs) {
        assert_eq!((lp.token, lp.top[0].0), (*t, *t));
        assert!(lp.logprob <= 0.0 && (lp.logprob - lp.top[0].1).abs() < 1e-6);
    }
}
