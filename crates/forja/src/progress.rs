//! Progress bars on stderr (hidden when stderr is not a terminal).

use forja_engine::LoadProgress;
use indicatif::{ProgressBar, ProgressStyle};

/// A load-progress callback that draws a bar of layers built.
pub fn model_load(label: &str) -> (ProgressBar, impl FnMut(LoadProgress) + Send) {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} layers {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(format!("loading {label}"));
    let b = bar.clone();
    let cb = move |p: LoadProgress| match p {
        LoadProgress::Metadata => b.tick(),
        LoadProgress::Layers { done, total } => {
            b.set_length(total as u64);
            b.set_position(done as u64 + 1);
        }
        LoadProgress::Done => b.finish_and_clear(),
    };
    (bar, cb)
}

/// A bar counting generated tokens with their rate.
pub fn tokens(max: usize) -> ProgressBar {
    let bar = ProgressBar::new(max as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} generating [{bar:30}] {pos}/{len} tokens {per_sec} {elapsed}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}
