//! Minimal leveled logging to stderr. Quiet by default; callers must never pass secrets.

use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

    fn name(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

/// Writes one line to stderr when `level` is enabled by `max`.
pub fn log(max: Level, level: Level, args: std::fmt::Arguments<'_>) {
    if level == Level::Off || level > max {
        return;
    }
    // One write call per line so lines from several threads do not interleave.
    let line = format!("bulkhead {}: {}\n", level.name(), args);
    let _ = std::io::stderr().write_all(line.as_bytes());
}
