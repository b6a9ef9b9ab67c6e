//! Self-repair: a newly promoted champion whose answers draw significantly
//! more thumbs-down (ratings 1–2) and corrections than its predecessor's is
//! rolled back, with the test's numbers as the reason (seed 004).
//!
//! The test is a one-sided two-proportion z-test: `p₁ = bad₁/n₁` of the
//! champion's answers since its promotion (watched for `window_s`),
//! `p₀ = bad₀/n₀` of the previous champion's answers in the `window_s`
//! before it; pooled `p = (bad₁+bad₀)/(n₁+n₀)`,
//! `z = (p₁ − p₀) / √(p(1−p)(1/n₁ + 1/n₀))`. Both sides need `min_served`
//! answers; the champion goes back when `z ≥` the tenant's `z` (2.33 by
//! default, α = 0.01). The rollback is the registry's own (logged with the
//! actor `auto-rollback`, published, hot-swapped, votes settled where
//! governance applies), so an operator sees it like any other.

use crate::{Control, Result};
use forja_store::{AliasMove, AutoRollback, LiveSignals, CHAMPION};
use std::sync::atomic::Ordering;

/// The actor auto-rollbacks are logged under.
pub const ACTOR: &str = "auto-rollback";

/// Seconds between two checks of every tenant.
pub const EVERY_S: i64 = 10;

/// The z statistic of `new` being worse than `old` (`None` when both
/// shares are 0 or 1: no evidence either way).
pub fn z_score(new: LiveSignals, old: LiveSignals) -> Option<f64> {
    let (n1, n0) = (new.served as f64, old.served as f64);
    if n1 == 0.0 || n0 == 0.0 {
        return None;
    }
    let (p1, p0) = (new.bad as f64 / n1, old.bad as f64 / n0);
    let p = (new.bad + old.bad) as f64 / (n1 + n0);
    let var = p * (1.0 - p) * (1.0 / n1 + 1.0 / n0);
    (var > 0.0).then(|| (p1 - p0) / var.sqrt())
}

/// Why the champion should go back, if it should.
pub fn verdict(
    policy: &AutoRollback,
    champion: &str,
    previous: &str,
    new: LiveSignals,
    old: LiveSignals,
) -> Option<String> {
    if new.served < policy.min_served || old.served < policy.min_served {
        return None;
    }
    let z = z_score(new, old)?;
    (z >= policy.z).then(|| {
        format!(
            "automatic rollback: {}/{} answers of {champion} were rated 1-2 or corrected against \
             {}/{} of {previous} (one-sided two-proportion z = {z:.2} >= {})",
            new.bad, new.served, old.bad, old.served, policy.z
        )
    })
}

impl Control {
    /// Checks every tenant with an auto-rollback policy (at most every
    /// [`EVERY_S`] seconds) and rolls back the champions that regressed.
    pub async fn check_live_regressions(&self) -> Result<Vec<AliasMove>> {
        let now = self.store.now();
        let last = self.live_checked.load(Ordering::Relaxed);
        if now - last < EVERY_S {
            return Ok(Vec::new());
        }
        self.live_checked.store(now, Ordering::Relaxed);
        let store = self.store.clone();
        let found = crate::control::blocking(move || {
            let mut out = Vec::new();
            for t in store.tenants()? {
                let Some(policy) = t.settings.auto_rollback.clone() else { continue };
                let Some(champ) = store.aliases(&t.id)?.into_iter().find(|a| a.name == CHAMPION)
                else {
                    continue;
                };
                let since = champ.updated_at;
                if now - since > policy.window_s {
                    continue;
                }
                let Some(previous) = store.previous_champion(&t.id)? else { continue };
                let new = store.live_signals(&t.id, &champ.version_id, since, now + 1)?;
                let old = store.live_signals(&t.id, &previous, since - policy.window_s, since)?;
                if let Some(why) = verdict(&policy, &champ.version_id, &previous, new, old) {
                    out.push((t, why));
                }
            }
            Ok(out)
        })
        .await?;
        let mut moved = Vec::new();
        for (t, why) in found {
            tracing::warn!(tenant = %t.name, "{why}");
            moved.push(self.rollback(&t, ACTOR, &why, false).await?);
        }
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(served: u64, bad: u64) -> LiveSignals {
        LiveSignals { served, bad }
    }

    #[test]
    fn the_z_test_needs_evidence_and_enough_answers() {
        let p = AutoRollback { window_s: 3600, min_served: 20, z: 2.33 };
        // 12/40 bad against 3/40: z ≈ 2.58, back it goes.
        let why = verdict(&p, "v2", "v1", s(40, 12), s(40, 3)).unwrap();
        assert!(why.contains("12/40") && why.contains("3/40") && why.contains("z = 2.58"), "{why}");
        // 8/40 against 3/40: z ≈ 1.62, not significant.
        assert!(verdict(&p, "v2", "v1", s(40, 8), s(40, 3)).is_none());
        // Better than before: never.
        assert!(verdict(&p, "v2", "v1", s(40, 1), s(40, 12)).is_none());
        // Too few answers on either side.
        assert!(verdict(&p, "v2", "v1", s(19, 19), s(40, 0)).is_none());
        assert!(verdict(&p, "v2", "v1", s(40, 40), s(10, 0)).is_none());
        // All bad on both sides: no evidence.
        assert_eq!(z_score(s(30, 30), s(30, 30)), None);
        assert_eq!(z_score(s(30, 0), s(30, 0)), None);
        let z = z_score(s(6, 6), s(6, 0)).unwrap();
        assert!((z - 3.464).abs() < 1e-3, "{z}");
    }
}
