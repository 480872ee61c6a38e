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

/// Takes the lock at `path` without waiting (creating the file if needed). `Ok(None)` when
/// another open file holds it.
pub fn try_lock(path: &Path) -> io::Result<Option<WriterLock>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
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
        if let Some(writer) = name.strip_suffix(".lock") {
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
}
