//! Records the git commit forja is built from (`FORJA_COMMIT`), for the
//! lineage of every trained adapter. Outside a git checkout: `unknown`.

use std::process::Command;

fn main() {
    let commit = std::env::var("FORJA_COMMIT").ok().or_else(|| {
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    });
    println!("cargo:rustc-env=FORJA_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
    println!("cargo:rerun-if-env-changed=FORJA_COMMIT");
    for p in ["../../.git/HEAD", "../../.git/refs/heads"] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
