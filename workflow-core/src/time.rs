//! Engine time: milliseconds since the Unix epoch, derived from tokio's clock so that a paused
//! test clock (`#[tokio::test(start_paused = true)]`) makes every timer virtual.

use std::time::{SystemTime, UNIX_EPOCH};

/// A clock anchored at the wall time when it was created and advanced by tokio's clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_ms: u64,
    base_instant: tokio::time::Instant,
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
        }
    }

    /// Current engine time in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
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
