//! The adapter cache: loaded LoRA adapters keyed by (tenant, version),
//! evicted least-recently-used first when their bytes exceed a budget. An
//! evicted adapter still in use stays alive until its last request ends
//! (requests hold an `Arc`); the cache only stops handing it out.

use forja_engine::lora::Adapter;
use std::collections::HashMap;
use std::sync::Arc;

/// `(tenant id, version id)`: a version is only ever found under its owner.
pub type Key = (String, String);

struct Entry {
    adapter: Arc<Adapter>,
    bytes: usize,
    used: u64,
}

/// An LRU map of adapters with a byte budget.
pub struct AdapterCache {
    budget: usize,
    entries: HashMap<Key, Entry>,
    clock: u64,
}

impl std::fmt::Debug for AdapterCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdapterCache({} adapters, {} bytes)", self.entries.len(), self.bytes())
    }
}

/// Bytes an adapter's weights take (f32 A and B matrices).
pub fn adapter_bytes(a: &Adapter) -> usize {
    a.num_params() * 4
}

impl AdapterCache {
    /// An empty cache that keeps at most `budget` bytes (the newest adapter
    /// is kept even if it alone is larger).
    pub fn new(budget: usize) -> AdapterCache {
        AdapterCache { budget, entries: HashMap::new(), clock: 0 }
    }

    /// The adapter, marked as just used.
    pub fn get(&mut self, key: &Key) -> Option<Arc<Adapter>> {
        self.clock += 1;
        let e = self.entries.get_mut(key)?;
        e.used = self.clock;
        Some(e.adapter.clone())
    }

    /// Adds an adapter; returns how many were evicted to make room.
    pub fn insert(&mut self, key: Key, adapter: Arc<Adapter>) -> usize {
        self.clock += 1;
        let bytes = adapter_bytes(&adapter);
        self.entries.insert(key.clone(), Entry { adapter, bytes, used: self.clock });
        let mut evicted = 0;
        while self.bytes() > self.budget && self.entries.len() > 1 {
            let oldest = self
                .entries
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.entries.remove(&k);
                    evicted += 1;
                }
                None => break,
            }
        }
        evicted
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.entries.values().map(|e| e.bytes).sum()
    }

    /// Adapters held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forja_engine::fixtures::{self, Spec};
    use forja_engine::lora::LoraConfig;
    use forja_engine::{Engine, LoadOptions};

    #[test]
    fn least_recently_used_goes_first() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = Spec::llama();
        fixtures::write_hf(tmp.path(), &spec, &fixtures::weights(&spec, 1));
        let e = Engine::load(tmp.path(), &LoadOptions::default(), &mut |_| {}).unwrap();
        let a =
            |seed| Arc::new(Adapter::new(e.model(), &LoraConfig::default(), "t", seed).unwrap());
        let one = adapter_bytes(&a(0));
        let key = |v: &str| ("tn".to_string(), v.to_string());
        let mut c = AdapterCache::new(2 * one);
        assert_eq!(c.insert(key("a"), a(1)), 0);
        assert_eq!(c.insert(key("b"), a(2)), 0);
        assert!(c.get(&key("a")).is_some()); // a is now newer than b
        assert_eq!(c.insert(key("c"), a(3)), 1);
        assert!(c.get(&key("b")).is_none(), "b was the least recently used");
        assert!(c.get(&key("a")).is_some() && c.get(&key("c")).is_some());
        assert_eq!(c.bytes(), 2 * one);
        // Another tenant's key never finds the adapter.
        assert!(c.get(&("other".into(), "a".into())).is_none());
        // A budget smaller than one adapter still keeps the newest.
        let mut tiny = AdapterCache::new(1);
        tiny.insert(key("a"), a(1));
        tiny.insert(key("b"), a(2));
        assert_eq!(tiny.len(), 1);
        assert!(tiny.get(&key("b")).is_some());
    }
}
