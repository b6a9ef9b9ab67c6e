//! Scheduled tasks on a real SQLite file: one claim per fire when two
//! schedulers race, a lease that keeps a run by hand out while a task
//! runs, a dead runner's run marked abandoned, skipped fires recorded, a
//! backup that opens with the whole schema, and artifact references found
//! in any column, JSON included.

use forja_store::prelude::*;
use forja_store::tasks::outcome;
use forja_store::*;
use std::sync::Arc;
use std::time::Duration;

fn claim<'a>(
    name: &'a str,
    last: Option<i64>,
    fire: Option<i64>,
    runner: &'a str,
    now: i64,
) -> TaskClaim<'a> {
    TaskClaim { name, last, fire, runner, now, lease_s: 600, missed: 0, skip: false, detail: "" }
}

#[test]
fn one_claim_per_fire_leases_and_abandoned_runs() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let s =
            Arc::new(crate::backend::open(&dir.path().join("forja.db"), Duration::from_secs(30)));
        assert!(s.init_task("backup", 1000).unwrap());
        assert!(!s.init_task("backup", 2000).unwrap(), "a schedule is started once");
        // Eight schedulers see the same fire: one claims it.
        let won: Vec<_> = (0..8)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let runner = format!("r{i}");
                    s.claim_task(&claim("backup", Some(1000), Some(1100), &runner, 1100)).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(won.len(), 1);
        let holder = s.task_states().unwrap()[0].holder.clone().unwrap();
        // While it runs, a run by hand is refused; a renewal by the holder works.
        assert_eq!(s.claim_task(&claim("backup", None, None, "cli", 1200)).unwrap(), None);
        assert!(s.renew_task("backup", &holder, 1900).unwrap());
        assert!(!s.renew_task("backup", "someone-else", 1900).unwrap());
        // The runner dies: past its lease the next claim marks its run abandoned.
        let manual = s.claim_task(&claim("backup", None, None, "cli", 2000)).unwrap().unwrap();
        let runs = s.task_runs(Some("backup"), 10).unwrap();
        assert_eq!(runs[0].id, manual);
        assert_eq!(runs[1].outcome, outcome::ABANDONED);
        s.finish_task(&manual, "cli", 2010, outcome::OK, "done").unwrap();
        let r = &s.task_runs(Some("backup"), 1).unwrap()[0];
        assert_eq!(
            (r.outcome.as_str(), r.detail.as_str(), r.finished_at),
            ("ok", "done", Some(2010))
        );
        // A run by hand leaves the schedule alone; a stale `last` loses.
        assert_eq!(s.task_states().unwrap()[0].last_fire, Some(1100));
        assert_eq!(
            s.claim_task(&claim("backup", Some(1000), Some(1200), "r1", 2100)).unwrap(),
            None
        );
        // A skipped fire is recorded finished and moves the schedule.
        let skip = TaskClaim {
            skip: true,
            missed: 3,
            detail: "late",
            ..claim("backup", Some(1100), Some(5000), "r1", 5100)
        };
        s.claim_task(&skip).unwrap().unwrap();
        let r = &s.task_runs(Some("backup"), 1).unwrap()[0];
        assert_eq!((r.outcome.as_str(), r.missed, r.scheduled_for), ("skipped", 3, Some(5000)));
        assert_eq!(s.task_states().unwrap()[0].holder, None);
        // Purging keeps what is newer.
        let before = s.task_runs(None, 10).unwrap();
        assert_eq!(s.purge_task_runs(2050).unwrap(), 2, "{before:?}");
        assert_eq!(s.task_runs(None, 10).unwrap().len(), 1);
    });
}

#[test]
fn backup_opens_whole_and_references_are_found_everywhere() {
    crate::backend::both(|| {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::backend::open(&dir.path().join("forja.db"), Duration::from_secs(30));
        let t = s.create_tenant("acme", "free", &TenantSettings::default()).unwrap();
        let sha = "c".repeat(64);
        let mut v = NewVersion::candidate(
            &t.id,
            "base",
            [("adapter_model.safetensors".to_string(), "d".repeat(64))].into_iter().collect(),
        );
        v.manifest = serde_json::json!({"dataset": {"sha256": sha}});
        s.register_version(&v, "test").unwrap();
        let refs = s.artifact_references().unwrap();
        assert!(refs.contains(&sha) && refs.contains(&"d".repeat(64)), "{refs:?}");
        assert!(!refs.contains(&"e".repeat(64)));
        let dest = dir.path().join("copy.db");
        if crate::backend::on_postgres() {
            let e = s.backup_to(&dest).unwrap_err().to_string();
            assert!(e.contains("pg_dump"), "{e}");
            assert!(s.compact().is_ok());
            return;
        }
        assert!(s.backup_to(&dest).unwrap() > 0);
        let h = check_database(&dest).unwrap();
        assert_eq!((h.integrity.as_str(), h.schema), ("ok", h.newest));
        let copy = SqliteStore::open(&dest, Duration::from_secs(30)).unwrap();
        assert_eq!(copy.tenant_by_name("acme").unwrap().id, t.id);
        assert!(s.backup_to(&dest).is_err(), "a backup never overwrites");
    });
}
