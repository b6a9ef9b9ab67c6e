//! Choosing where tensors live: `cpu`, `cuda` or `cuda:N`.

use crate::{EngineError, Result};
use candle_core::Device;

/// Parses a device spec: `None` for the CPU, the GPU index for `cuda`
/// (0) and `cuda:N`.
pub fn parse(spec: &str) -> Result<Option<usize>> {
    let bad =
        |reason: &str| EngineError::Device { device: spec.to_string(), reason: reason.into() };
    match spec {
        "cpu" => Ok(None),
        "cuda" => Ok(Some(0)),
        s => match s.strip_prefix("cuda:") {
            Some(n) => n.parse().map(Some).map_err(|_| bad("expected cuda:N with N a GPU index")),
            None => Err(bad("expected cpu, cuda or cuda:N")),
        },
    }
}

/// Parses a device spec and opens the device.
pub fn open(spec: &str) -> Result<Device> {
    let Some(ordinal) = parse(spec)? else { return Ok(Device::Cpu) };
    let unavailable = |reason: String| EngineError::Device { device: spec.to_string(), reason };
    if !cfg!(feature = "cuda") {
        return Err(unavailable(
            "this forja was built without CUDA; rebuild with `cargo build --release --features cuda` on a machine with nvcc".into(),
        ));
    }
    Device::new_cuda(ordinal).map_err(|e| unavailable(e.to_string()))
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
