//! Circuit breaker: after `threshold` consecutive failed requests, stop sending for a
//! cooldown, then let exactly one probe through. A success closes it again.
//!
//! The cooldown starts at `circuit_cooldown_ms`, doubles with each failed probe up to
//! `circuit_cooldown_max_ms`, and resets on success, so a short outage costs about as long
//! as the outage. [`Breaker`] is the pure state machine (every method takes `now`);
//! [`CircuitBreaker`] shares it between tasks and wakes waiters when it changes state,
//! so nobody polls: waiters for a probe's result sleep until it arrives.

use std::time::{Duration, Instant};

use tokio::sync::watch;

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
    /// Open: ask again at this instant.
    WaitUntil(Instant),
    /// Half-open with a probe in flight: ask again when the breaker changes state.
    WaitForProbe,
}

/// The state machine, without clocks or locks.
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    cooldown_base: Duration,
    cooldown_max: Duration,
    cooldown: Duration,
    state: CircuitState,
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probe_in_flight: bool,
    /// Times it closed after being open; waiters compare it to see the service is back.
    closes: u64,
}

impl Breaker {
    /// `threshold == 0` disables the breaker.
    pub fn new(threshold: u32, cooldown: Duration, cooldown_max: Duration) -> Self {
        Self {
            threshold,
            cooldown_base: cooldown,
            cooldown_max: cooldown_max.max(cooldown),
            cooldown,
            state: CircuitState::Closed,
            consecutive_failures: 0,
            open_until: None,
            probe_in_flight: false,
            closes: 0,
        }
    }

    pub fn state(&self) -> CircuitState {
        self.state
    }

    pub fn closes(&self) -> u64 {
        self.closes
    }

    /// The cooldown the next opening will use.
    #[cfg(test)]
    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }

    pub fn permit(&mut self, now: Instant) -> Permit {
        match self.state {
            CircuitState::Closed => Permit::Go,
            CircuitState::Open => match self.open_until {
                Some(until) if now < until => Permit::WaitUntil(until),
                _ => {
                    self.state = CircuitState::HalfOpen;
                    self.probe_in_flight = true;
                    Permit::Go
                }
            },
            CircuitState::HalfOpen if !self.probe_in_flight => {
                self.probe_in_flight = true;
                Permit::Go
            }
            CircuitState::HalfOpen => Permit::WaitForProbe,
        }
    }

    /// The service answered (even with a rejection): it is up. True if this closed it.
    pub fn on_success(&mut self) -> bool {
        let reopened = self.state != CircuitState::Closed;
        self.state = CircuitState::Closed;
        self.consecutive_failures = 0;
        self.probe_in_flight = false;
        self.cooldown = self.cooldown_base;
        if reopened {
            self.closes += 1;
        }
        reopened
    }

    /// A request failed in a way worth retrying (network, timeout, 429, 5xx).
    /// Returns true when this failure opened the circuit.
    pub fn on_failure(&mut self, now: Instant) -> bool {
        if self.threshold == 0 {
            return false;
        }
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let open = match self.state {
            CircuitState::HalfOpen => true,
            CircuitState::Closed => self.consecutive_failures >= self.threshold,
            CircuitState::Open => false,
        };
        if open {
            if self.state == CircuitState::HalfOpen {
                // A failed probe: the outage goes on, wait longer next time.
                self.cooldown = self.cooldown.saturating_mul(2).min(self.cooldown_max);
            }
            self.state = CircuitState::Open;
            self.open_until = now.checked_add(self.cooldown);
            self.probe_in_flight = false;
        }
        open
    }
}

/// A [`Breaker`] shared by the consumers of one client. Its `watch` channel doubles as the
/// lock and as the wake-up: receivers are notified whenever the state changes.
#[derive(Debug)]
pub struct CircuitBreaker {
    inner: watch::Sender<Breaker>,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown: Duration, cooldown_max: Duration) -> Self {
        Self {
            inner: watch::Sender::new(Breaker::new(threshold, cooldown, cooldown_max)),
        }
    }

    pub fn state(&self) -> CircuitState {
        self.inner.borrow().state()
    }

    pub fn closes(&self) -> u64 {
        self.inner.borrow().closes()
    }

    /// Subscribe before asking for a permit, so no change in between is missed.
    pub fn subscribe(&self) -> watch::Receiver<Breaker> {
        self.inner.subscribe()
    }

    pub fn permit(&self, now: Instant) -> Permit {
        let mut permit = Permit::Go;
        self.inner.send_if_modified(|b| {
            let before = b.state();
            permit = b.permit(now);
            b.state() != before
        });
        permit
    }

    pub fn on_success(&self) {
        self.inner.send_if_modified(Breaker::on_success);
    }

    pub fn on_failure(&self, now: Instant) -> bool {
        let mut opened = false;
        self.inner.send_if_modified(|b| {
            opened = b.on_failure(now);
            opened
        });
        opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn opens_after_threshold_and_probes_once() {
        let t = Instant::now();
        let mut b = Breaker::new(2, Duration::ZERO, 30 * S);
        assert_eq!(b.permit(t), Permit::Go);
        assert!(!b.on_failure(t));
        assert!(b.on_failure(t));
        assert_eq!(b.state(), CircuitState::Open);
        // Cooldown of zero: the next permit is the probe; a second caller waits for its
        // result (no polling).
        assert_eq!(b.permit(t), Permit::Go);
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert_eq!(b.permit(t), Permit::WaitForProbe);
        assert!(b.on_success());
        assert_eq!((b.state(), b.closes()), (CircuitState::Closed, 1));
    }

    #[test]
    fn cooldown_doubles_per_failed_probe_up_to_the_cap_and_resets() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, S, 5 * S);
        assert!(b.on_failure(t0));
        assert_eq!(b.permit(t0), Permit::WaitUntil(t0 + S));
        let mut t = t0;
        for want in [2, 4, 5, 5] {
            t += b.cooldown();
            assert_eq!(b.permit(t), Permit::Go, "the probe");
            assert!(b.on_failure(t));
            assert_eq!(b.cooldown(), want * S);
            assert_eq!(b.permit(t), Permit::WaitUntil(t + want * S));
        }
        t += b.cooldown();
        assert_eq!(b.permit(t), Permit::Go);
        b.on_success();
        assert!(b.on_failure(t));
        assert_eq!(b.permit(t), Permit::WaitUntil(t + S), "reset on success");
    }

    /// Issue #7 item 6: with the defaults, 5 s of connection refused must not stall
    /// delivery for much longer than the outage.
    #[test]
    fn a_short_outage_with_the_defaults_costs_about_the_outage() {
        let config = crate::config::Config::new("t");
        let mut b = Breaker::new(
            config.circuit_failure_threshold,
            config.circuit_cooldown,
            config.circuit_cooldown_max,
        );
        let t0 = Instant::now();
        let back = t0 + 5 * S;
        // Requests fail while down; a consumer asks whenever the breaker lets it.
        let mut now = t0;
        let recovered = loop {
            match b.permit(now) {
                Permit::Go if now >= back => {
                    b.on_success();
                    break now;
                }
                Permit::Go => {
                    b.on_failure(now);
                }
                Permit::WaitUntil(at) => now = at,
                Permit::WaitForProbe => unreachable!("one caller"),
            }
        };
        assert_eq!(b.state(), CircuitState::Closed);
        let stalled = recovered - back;
        assert!(stalled <= 4 * S, "stalled {stalled:?} after a 5 s outage");
    }

    #[test]
    fn failed_probe_reopens() {
        let t = Instant::now();
        let mut b = Breaker::new(1, 3600 * S, 3600 * S);
        b.on_failure(t);
        assert!(matches!(b.permit(t), Permit::WaitUntil(_)));
        let mut b = Breaker::new(1, Duration::ZERO, S);
        b.on_failure(t);
        assert_eq!(b.permit(t), Permit::Go);
        assert!(b.on_failure(t));
        assert_eq!(b.state(), CircuitState::Open);
    }

    #[test]
    fn zero_threshold_disables() {
        let t = Instant::now();
        let mut b = Breaker::new(0, S, S);
        for _ in 0..10 {
            b.on_failure(t);
        }
        assert_eq!(b.permit(t), Permit::Go);
    }

    #[test]
    fn waiters_are_woken_when_it_closes() {
        let t = Instant::now();
        let shared = CircuitBreaker::new(1, Duration::ZERO, S);
        shared.on_failure(t);
        assert_eq!(shared.permit(t), Permit::Go);
        let rx = shared.subscribe();
        assert_eq!(shared.permit(t), Permit::WaitForProbe);
        assert!(!rx.has_changed().unwrap());
        shared.on_success();
        assert!(rx.has_changed().unwrap());
        assert_eq!(shared.closes(), 1);
    }
}
