//! The schedule's decisions on fixed clocks: on time, late, missed fires
//! caught up once or skipped, time zones, and configuration errors.

use super::*;

fn set(toml_like: &[(&str, TaskSpec)]) -> TaskSet {
    let m = toml_like.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    TaskSet::new(&m).unwrap()
}

// 2026-12-05 00:00:00 UTC
const DAY: i64 = 1_796_428_800;

#[test]
fn on_time_late_and_missed_fires() {
    let tasks = TaskSet::default();
    let backup = tasks.get(TaskKind::Backup); // 0 3 * * *, catch up
    let at3 = DAY + 3 * 3600;
    assert_eq!(due(backup, DAY, DAY + 3600), Due::NotYet(Some(at3)));
    assert_eq!(due(backup, DAY, at3), Due::Run { fire: at3, missed: 0 });
    assert_eq!(due(backup, DAY, at3 + 60), Due::Run { fire: at3, missed: 0 });
    // Down for three days: caught up once, for the latest fire.
    let later = at3 + 3 * 86_400 + 7200;
    assert_eq!(due(backup, DAY, later), Due::Run { fire: at3 + 3 * 86_400, missed: 3 });
    // The same with the skip policy: skipped once the fire is late.
    let skip = set(&[("backup", TaskSpec { missed: Some(Missed::Skip), ..Default::default() })]);
    let b = skip.get(TaskKind::Backup);
    assert_eq!(due(b, DAY, later), Due::Skip { fire: at3 + 3 * 86_400, missed: 3 });
    assert_eq!(due(b, DAY, at3 + ON_TIME_S), Due::Run { fire: at3, missed: 0 });
    assert_eq!(due(b, DAY, at3 + ON_TIME_S + 1), Due::Skip { fire: at3, missed: 0 });
}

#[test]
fn time_zones_move_the_fire() {
    let tasks = set(&[(
        "report",
        TaskSpec {
            cron: Some("0 9 * * *".into()),
            tz: Some("Europe/Madrid".into()),
            ..Default::default()
        },
    )]);
    // 09:00 in Madrid in December is 08:00 UTC.
    assert_eq!(tasks.get(TaskKind::Report).next_after(DAY), Some(DAY + 8 * 3600));
}

#[test]
fn configuration_errors_name_the_field() {
    let cases: Vec<(&str, TaskSpec, &str)> = vec![
        (
            "backup",
            TaskSpec { cron: Some("61 * * * *".into()), ..Default::default() },
            "tasks.backup.cron",
        ),
        (
            "backup",
            TaskSpec { tz: Some("Mars/Olympus".into()), ..Default::default() },
            "tasks.backup.tz",
        ),
        ("gc", TaskSpec { keep: Some(3), ..Default::default() }, "tasks.gc.keep"),
        ("gc", TaskSpec { grace_hours: Some(-1.0), ..Default::default() }, "tasks.gc.grace_hours"),
        ("nightly", TaskSpec::default(), "tasks.nightly"),
    ];
    for (name, spec, want) in cases {
        let m = [(name.to_string(), spec)].into_iter().collect();
        let e = TaskSet::new(&m).unwrap_err().to_string();
        assert!(e.contains(want), "{name}: {e}");
    }
}
