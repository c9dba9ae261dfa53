//! The two operations every counter needs, and the clock the self-metrics
//! read. A leaf: every stats struct uses it, it uses nothing.

use std::sync::atomic::{AtomicU64, Ordering};

/// Shorthand for a relaxed increment.
#[inline]
pub fn incr(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Shorthand for a relaxed read.
#[inline]
pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Unix time in whole seconds, rounded as the reference rounds it.
pub fn unix_now() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_millis() as f64 / 1000.0).round() as u64
}
