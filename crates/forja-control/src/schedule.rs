//! Cron schedules (5 fields, or 6 with seconds), evaluated in UTC.

use crate::{ControlError, Result};
use chrono::{DateTime, Utc};
use croner::Cron;

/// Parses `expr`; the error names the field.
pub fn parse(expr: &str) -> Result<Cron> {
    Cron::new(expr).with_seconds_optional().parse().map_err(|e| {
        ControlError::invalid("cron", format!("`{expr}` is not a cron expression: {e}"))
    })
}

/// The first fire strictly after `after` (unix seconds).
pub fn next_after(expr: &str, after: i64) -> Result<Option<i64>> {
    let cron = parse(expr)?;
    let Some(from) = DateTime::<Utc>::from_timestamp(after, 0) else { return Ok(None) };
    Ok(cron.find_next_occurrence(&from, false).ok().map(|t| t.timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        // 2026-11-22 10:17:00 UTC
        let t = 1_795_342_620;
        for (expr, want) in [
            ("0 * * * *", t + 43 * 60),             // next full hour
            ("*/5 * * * *", t + 3 * 60),            // next multiple of 5 minutes
            ("30 * * * * *", t + 30),               // with seconds
            ("0 3 * * *", t + (16 * 60 + 43) * 60), // 03:00 next day
        ] {
            assert_eq!(next_after(expr, t).unwrap(), Some(want), "{expr}");
        }
        let e = next_after("61 * * * *", t).unwrap_err().to_string();
        assert!(e.contains("61 * * * *") && e.contains("cron"), "{e}");
    }
}
