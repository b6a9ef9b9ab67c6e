//! Reading and writing safetensors files the way the Python ecosystem
//! expects them: f32 little-endian data and `{"format": "pt"}` metadata
//! (transformers refuses archives without it).

use crate::error::candle_text;
use crate::{EngineError, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Writes `tensors` (any float dtype; stored as f32) to `path` atomically.
pub fn save(tensors: &[(String, Tensor)], path: &Path) -> Result<()> {
    let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let v: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        bufs.push((name.clone(), t.dims().to_vec(), bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bufs
        .iter()
        .map(|(n, shape, bytes)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .expect("shape and byte count agree");
            (n.clone(), view)
        })
        .collect();
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let tmp = path.with_extension("safetensors.tmp");
    safetensors::serialize_to_file(views, Some(meta), &tmp)
        .map_err(|e| EngineError::malformed(&tmp, format!("cannot write safetensors: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| EngineError::io(path, e))
}

/// Reads every tensor of `path` onto `device`, as stored (any dtype).
pub fn load(path: &Path, device: &Device) -> Result<Vec<(String, Tensor)>> {
    let map = candle_core::safetensors::load(path, device).map_err(|e| {
        EngineError::malformed(path, format!("not a valid safetensors file: {}", candle_text(&e)))
    })?;
    let mut v: Vec<(String, Tensor)> = map.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}
