//! The one clock every signer reads, with an offset learned from the upstream's `Date` header
//! when a vendor rejects a request for a skewed timestamp.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time plus a learned correction. Cheap to clone (shared offset).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
    fixed: Option<SystemTime>,
}

impl Clock {
    /// The system clock, no correction yet.
    pub fn system() -> Self {
        Clock::default()
    }

    /// A clock frozen at `at` (tests and signature vectors); corrections still apply.
    pub fn fixed(at: SystemTime) -> Self {
        Clock {
            offset_ms: Arc::default(),
            fixed: Some(at),
        }
    }

    /// Corrected current time.
    pub fn now(&self) -> SystemTime {
        let base = self.fixed.unwrap_or_else(SystemTime::now);
        let off = self.offset_ms.load(Ordering::Relaxed);
        if off >= 0 {
            base + Duration::from_millis(off as u64)
        } else {
            base - Duration::from_millis(off.unsigned_abs())
        }
    }

    /// Corrected current time as Unix seconds.
    pub fn unix_secs(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// Corrected current time as Unix milliseconds.
    pub fn unix_millis(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    /// The current correction in milliseconds (server minus local).
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Learns the offset from a server's `Date`: afterwards `now()` reads the server's time.
    /// Returns the new offset in milliseconds.
    pub fn sync_to(&self, server_now: SystemTime) -> i64 {
        let local = self.fixed.unwrap_or_else(SystemTime::now);
        let off = match server_now.duration_since(local) {
            Ok(ahead) => ahead.as_millis() as i64,
            Err(behind) => -(behind.duration().as_millis() as i64),
        };
        self.offset_ms.store(off, Ordering::Relaxed);
        off
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_moves_now_to_the_server_time() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let c = Clock::fixed(t0);
        assert_eq!(c.unix_secs(), 1_700_000_000);
        assert_eq!(c.sync_to(t0 + Duration::from_secs(600)), 600_000);
        assert_eq!(c.unix_secs(), 1_700_000_600);
        c.sync_to(t0 - Duration::from_secs(30));
        assert_eq!(c.unix_secs(), 1_699_999_970);
        let shared = c.clone();
        assert_eq!(shared.offset_ms(), -30_000);
    }
}
