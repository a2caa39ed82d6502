//! Engine time: milliseconds since the Unix epoch, derived from tokio's clock so that a paused
//! test clock (`#[tokio::test(start_paused = true)]`) makes every timer virtual.

use std::time::{SystemTime, UNIX_EPOCH};

/// A clock anchored at the wall time when it was created and advanced by tokio's clock
/// ([`Clock::new`], the default), or the wall clock itself ([`Clock::system`]).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_ms: u64,
    base_instant: tokio::time::Instant,
    system: bool,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Self {
        let base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            base_ms,
            base_instant: tokio::time::Instant::now(),
            system: false,
        }
    }

    /// The wall clock, read at every call: engine times agree with the system's even when
    /// it is stepped or slewed while the process runs (they can then go back a little), so
    /// that they compare with times other processes take. It does not follow a paused tokio
    /// clock: use [`Clock::new`] in tests on virtual time.
    pub fn system() -> Self {
        Clock {
            system: true,
            ..Clock::new()
        }
    }

    /// Current engine time in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        if self.system {
            return SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
        }
        self.base_ms + self.base_instant.elapsed().as_millis() as u64
    }

    /// The tokio instant at which engine time reaches `at_ms`.
    pub fn instant_at(&self, at_ms: u64) -> tokio::time::Instant {
        let now = self.now_ms();
        let wait = std::time::Duration::from_millis(at_ms.saturating_sub(now));
        let now = tokio::time::Instant::now();
        // A deadline beyond what an `Instant` can hold is as good as never (about 30 years
        // is what tokio itself uses for "far future").
        now.checked_add(wait)
            .unwrap_or_else(|| now + std::time::Duration::from_secs(86_400 * 365 * 30))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Formats engine time as `HH:MM:SS.mmm` (UTC), enough to read a log or a deadline.
pub fn format_ms(ms: u64) -> String {
    let secs = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03} UTC",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        ms % 1000
    )
}

/// Formats a duration in milliseconds the way it is written on the command line (`30s`,
/// `30m`, `1h30m`, `250ms`), its units from days down to milliseconds, zero ones left out.
pub fn format_duration_ms(ms: u64) -> String {
    if ms == 0 {
        return "0ms".to_string();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        let n = rest / size;
        rest %= size;
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

/// Formats engine time with its date, `YYYY-MM-DD HH:MM:SS.mmm UTC`, for times that may be
/// days away (a purge's cutoff, say).
pub fn format_date_ms(ms: u64) -> String {
    let days = ms / 86_400_000;
    // Days since 1970-01-01 to a civil date (proleptic Gregorian), in 400-year eras.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {}", format_ms(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_the_command_line_writes_them() {
        assert_eq!(format_duration_ms(30_000), "30s");
        assert_eq!(format_duration_ms(1_800_000), "30m");
        assert_eq!(format_duration_ms(5_400_000), "1h30m");
        assert_eq!(format_duration_ms(250), "250ms");
        assert_eq!(format_duration_ms(1_500), "1s500ms");
        assert_eq!(format_duration_ms(86_400_000 + 1), "1d1ms");
        assert_eq!(format_duration_ms(0), "0ms");
    }

    #[test]
    fn dates_are_civil_dates_in_utc() {
        assert_eq!(format_date_ms(0), "1970-01-01 00:00:00.000 UTC");
        // 2000-02-29 (a leap day of a century leap year) 12:34:56.789.
        assert_eq!(
            format_date_ms(951_827_696_789),
            "2000-02-29 12:34:56.789 UTC"
        );
        // 2026-12-02 14:31:26.456.
        assert_eq!(
            format_date_ms(1_796_221_886_456),
            "2026-12-02 14:31:26.456 UTC"
        );
        assert_eq!(
            format_date_ms(4_102_444_799_999),
            "2099-12-31 23:59:59.999 UTC"
        );
    }
}
