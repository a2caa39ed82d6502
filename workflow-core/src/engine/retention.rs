//! Retention: a worker built with [`EngineBuilder::retention`](super::EngineBuilder::retention)
//! purges the workflows that have been closed longer than the retention period, with their
//! history, so that the store stops growing with every workflow ever run.
//!
//! The purge runs at build and then every quarter of the period (at least every second, at
//! most every ten minutes), in batches of [`Purge::BATCH`] so that no transaction holds the
//! store for long. Time is the engine's clock, the one that stamped the closes. Several
//! workers on one store may purge at once: a workflow is deleted once, by whichever gets to
//! it first. A SQLite file keeps its size but reuses the freed pages (`VACUUM` shrinks it);
//! PostgreSQL's autovacuum reclaims the rows.

use super::EngineInner;
use crate::store::Purge;
use std::sync::Arc;
use std::time::Duration;

/// How often a worker with retention `period` purges.
fn purge_every(period: Duration) -> Duration {
    (period / 4).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

impl EngineInner {
    /// Starts purging the workflows closed longer than `period` ago.
    pub(crate) fn start_retention(self: &Arc<Self>, period: Duration) {
        let inner = self.clone();
        let _ = self.spawn(async move {
            loop {
                inner.purge_closed_before(period).await;
                tokio::time::sleep(purge_every(period)).await;
            }
        });
    }

    /// Purges, a batch at a time, the workflows that closed more than `period` ago.
    async fn purge_closed_before(&self, period: Duration) {
        let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        let cutoff = self.clock.now_ms().saturating_sub(period_ms);
        let mut purged = 0usize;
        loop {
            match self.store.purge_closed(&Purge::closed_before(cutoff)).await {
                Ok(ids) => {
                    purged += ids.len();
                    if ids.len() < Purge::BATCH || self.shutdown.is_cancelled() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!("purging closed workflows failed; retrying later: {e}");
                    break;
                }
            }
        }
        if purged > 0 {
            tracing::info!(
                workflows = purged,
                closed_before = %crate::time::format_date_ms(cutoff),
                "purged closed workflows past their retention"
            );
        }
    }
}
