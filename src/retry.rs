//! Retry policy as pure functions of an injected `now` (Mixpanel's guidance; see the README's Delivery rules).
//!
//! 429, 5xx and network errors wait `backoff_initial · 2^n`, capped at `backoff_max`, plus
//! up to a quarter of that again as jitter: never less than the backoff, so the first retry
//! after a 429 never comes at once. A `Retry-After` (seconds, fractional seconds or an HTTP
//! date) is a floor clamped to `backoff_max`. The retry budget is a hard deadline: no
//! attempt starts past it, and an attempt's timeout never reaches beyond it.

use std::time::{Duration, Instant, SystemTime};

/// The retry settings of a client.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_retries: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    RetryAt(Instant),
    GiveUp(GiveUp),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    OutOfRetries,
    OutOfBudget,
}

/// The wait before retry number `retry` (0 = first): the capped exponential backoff plus
/// `jitter` (in `[0, 1]`) times a quarter of it.
pub fn backoff(policy: &Policy, retry: u32, jitter: f64) -> Duration {
    let base = policy
        .backoff_initial
        .saturating_mul(1u32 << retry.min(20))
        .min(policy.backoff_max);
    base + base.mul_f64(jitter.clamp(0.0, 1.0) / 4.0)
}

/// The step after failed attempt number `retry` (0 = the first attempt failed), at `now`.
pub fn next_step(
    policy: &Policy,
    retry: u32,
    now: Instant,
    budget_end: Instant,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Step {
    if retry >= policy.max_retries {
        return Step::GiveUp(GiveUp::OutOfRetries);
    }
    let mut delay = backoff(policy, retry, jitter);
    if let Some(hint) = retry_after {
        // A server's hint is a floor, but never beyond our own ceiling.
        delay = delay.max(hint.min(policy.backoff_max));
    }
    match now.checked_add(delay) {
        Some(at) if at < budget_end => Step::RetryAt(at),
        _ => Step::GiveUp(GiveUp::OutOfBudget),
    }
}

/// The timeout of an attempt starting at `now`: `request_timeout`, cut to what is left of
/// the budget; `None` when the budget is spent (do not start it).
pub fn attempt_timeout(
    request_timeout: Duration,
    now: Instant,
    budget_end: Instant,
) -> Option<Duration> {
    let left = budget_end.saturating_duration_since(now);
    (!left.is_zero()).then(|| request_timeout.min(left))
}

/// A `Retry-After` value as a delay from `now`: delay-seconds (integer or fractional) or an
/// HTTP date (RFC 9110). Negative, NaN, infinite or unparsable values are ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        // Too large for a Duration: as long as can be (clamped by the policy anyway).
        return Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn mixpanel() -> Policy {
        Policy {
            max_retries: 5,
            backoff_initial: 2 * S,
            backoff_max: 60 * S,
        }
    }

    #[test]
    fn backoff_starts_near_initial_and_doubles_to_the_cap() {
        let p = mixpanel();
        // (retry, jitter, expected)
        let table = [
            (0, 0.0, 2000),
            (0, 1.0, 2500),
            (1, 0.0, 4000),
            (2, 0.5, 8000 + 1000),
            (5, 0.0, 60_000),
            (30, 1.0, 75_000),
        ];
        for (retry, jitter, ms) in table {
            assert_eq!(
                backoff(&p, retry, jitter),
                Duration::from_millis(ms),
                "retry {retry} jitter {jitter}"
            );
        }
        // Never sooner than the backoff, whatever the jitter draws.
        for _ in 0..1000 {
            assert!(backoff(&p, 0, fastrand::f64()) >= 2 * S);
        }
    }

    #[test]
    fn next_step_table() {
        let p = mixpanel();
        let now = Instant::now();
        let far = now + 3600 * S;
        // (retry, budget_end, retry_after, expected)
        let table = [
            (0, far, None, Step::RetryAt(now + 2 * S)),
            // A bare 429 / Retry-After: 0 still waits the backoff.
            (0, far, Some(Duration::ZERO), Step::RetryAt(now + 2 * S)),
            (0, far, Some(7 * S), Step::RetryAt(now + 7 * S)),
            (
                0,
                far,
                Some(Duration::from_millis(1500)),
                Step::RetryAt(now + 2 * S),
            ),
            // Clamped to backoff_max.
            (0, far, Some(3600 * S), Step::RetryAt(now + 60 * S)),
            (3, far, None, Step::RetryAt(now + 16 * S)),
            (5, far, None, Step::GiveUp(GiveUp::OutOfRetries)),
            (0, now + 2 * S, None, Step::GiveUp(GiveUp::OutOfBudget)),
            (
                0,
                now + 10 * S,
                Some(30 * S),
                Step::GiveUp(GiveUp::OutOfBudget),
            ),
        ];
        for (retry, budget_end, retry_after, want) in table {
            assert_eq!(
                next_step(&p, retry, now, budget_end, retry_after, 0.0),
                want,
                "retry {retry} retry_after {retry_after:?}"
            );
        }
    }

    #[test]
    fn attempts_never_reach_past_the_budget() {
        let now = Instant::now();
        assert_eq!(attempt_timeout(10 * S, now, now + 60 * S), Some(10 * S));
        assert_eq!(attempt_timeout(10 * S, now, now + 3 * S), Some(3 * S));
        assert_eq!(attempt_timeout(10 * S, now, now), None);
        assert_eq!(attempt_timeout(10 * S, now + S, now), None);
    }

    #[test]
    fn retry_after_in_every_form() {
        let now = SystemTime::now();
        let table: [(&str, Option<Duration>); 11] = [
            (" 7 ", Some(7 * S)),
            ("0", Some(Duration::ZERO)),
            ("1.5", Some(Duration::from_millis(1500))),
            ("-1", None),
            ("-0.5", None),
            ("NaN", None),
            ("inf", None),
            ("soon", None),
            ("", None),
            ("1e400", None),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(Duration::ZERO)),
        ];
        for (value, want) in table {
            assert_eq!(parse_retry_after(value, now), want, "{value:?}");
        }
        let later = now + 120 * S;
        let delay = parse_retry_after(&httpdate::fmt_http_date(later), now).unwrap();
        assert!(delay > 119 * S && delay <= 120 * S, "{delay:?}");
        assert_eq!(parse_retry_after("1e30", now), Some(Duration::MAX));
    }
}
