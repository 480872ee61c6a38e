//! The library's locks: `std::sync`'s, without poisoning (a panic is caught at the FFI
//! boundary and must not make a client unusable).
//!
//! Not `parking_lot`: its contended locks park threads in one process-wide hash table, and
//! a parent thread that held one of that table's bucket locks at `fork()` leaves it locked
//! forever in the child, where any lock hashing to that bucket then hangs — even a lock made
//! after the fork. `std`'s futex locks keep all their state inside the lock, so a lock the
//! child makes is always free.

use std::sync::PoisonError;
use std::time::Instant;

pub use std::sync::MutexGuard;

#[derive(Default, Debug)]
pub struct Mutex<T>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    pub const fn new(value: T) -> Self {
        Self(std::sync::Mutex::new(value))
    }

    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default, Debug)]
pub struct Condvar(std::sync::Condvar);

impl Condvar {
    pub fn notify_all(&self) {
        self.0.notify_all();
    }

    /// Waits until notified or `deadline`; the guard comes back either way (spurious
    /// wake-ups included: callers re-check their condition).
    pub fn wait_until<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Instant,
    ) -> (MutexGuard<'a, T>, bool) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (guard, true);
        }
        let (guard, result) = self
            .0
            .wait_timeout(guard, left)
            .unwrap_or_else(PoisonError::into_inner);
        (guard, result.timed_out())
    }
}
