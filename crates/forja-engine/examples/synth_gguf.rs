//! Writes a Llama-architecture GGUF with random weights, of any size, for
//! speed measurements where a model must not fit in the CPU's caches
//! (`bench/decode-dram.sh`). Its text is noise; its shapes, formats and
//! bytes per token are those of a real model of that size.
//!
//! usage: synth_gguf OUT.gguf [LAYERS=22] [HIDDEN=2048] [INTER=5632] [TYPE=q4_1]
//! (the defaults are TinyLlama-1.1B's shapes: 0.7 GB as Q4_1)

use candle_core::quantized::GgmlDType;
use forja_engine::fixtures::{self, Spec};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        anyhow::bail!("usage: synth_gguf OUT.gguf [LAYERS] [HIDDEN] [INTER] [q4_0|q4_1|q8_0]");
    };
    let num = |i: usize, default: usize| -> anyhow::Result<usize> {
        match args.get(i) {
            None => Ok(default),
            Some(s) => {
                s.parse().map_err(|_| anyhow::anyhow!("argument {i} ({s:?}) is not a number"))
            }
        }
    };
    let (layers, hidden, inter) = (num(1, 22)?, num(2, 2048)?, num(3, 5632)?);
    let dtype = match args.get(4).map(String::as_str).unwrap_or("q4_1") {
        "q4_0" => GgmlDType::Q4_0,
        "q4_1" => GgmlDType::Q4_1,
        "q8_0" => GgmlDType::Q8_0,
        t => anyhow::bail!("type {t:?}: use q4_0, q4_1 or q8_0"),
    };
    anyhow::ensure!(
        hidden % 64 == 0 && inter % 32 == 0,
        "HIDDEN must be a multiple of 64, INTER of 32"
    );
    let heads = hidden / 64;
    let spec = Spec {
        family: "llama",
        hidden,
        inter,
        layers,
        heads,
        kv_heads: (heads / 8).max(1),
        head_dim: 64,
        tie: true,
        window: None,
        context: 2048,
    };
    let w = fixtures::weights(&spec, 7);
    fixtures::write_gguf(std::path::Path::new(out), &spec, &w, dtype);
    println!("{out}: {layers} layers, hidden {hidden}, intermediate {inter}, {dtype:?}");
    Ok(())
}
