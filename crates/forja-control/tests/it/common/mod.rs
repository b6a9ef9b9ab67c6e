//! The control plane the integration tests run against: a real SQLite file
//! and a local artifact directory in a temporary directory, with two
//! tenants (`acme`, `other`).

use forja_control::feedback::Curator;
use forja_control::{Control, ControlConfig, ModelNames};
use forja_store::prelude::*;
use forja_store::*;
use std::sync::Arc;
use std::time::Duration;

/// A control plane and two tenants; `dir` holds everything.
#[allow(dead_code)] // each test binary uses a part
pub struct Bed {
    pub control: Arc<Control>,
    pub a: Tenant,
    pub b: Tenant,
    pub dir: tempfile::TempDir,
}

pub fn bed() -> Bed {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("f.db"), Duration::from_secs(10)).unwrap());
    let control = Arc::new(Control::new(
        store.clone(),
        Artifacts::open(&ArtifactConfig::Local { dir: dir.path().join("artifacts") }).unwrap(),
        Curator::new(&Default::default()).unwrap(),
        ControlConfig {
            model: ModelNames { public: "tiny".into(), aliases: vec![] },
            lease_ttl_s: 30,
            max_attempts: 3,
            url_secret: b"k".to_vec(),
        },
        Arc::new(LocalBus::default()),
    ));
    let a = store.create_tenant("acme", "standard", &TenantSettings::default()).unwrap();
    let b = store.create_tenant("other", "standard", &TenantSettings::default()).unwrap();
    Bed { control, a, b, dir }
}
