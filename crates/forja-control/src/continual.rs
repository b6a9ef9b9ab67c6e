//! Continual learning's training mix: what a triggered job trains on
//! beyond the examples it claimed. Earlier examples of the tenant are
//! replayed (a deterministic sample, or the newest window) so the adapter
//! does not forget the tenant's history, and a share of general replay
//! rows (added by the worker, [`crate::replay`]) keeps what the base model
//! could do. The mix is fixed when the job is validated and stored with
//! it, so a resumed job trains on exactly the same rows and a version's
//! lineage names every one.

use forja_store::{sha256_hex, Example, LearningPolicy, TrainingMix};

/// The most earlier examples a job may replay.
pub const MAX_HISTORY: usize = 100_000;

/// A job's mix: the record, and the replayed examples (in id order).
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// What is stored with the job.
    pub mix: TrainingMix,
    /// The replayed examples.
    pub replay: Vec<Example>,
}

/// How many general rows make `fraction` of a mix that has `other` rows
/// besides them (0.2 of the whole: a quarter of the rest).
pub fn general_rows(fraction: f64, other: u64) -> u64 {
    if fraction <= 0.0 || other == 0 {
        return 0;
    }
    (fraction / (1.0 - fraction) * other as f64).round() as u64
}

/// The mix of job `job_id` with `new` examples under `policy`: replay from
/// `history` (the tenant's examples already trained on, oldest first),
/// warm start from `champion` when the policy says so.
pub fn plan(
    policy: &LearningPolicy,
    job_id: &str,
    new: u64,
    history: &[Example],
    champion: Option<&str>,
) -> Mix {
    let replay: Vec<Example> = if policy.history_window > 0 {
        let w = policy.history_window as usize;
        history[history.len().saturating_sub(w)..].to_vec()
    } else {
        let k = ((policy.history_replay * new as f64).round() as usize).min(history.len());
        // A sample that depends on the job and the example only: the same
        // job always replays the same rows, and different jobs different ones.
        let mut ranked: Vec<(String, &Example)> = history
            .iter()
            .map(|e| (sha256_hex(format!("{job_id}/{}", e.id).as_bytes()), e))
            .collect();
        ranked.sort_by(|a, b| a.0.cmp(&b.0));
        let mut picked: Vec<Example> = ranked.into_iter().take(k).map(|(_, e)| e.clone()).collect();
        picked.sort_by_key(|e| e.id);
        picked
    };
    let warm = match policy.start_from {
        forja_store::StartFrom::Champion => champion.map(str::to_string),
        forja_store::StartFrom::Base => None,
    };
    let mix = TrainingMix {
        policy: policy.clone(),
        new_examples: new,
        replay_example_ids: replay.iter().map(|e| e.id).collect(),
        general_rows: general_rows(policy.general_replay, new + replay.len() as u64),
        warm_start_from: warm,
    };
    Mix { mix, replay }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forja_store::{ExampleStatus, StartFrom};

    fn history(n: i64) -> Vec<Example> {
        (1..=n)
            .map(|id| Example {
                id,
                status: ExampleStatus::Claimed,
                reason: None,
                record: Some(serde_json::json!({"text": format!("e{id}")})),
                job_id: Some("ftjob-old".into()),
            })
            .collect()
    }

    #[test]
    fn mixes_follow_the_policy() {
        let h = history(100);
        let p = LearningPolicy::default();
        // (policy, new, champion) → (replayed, general rows, warm start)
        type Case<'a> = (LearningPolicy, u64, Option<&'a str>, usize, u64, Option<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            (p.clone(), 40, Some("v1"), 20, 15, Some("v1")),
            (p.clone(), 40, None, 20, 15, None),
            (LearningPolicy { history_replay: 0.0, ..p.clone() }, 40, None, 0, 10, None),
            (LearningPolicy { history_replay: 5.0, ..p.clone() }, 40, None, 100, 35, None),
            (
                LearningPolicy { start_from: StartFrom::Base, history_window: 30, ..p.clone() },
                40,
                Some("v1"),
                30,
                18,
                None,
            ),
            (LearningPolicy { general_replay: 0.0, ..p.clone() }, 40, None, 20, 0, None),
        ];
        for (i, (policy, new, champ, replayed, general, warm)) in cases.into_iter().enumerate() {
            let m = plan(&policy, "ftjob-a", new, &h, champ);
            assert_eq!(m.replay.len(), replayed, "case {i}");
            assert_eq!(m.mix.replay_example_ids.len(), replayed, "case {i}");
            assert_eq!(m.mix.general_rows, general, "case {i}");
            assert_eq!(m.mix.warm_start_from.as_deref(), warm, "case {i}");
            assert!(m.mix.replay_example_ids.windows(2).all(|w| w[0] < w[1]), "case {i}");
        }
        // A window replays the newest examples.
        let policy = LearningPolicy { history_window: 10, ..p.clone() };
        assert_eq!(
            plan(&policy, "j", 5, &h, None).mix.replay_example_ids,
            (91..=100).collect::<Vec<_>>()
        );
    }

    #[test]
    fn samples_are_stable_per_job_and_differ_between_jobs() {
        let h = history(200);
        let p = LearningPolicy::default();
        let a = plan(&p, "ftjob-a", 50, &h, None).mix.replay_example_ids;
        assert_eq!(a, plan(&p, "ftjob-a", 50, &h, None).mix.replay_example_ids);
        let b = plan(&p, "ftjob-b", 50, &h, None).mix.replay_example_ids;
        assert_ne!(a, b);
        // Spread over the history, not its head.
        assert!(a.iter().any(|&id| id > 100) && a.iter().any(|&id| id <= 100), "{a:?}");
    }

    #[test]
    fn general_share_is_a_fraction_of_the_whole() {
        for (f, other, want) in [(0.2, 400, 100), (0.5, 10, 10), (0.0, 10, 0), (0.2, 0, 0)] {
            let g = general_rows(f, other);
            assert_eq!(g, want, "{f} of {other}");
        }
    }
}
