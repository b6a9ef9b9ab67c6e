//! License allow-list by SPDX id. Expressions are understood: `A OR B` is kept
//! when either is allowed, `A AND B` when both are, `A WITH exception` as `A`.
//! Records without a license are kept or dropped by configuration.

use serde::{Deserialize, Serialize};

/// License filter settings (`[license]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LicenseConfig {
    /// Allowed SPDX ids (case-insensitive). Empty: every license is allowed.
    pub allow: Vec<String>,
    /// Keep records that name no license.
    pub keep_unlicensed: bool,
}

impl Default for LicenseConfig {
    fn default() -> Self {
        LicenseConfig { allow: Vec::new(), keep_unlicensed: true }
    }
}

impl LicenseConfig {
    /// `None` when the record is kept, else why it is dropped.
    pub fn check(&self, license: Option<&str>) -> Option<String> {
        let Some(license) = license.map(str::trim).filter(|l| !l.is_empty()) else {
            return (!self.keep_unlicensed)
                .then(|| "no license (license.keep_unlicensed = false)".to_string());
        };
        if self.allow.is_empty() || self.allowed(license) {
            None
        } else {
            Some(format!("license `{license}` is not in license.allow"))
        }
    }

    fn allowed(&self, expr: &str) -> bool {
        let expr = expr.replace(['(', ')'], " ");
        // OR binds looser than AND in SPDX expressions.
        split_op(&expr, "or").iter().any(|alt| {
            split_op(alt, "and").iter().all(|id| {
                let id = id.split_whitespace().next().unwrap_or("");
                let id = id.split(" with ").next().unwrap_or(id);
                self.allow.iter().any(|a| a.eq_ignore_ascii_case(id))
            })
        })
    }
}

fn split_op(expr: &str, op: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut words = expr.split_whitespace().peekable();
    while let Some(w) = words.next() {
        if w.eq_ignore_ascii_case(op) {
            parts.push(String::new());
        } else if w.eq_ignore_ascii_case("with") {
            words.next();
        } else {
            let last = parts.last_mut().expect("never empty");
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(w);
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(allow: &[&str], keep_unlicensed: bool, license: Option<&str>, kept: bool) {
        let cfg =
            LicenseConfig { allow: allow.iter().map(|s| s.to_string()).collect(), keep_unlicensed };
        assert_eq!(cfg.check(license).is_none(), kept, "{allow:?} {license:?}");
    }

    #[test]
    fn spdx_expressions() {
        let ok = ["MIT", "Apache-2.0"];
        check(&ok, true, Some("mit"), true);
        check(&ok, true, Some("GPL-3.0"), false);
        check(&ok, true, Some("GPL-3.0 OR MIT"), true);
        check(&ok, true, Some("MIT AND GPL-3.0"), false);
        check(&ok, true, Some("(MIT AND Apache-2.0) OR GPL-3.0"), true);
        check(&ok, true, Some("Apache-2.0 WITH LLVM-exception"), true);
        check(&ok, true, None, true);
        check(&ok, false, None, false);
        check(&ok, false, Some("  "), false);
        check(&[], true, Some("anything"), true);
    }
}
