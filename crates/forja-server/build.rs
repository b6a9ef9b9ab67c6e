//! Rebuilds the crate when the web UI's build output changes, so the
//! binary embeds the UI that `make web` just built.

fn main() {
    println!("cargo:rerun-if-changed=../../web/dist");
    println!("cargo:rerun-if-changed=../../web/dist/index.html");
}
