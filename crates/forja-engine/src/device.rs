//! Choosing where tensors live: `cpu`, `cuda` or `cuda:N`.

use crate::{EngineError, Result};
use candle_core::Device;

/// Parses a device spec and opens the device.
pub fn open(spec: &str) -> Result<Device> {
    let unavailable = |reason: String| EngineError::Device { device: spec.to_string(), reason };
    match spec {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                Some(n) => n
                    .parse::<usize>()
                    .map_err(|_| unavailable("expected cuda:N with N a GPU index".into()))?,
                None => 0,
            };
            if !cfg!(feature = "cuda") {
                return Err(unavailable(
                    "this forja was built without CUDA; rebuild with `cargo build --release --features cuda` on a machine with nvcc".into(),
                ));
            }
            Device::new_cuda(ordinal).map_err(|e| unavailable(e.to_string()))
        }
        _ => Err(unavailable("expected cpu, cuda or cuda:N".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert!(open("cpu").unwrap().is_cpu());
        let e = open("tpu").unwrap_err().to_string();
        assert!(e.contains("expected cpu, cuda or cuda:N"), "{e}");
        let e = open("cuda:x").unwrap_err().to_string();
        assert!(e.contains("cuda:N"), "{e}");
        if !cfg!(feature = "cuda") {
            let e = open("cuda:0").unwrap_err().to_string();
            assert!(e.contains("built without CUDA"), "{e}");
        }
    }
}
