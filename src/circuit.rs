//! Circuit breaker: after `threshold` consecutive failed requests, stop sending for a
//! cooldown, then let exactly one probe through. A success closes it again.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Exposed in stats as a number: 0 closed, 1 open, 2 half-open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(u32)]
pub enum CircuitState {
    #[default]
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl CircuitState {
    pub fn name(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }
}

/// What a request should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Go,
    WaitUntil(Instant),
}

#[derive(Debug)]
struct Inner {
    state: CircuitState,
    consecutive_failures: u32,
    open_until: Instant,
    probe_in_flight: bool,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    // Held only for a few instructions, by background tasks only (never the hot path).
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// `threshold == 0` disables the breaker.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold,
            cooldown,
            inner: Mutex::new(Inner {
                state: CircuitState::Closed,
                consecutive_failures: 0,
                open_until: Instant::now(),
                probe_in_flight: false,
            }),
        }
    }

    pub fn state(&self) -> CircuitState {
        self.inner.lock().state
    }

    pub fn permit(&self) -> Permit {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        match inner.state {
            CircuitState::Closed => Permit::Go,
            CircuitState::Open if now >= inner.open_until => {
                inner.state = CircuitState::HalfOpen;
                inner.probe_in_flight = true;
                Permit::Go
            }
            CircuitState::Open => Permit::WaitUntil(inner.open_until),
            CircuitState::HalfOpen if !inner.probe_in_flight => {
                inner.probe_in_flight = true;
                Permit::Go
            }
            // Someone is probing: check back shortly.
            CircuitState::HalfOpen => {
                Permit::WaitUntil(now + self.cooldown.min(Duration::from_millis(100)))
            }
        }
    }

    /// The service answered (even with a rejection): it is up.
    pub fn on_success(&self) {
        let mut inner = self.inner.lock();
        inner.state = CircuitState::Closed;
        inner.consecutive_failures = 0;
        inner.probe_in_flight = false;
    }

    /// A request failed in a way worth retrying (network, timeout, 429, 5xx).
    /// Returns true when this failure opened the circuit.
    pub fn on_failure(&self) -> bool {
        if self.threshold == 0 {
            return false;
        }
        let mut inner = self.inner.lock();
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        let open = match inner.state {
            CircuitState::HalfOpen => true,
            CircuitState::Closed => inner.consecutive_failures >= self.threshold,
            CircuitState::Open => false,
        };
        if open {
            inner.state = CircuitState::Open;
            inner.open_until = Instant::now() + self.cooldown;
            inner.probe_in_flight = false;
        }
        open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_once() {
        let b = CircuitBreaker::new(2, Duration::ZERO);
        assert_eq!(b.permit(), Permit::Go);
        assert!(!b.on_failure());
        assert!(b.on_failure());
        assert_eq!(b.state(), CircuitState::Open);
        // Cooldown of zero: the next permit is the probe; a second caller must wait.
        assert_eq!(b.permit(), Permit::Go);
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert!(matches!(b.permit(), Permit::WaitUntil(_)));
        b.on_success();
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn failed_probe_reopens() {
        let b = CircuitBreaker::new(1, Duration::from_secs(3600));
        b.on_failure();
        assert!(matches!(b.permit(), Permit::WaitUntil(_)));
        let b = CircuitBreaker::new(1, Duration::ZERO);
        b.on_failure();
        assert_eq!(b.permit(), Permit::Go);
        assert!(b.on_failure());
        assert_eq!(b.state(), CircuitState::Open);
    }

    #[test]
    fn zero_threshold_disables() {
        let b = CircuitBreaker::new(0, Duration::from_secs(1));
        for _ in 0..10 {
            b.on_failure();
        }
        assert_eq!(b.permit(), Permit::Go);
    }
}
