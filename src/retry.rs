//! Backoff: capped exponential with full jitter, and `Retry-After` as a clamped floor.

use std::time::Duration;

/// The wait before retry number `attempt` (0 = first retry).
pub fn backoff(
    attempt: u32,
    initial: Duration,
    max: Duration,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = initial.saturating_mul(1u32 << attempt.min(20));
    let cap = exp.min(max);
    let jittered = Duration::from_nanos(fastrand::u64(
        0..=cap.as_nanos().min(u64::MAX as u128) as u64,
    ));
    match retry_after {
        // A server's hint is a floor, but never beyond our own ceiling.
        Some(hint) => jittered.max(hint.min(max)),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_cap() {
        let (i, m) = (Duration::from_millis(100), Duration::from_millis(1000));
        for attempt in 0..40 {
            let d = backoff(attempt, i, m, None);
            assert!(d <= m);
            assert!(d <= i * 2u32.pow(attempt.min(20)));
        }
    }

    #[test]
    fn retry_after_is_a_clamped_floor() {
        let (i, m) = (Duration::from_millis(1), Duration::from_millis(500));
        assert!(backoff(0, i, m, Some(Duration::from_millis(300))) >= Duration::from_millis(300));
        assert_eq!(backoff(0, i, m, Some(Duration::from_secs(3600))), m);
    }
}
