//! Leveled log lines, and where they go.
//!
//! A line goes to the process-wide callback when one is set ([`set_callback`], the C
//! `bulkhead_set_log_callback`) and its level is enabled by the callback's level; with no
//! callback it goes to stderr when the client's `log_level` (default `warn`) enables it.
//! So a C host sees warnings on stderr without doing anything. Lines never hold secrets:
//! callers redact first.
//!
//! The callback is called on whatever thread logs: usually a library (runtime) thread,
//! sometimes a host thread inside a bulkhead call (close, shutdown). Replacing it is
//! lock-free: the old registration is leaked (it is a few words, set rarely) so a thread
//! still calling it never reads freed memory.

use std::ffi::{c_char, c_void};
use std::io::Write;
use std::sync::atomic::{AtomicPtr, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

impl Level {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_lowercase().as_str() {
            "off" | "none" | "quiet" => Level::Off,
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            _ => return None,
        })
    }

    /// The level for its C number (`bulkhead_log_level`), if it is one.
    pub fn from_u32(n: u32) -> Option<Self> {
        Some(match n {
            0 => Level::Off,
            1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            4 => Level::Debug,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// The C callback: `fn(level, msg, len, user_data)`; `msg` is UTF-8, NUL-terminated, and
/// borrowed for the call only.
type Callback =
    unsafe extern "C" fn(level: u32, msg: *const c_char, len: usize, user_data: *mut c_void);

struct Sink {
    level: Level,
    callback: Callback,
    user_data: *mut c_void,
}

static SINK: AtomicPtr<Sink> = AtomicPtr::new(std::ptr::null_mut());

/// Sets (or with `None`, removes) the process-wide callback. `user_data` is handed back
/// untouched; the caller promises the callback may be called with it from any thread.
pub fn set_callback(level: Level, callback: Option<Callback>, user_data: *mut c_void) {
    let fresh = match callback {
        Some(callback) => Box::into_raw(Box::new(Sink {
            level,
            callback,
            user_data,
        })),
        None => std::ptr::null_mut(),
    };
    // The old sink is leaked on purpose: another thread may be calling it right now.
    SINK.swap(fresh, Ordering::AcqRel);
}

/// Emits one line at `level`: to the callback if one is set (filtered by its level), else
/// to stderr when `max` (the client's `log_level`) enables it.
pub fn log(max: Level, level: Level, args: std::fmt::Arguments<'_>) {
    if level == Level::Off {
        return;
    }
    // SAFETY: a non-null SINK points at a leaked Box that is never freed.
    if let Some(sink) = unsafe { SINK.load(Ordering::Acquire).as_ref() } {
        if level > sink.level {
            return;
        }
        let mut text = args.to_string();
        let len = text.len();
        text.push('\0');
        // SAFETY: the host registered this function for exactly this call shape; `text` is
        // valid, NUL-terminated and outlives the call; `user_data` is the host's own.
        unsafe {
            (sink.callback)(
                level as u32,
                text.as_ptr().cast::<c_char>(),
                len,
                sink.user_data,
            )
        };
        return;
    }
    if level > max {
        return;
    }
    // One write call per line so lines from several threads do not interleave.
    let line = format!("bulkhead {}: {}\n", level.name(), args);
    let _ = std::io::stderr().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip() {
        for n in 0..5 {
            let level = Level::from_u32(n).unwrap();
            assert_eq!(level as u32, n);
            assert_eq!(Level::parse(level.name()), Some(level));
        }
        assert_eq!(Level::from_u32(5), None);
    }
}
