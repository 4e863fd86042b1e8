//! The upload target: at most so many bytes sent to peers a day, as Bitcoin Core's
//! `-maxuploadtarget` (off by default, as there).
//!
//! ```text
//!   every message sent ──▶ bytes this cycle (a cycle: 24 h from the first message or
//!                          look at the target, then from the end of the one before)
//!   getdata or getblocktxn for a stored block ──▶ historical (its time more than a week
//!                           before the tip's) and the cycle's bytes at the target?
//!                           ──▶ the session ends: "upload target reached" (no ban)
//! ```
//!
//! Recent blocks, transactions, headers and everything else go on being sent past the
//! target, without limit (as in Bitcoin Core): a node that was away for less than a week
//! catches up, and the network keeps relaying. What the target stops is the largest cost
//! a stranger can repeat at will: asking for the whole chain again and again
//! (`docs/SECURITY.md`, item 81). Bytes are counted as messages are queued for a peer
//! (the `hello` and close frames are not counted).

use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use powchain_node::UploadStatus;
use tokio::time::Instant;
use tracing::info;

/// How long a cycle of the target lasts.
pub const UPLOAD_CYCLE: Duration = Duration::from_secs(24 * 60 * 60);
/// A block whose time is more than this before the tip's is historical: not served to
/// peers once the day's target is reached.
pub const HISTORICAL_BLOCK_AGE_MS: u64 = 7 * 24 * 60 * 60 * 1_000;

/// Why a session that asked for a historical block past the target ends (no ban: Bitcoin
/// Core disconnects such a peer too).
/// (Under 64 characters: a powchain peer shows that much of a reason.)
pub(crate) const UPLOAD_TARGET_REACHED: &str = "upload target reached: old blocks not served today";

/// Bytes sent in the current cycle, against the target.
pub(crate) struct UploadTarget {
    target: Option<u64>,
    sent: AtomicU64,
    /// When the current cycle began (none before the first message).
    cycle_start: Mutex<Option<Instant>>,
}

impl UploadTarget {
    /// A target of `target` bytes a cycle; `None` counts nothing and never stops a block.
    pub(crate) fn new(target: Option<u64>) -> UploadTarget {
        UploadTarget {
            target,
            sent: AtomicU64::new(0),
            cycle_start: Mutex::new(None),
        }
    }

    /// `bytes` were queued for a peer at `now`. Logs when they reach the target.
    pub(crate) fn sent(&self, bytes: usize, now: Instant) {
        let Some(target) = self.target else {
            return;
        };
        self.roll(now);
        let before = self.sent.fetch_add(bytes as u64, Ordering::Relaxed);
        if before < target && before.saturating_add(bytes as u64) >= target {
            info!(
                target_bytes = target,
                "the upload target is reached: blocks more than a week older than the tip are \
                 not served to peers until the day's cycle ends"
            );
        }
    }

    /// Starts the first cycle, or a new one once the current one is over (its bytes are
    /// forgotten); returns when the current cycle began.
    fn roll(&self, now: Instant) -> Instant {
        let mut start = self
            .cycle_start
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *start {
            Some(began) if now.saturating_duration_since(began) < UPLOAD_CYCLE => began,
            Some(began) => {
                // Cycles follow each other from the first, as Bitcoin Core's do.
                let cycles =
                    now.saturating_duration_since(began).as_secs() / UPLOAD_CYCLE.as_secs();
                let began = began + UPLOAD_CYCLE * u32::try_from(cycles).unwrap_or(u32::MAX);
                *start = Some(began);
                self.sent.store(0, Ordering::Relaxed);
                began
            }
            None => {
                *start = Some(now);
                now
            }
        }
    }

    /// Where the target stands at `now`; none without a target.
    pub(crate) fn status(&self, now: Instant) -> Option<UploadStatus> {
        let target = self.target?;
        let began = self.roll(now);
        let sent = self.sent.load(Ordering::Relaxed);
        Some(UploadStatus {
            target_bytes: target,
            sent_bytes: sent,
            cycle_left_ms: UPLOAD_CYCLE
                .saturating_sub(now.saturating_duration_since(began))
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX),
            reached: sent >= target,
        })
    }

    /// True if a block of time `block_time_ms` may be sent at `now` while the tip's time is
    /// `tip_time_ms`: it is recent (within a week of the tip, as Bitcoin Core measures
    /// from its best header: a network left unmined for a while still serves its last
    /// blocks), or the cycle's bytes are below the target.
    pub(crate) fn serves_block(&self, block_time_ms: u64, tip_time_ms: u64, now: Instant) -> bool {
        let historical = block_time_ms.saturating_add(HISTORICAL_BLOCK_AGE_MS) < tip_time_ms;
        !historical || self.status(now).is_none_or(|status| !status.reached)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: u64 = 24 * 60 * 60 * 1_000;
    const NOW_MS: u64 = 100 * DAY_MS;

    #[test]
    fn without_a_target_every_block_is_served_and_nothing_is_counted() {
        let upload = UploadTarget::new(None);
        let now = Instant::now();
        upload.sent(usize::MAX, now);
        assert!(upload.serves_block(0, NOW_MS, now));
        assert_eq!(upload.status(now), None);
    }

    #[test]
    fn past_the_target_only_historical_blocks_are_refused_until_the_next_cycle() {
        let upload = UploadTarget::new(Some(1_000));
        let start = Instant::now();
        let old = NOW_MS - 8 * DAY_MS;
        let recent = NOW_MS - 6 * DAY_MS;
        upload.sent(999, start);
        assert!(upload.serves_block(old, NOW_MS, start), "below the target");
        upload.sent(1, start + Duration::from_secs(60));
        let later = start + Duration::from_secs(3_600);
        assert!(!upload.serves_block(old, NOW_MS, later), "at the target");
        assert!(upload.serves_block(recent, NOW_MS, later), "a recent block");
        let status = upload.status(later).expect("a target");
        assert_eq!(status.sent_bytes, 1_000);
        assert!(status.reached);
        assert_eq!(status.cycle_left_ms, 23 * 3_600_000);

        // The next cycle starts a day after the first, whenever it is looked at.
        let next = start + UPLOAD_CYCLE + Duration::from_secs(10);
        assert!(upload.serves_block(old, NOW_MS, next), "a new cycle");
        let status = upload.status(next).expect("a target");
        assert_eq!(status.sent_bytes, 0);
        assert_eq!(status.cycle_left_ms, 86_400_000 - 10_000);
        let much_later = start + UPLOAD_CYCLE * 5 + Duration::from_secs(20);
        upload.sent(5, much_later);
        let status = upload.status(much_later).expect("a target");
        assert_eq!(status.sent_bytes, 5);
        assert_eq!(status.cycle_left_ms, 86_400_000 - 20_000);
    }
}
