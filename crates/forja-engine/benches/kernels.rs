//! Micro-benchmark of the quantized matmul kernels (`cargo bench -p
//! forja-engine --bench kernels`, THREADS=n for n threads, default 1):
//! weights hot in cache (compute bound) and cold (streamed from memory),
//! decode (m = 1) and prefill (m = 64) shapes of SmolLM2-135M, on the
//! engine's own thread pool. Prints weight GB/s and GMAC/s.

use forja_engine::quant::{QMatrix, QType};
use forja_engine::SpinPool;
use std::time::Instant;

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn main() {
    let threads = std::env::var("THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(1);
    let pool = SpinPool::new(threads).unwrap();
    // The CPU and the kernel level every figure ran on (BENCHMARKS.md
    // records both).
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(str::to_owned))
        .and_then(|l| l.split(':').nth(1).map(|m| m.trim().to_owned()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    println!("cpu: {cpu}, kernel level: {}, {threads} thread(s)", forja_engine::isa::Isa::active());
    pool.install(|| {
        println!("| format | rows x cols | m | copies | weight GB/s | GMAC/s |");
        println!("| --- | --- | ---: | ---: | ---: | ---: |");
        for (qt, rows, cols) in [
            (QType::Q4_1, 1536, 576),
            (QType::Q4_1, 576, 1536),
            (QType::Q8_0, 4096, 576),
            (QType::Q4_0, 1536, 576),
        ] {
            for (m, copies) in [(1, 1), (1, 64), (64, 1)] {
                // `copies` distinct matrices cycled through: 64 copies do not
                // fit in cache, so weights stream from memory.
                let mats: Vec<QMatrix> = (0..copies)
                    .map(|c| {
                        QMatrix::quantize(qt, rows, cols, &data(rows * cols, c as u64 + 1)).unwrap()
                    })
                    .collect();
                let x = data(m * cols, 99);
                let mut y = vec![0f32; m * rows];
                let iters = (2_000_000_000 / (rows * cols * m)).clamp(3, 20_000);
                let t = Instant::now();
                for i in 0..iters {
                    mats[i % copies].matmul(&x, m, &mut y);
                }
                let secs = t.elapsed().as_secs_f64();
                let bytes = (rows * cols / 32 * qt.block_bytes()) as f64 * iters as f64;
                let macs = (rows * cols * m) as f64 * iters as f64;
                println!(
                    "| {} | {rows} x {cols} | {m} | {copies} | {:.1} | {:.1} |",
                    qt.name(),
                    bytes / secs / 1e9,
                    macs / secs / 1e9
                );
            }
        }
    });
}
