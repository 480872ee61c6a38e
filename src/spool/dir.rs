//! The spool directory: file names, writer locks and what a scan finds.
//!
//! Each writer (one client in one process) has an id, a lock file `<id>.lock` that it holds
//! with `flock` for as long as it lives, and segments `<id>-<seq>.seg`. A writer's segments
//! are read only by itself or by the one process that takes its lock after it died
//! (adoption), so two live processes never deliver the same segment.
//!
//! `flock` locks belong to the open file: a second `open` in the same process conflicts (so
//! two clients of one process cannot adopt each other), and a forked child shares its
//! parent's. The child closes its copies right after `fork` ([`close_inherited_locks`]), so
//! that a parent that dies is seen dead even while its children live.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

/// Lock files and segments open in this process, so a forked child can close its inherited
/// copies.
const MAX_HELD: usize = 256;
static HELD: [AtomicI32; MAX_HELD] = [const { AtomicI32::new(-1) }; MAX_HELD];

/// A file a forked child must not keep open: a writer's lock (the child would keep the
/// lock, and so the writer, alive) or the segment being written (the child would keep its
/// disk space after it is removed). Forgotten by the fork registry when dropped.
pub struct ParentOnly {
    pub file: File,
    slot: Option<usize>,
}

impl ParentOnly {
    pub fn new(file: File) -> Self {
        let fd = file.as_raw_fd();
        let slot = HELD.iter().position(|s| {
            s.compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        });
        Self { file, slot }
    }
}

impl Drop for ParentOnly {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            HELD[slot].store(-1, Ordering::Release);
        }
    }
}

/// A held writer lock; released on drop (closing the file releases the flock).
pub struct WriterLock {
    file: ParentOnly,
}

/// In a forked child: closes the lock files and segments the parent held open, so the child
/// does not keep the parent's writers alive. Only atomics and `close`, as a fork handler may.
pub fn close_inherited_locks() {
    for slot in &HELD {
        let fd = slot.swap(-1, Ordering::AcqRel);
        if fd >= 0 {
            // SAFETY: `fd` was a lock file's or segment's descriptor in the parent; the
            // child's copy of the owning `File` is never dropped (the parent's client state is leaked in a
            // child), so nothing else closes it.
            unsafe { libc::close(fd) };
        }
    }
}

/// Takes the lock at `path` without waiting; `Ok(None)` when another open file holds it.
///
/// A missing lock file is made already locked: under a temporary name, then linked into
/// place (which fails if one appeared meanwhile). So no process ever finds a writer's lock
/// file unlocked while that writer lives — were it created first and locked after, another
/// writer's scan could take it in between and adopt a live writer's segments.
pub fn try_lock(path: &Path) -> io::Result<Option<WriterLock>> {
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => lock_file(file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_locked(path),
        Err(e) => Err(e),
    }
}

/// The suffix of a lock file being made (see [`try_lock`]).
pub const NEW_LOCK: &str = ".lock.new-";

fn create_locked(path: &Path) -> io::Result<Option<WriterLock>> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(
        ".new-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    let temp = PathBuf::from(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    let lock = lock_file(file);
    let linked = match &lock {
        Ok(_) => fs::hard_link(&temp, path),
        Err(_) => Ok(()),
    };
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => lock,
        // Someone made it first: theirs is the lock file.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            drop(lock);
            match OpenOptions::new().read(true).write(true).open(path) {
                Ok(file) => lock_file(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
thread_local! {
    /// Tests widen, on one thread, the window between opening a lock file and locking it.
    static PAUSE_BEFORE_LOCK_US: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn lock_file(file: File) -> io::Result<Option<WriterLock>> {
    #[cfg(test)]
    std::thread::sleep(std::time::Duration::from_micros(
        PAUSE_BEFORE_LOCK_US.with(|p| p.get()),
    ));
    // SAFETY: flock on a descriptor this function owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => Ok(None),
            _ => Err(err),
        };
    }
    Ok(Some(WriterLock {
        file: ParentOnly::new(file),
    }))
}

impl WriterLock {
    /// Whether the lock file still exists under its name (another process may have
    /// finished an adoption and removed it).
    pub fn still_named(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.file.metadata(), fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        }
    }
}

pub fn lock_path(dir: &Path, writer: &str) -> PathBuf {
    dir.join(format!("{writer}.lock"))
}

pub fn segment_path(dir: &Path, writer: &str, seq: u64) -> PathBuf {
    dir.join(format!("{writer}-{seq:010}.seg"))
}

/// A new writer id: unique per process and client (pid, time and randomness).
pub fn new_writer_id() -> String {
    format!(
        "w{}-{:012x}{:08x}",
        std::process::id(),
        crate::message::now_ms() as u64 & 0xffff_ffff_ffff,
        fastrand::u32(..)
    )
}

/// A segment file found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    pub writer: String,
    pub seq: u64,
    pub path: PathBuf,
    pub bytes: u64,
    pub modified_ms: i64,
}

/// What is in the directory: every segment (oldest first per writer) and every lock file.
#[derive(Debug, Default)]
pub struct Scan {
    pub segments: Vec<SegmentFile>,
    pub locks: Vec<String>,
    /// Lock files a process began to make and never linked into place (it died in
    /// between), a minute old or more: safe to remove.
    pub stale: Vec<PathBuf>,
}

impl Scan {
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Writers that have segments or a lock file, in name order.
    pub fn writers(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .segments
            .iter()
            .map(|s| s.writer.clone())
            .chain(self.locks.iter().cloned())
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

/// Splits `<writer>-<seq>.seg` into its parts.
pub fn parse_segment_name(name: &str) -> Option<(String, u64)> {
    let stem = name.strip_suffix(".seg")?;
    let (writer, seq) = stem.rsplit_once('-')?;
    if writer.is_empty() || seq.len() != 10 {
        return None;
    }
    Some((writer.to_owned(), seq.parse().ok()?))
}

pub fn scan(dir: &Path) -> io::Result<Scan> {
    let mut out = Scan::default();
    for entry in fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.contains(NEW_LOCK) {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() >= 60);
            if old {
                out.stale.push(entry.path());
            }
        } else if let Some(writer) = name.strip_suffix(".lock") {
            out.locks.push(writer.to_owned());
        } else if let Some((writer, seq)) = parse_segment_name(name) {
            let Ok(meta) = entry.metadata() else { continue };
            let modified_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            out.segments.push(SegmentFile {
                writer,
                seq,
                path: entry.path(),
                bytes: meta.len(),
                modified_ms,
            });
        }
    }
    out.segments
        .sort_by(|a, b| (a.modified_ms, &a.writer, a.seq).cmp(&(b.modified_ms, &b.writer, b.seq)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let dir = Path::new("/x");
        let p = segment_path(dir, "w12-abc", 7);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_segment_name(name), Some(("w12-abc".into(), 7)));
        assert_eq!(parse_segment_name("w12-abc-7.seg"), None);
        assert_eq!(parse_segment_name("other.txt"), None);
        assert!(new_writer_id().starts_with(&format!("w{}-", std::process::id())));
    }

    #[test]
    fn a_lock_conflicts_with_a_second_open_in_the_same_process() {
        let dir = std::env::temp_dir().join(format!("bulkhead-lock-{}", new_writer_id()));
        fs::create_dir_all(&dir).unwrap();
        let path = lock_path(&dir, "w1");
        let held = try_lock(&path).unwrap().expect("free");
        assert!(try_lock(&path).unwrap().is_none(), "held by the first open");
        assert!(held.still_named(&path));
        drop(held);
        assert!(try_lock(&path).unwrap().is_some(), "released on drop");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// While one thread makes new writers' locks, another takes every lock file it can, as
    /// a scan does: it must never get one whose writer is alive, so every writer gets its
    /// own lock.
    #[test]
    fn a_new_writer_lock_is_never_seen_unlocked() {
        let dir = std::env::temp_dir().join(format!("bulkhead-race-{}", new_writer_id()));
        fs::create_dir_all(&dir).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    let Ok(found) = scan(&dir) else { continue };
                    for writer in found.locks {
                        // Held only for a moment, like an adoption that finds nothing.
                        drop(try_lock(&lock_path(&dir, &writer)));
                    }
                }
            });
            // Here, a pause between opening and locking.
            PAUSE_BEFORE_LOCK_US.with(|p| p.set(300));
            let mut lost = None;
            let mut held = Vec::new();
            for i in 0..300 {
                let lock = try_lock(&lock_path(&dir, &format!("w{i}"))).unwrap();
                if lock.is_none() {
                    lost = Some(i);
                    break;
                }
                held.push(lock);
            }
            done.store(true, Ordering::Relaxed);
            assert_eq!(lost, None, "a writer lost its new lock to a scan");
        });
        fs::remove_dir_all(&dir).unwrap();
    }
}
