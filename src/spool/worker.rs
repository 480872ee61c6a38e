//! The spool's writer thread: the one owner of the client's files in `spool_dir`.
//!
//! It runs a short loop: answer the replay task and close, write what was handed over,
//! make it durable when the sync interval is due, and every [`SCAN_EVERY`] look at the
//! directory (its size for `spool_max_bytes`, segments past `spool_max_age`, writers that
//! died and left segments behind). All blocking file I/O happens here, never on a caller's
//! thread or a runtime thread.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dir::{self, ParentOnly, WriterLock};
use super::format::{self, Item};
use super::replay::{self, Chunk};
use super::{Command, Handoff, Settings, Shared};
use crate::guard::Guard;
use crate::log::Level;
use crate::message::{now_ms, Message};

/// A segment is closed (and can be replayed) once it holds this much.
pub(crate) const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
/// At most this much is written per loop, so commands are never kept waiting long.
const WRITE_CHUNK: usize = 1024 * 1024;
const SCAN_EVERY: Duration = Duration::from_secs(2);
/// How long the thread sleeps with nothing to do (a hand-off burst wakes it sooner).
const IDLE_TICK: Duration = Duration::from_millis(50);

struct Active {
    file: ParentOnly,
    path: PathBuf,
    bytes: u64,
    dirty: bool,
}

/// Whose segment is being read back.
#[derive(Clone, PartialEq, Eq)]
enum Owner {
    Me,
    Adopted(String),
}

struct Reading {
    path: PathBuf,
    owner: Owner,
    data: Vec<u8>,
    pos: usize,
    /// Expired and corrupt records before this were counted already (a chunk handed back
    /// unfinished is read again, and must not count them twice).
    counted_to: usize,
}

/// The chunk handed to the replay task and not yet acknowledged.
struct Outstanding {
    id: u64,
    start: usize,
    end: usize,
    records: u64,
}

/// The segments of a writer that died, taken over with its lock.
struct Adopted {
    writer: String,
    _lock: WriterLock,
    segments: VecDeque<PathBuf>,
}

pub struct Worker {
    s: Settings,
    shared: Arc<Shared>,
    id: String,
    token_hash: u64,
    lock: Option<WriterLock>,
    current: Option<Active>,
    next_seq: u64,
    sealed: VecDeque<PathBuf>,
    adopted: Vec<Adopted>,
    /// Writers whose segments belong to another project token: left alone.
    ignored: HashSet<String>,
    reading: Option<Reading>,
    outstanding: Option<Outstanding>,
    chunk_ids: u64,
    dir_bytes: u64,
    records: u64,
    last_scan: Option<Instant>,
    last_sync: Instant,
    /// The problem being reported, so a failing disk is logged once per episode.
    trouble: Option<String>,
    buf: Vec<u8>,
}

/// Why a record could not be written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unwritten {
    Full,
    Error,
}

impl Worker {
    pub(super) fn new(s: Settings, shared: Arc<Shared>) -> Self {
        Self {
            token_hash: format::token_hash(&s.token),
            s,
            shared,
            id: dir::new_writer_id(),
            lock: None,
            current: None,
            next_seq: 1,
            sealed: VecDeque::new(),
            adopted: Vec::new(),
            ignored: HashSet::new(),
            reading: None,
            outstanding: None,
            chunk_ids: 0,
            dir_bytes: 0,
            records: 0,
            last_scan: None,
            last_sync: Instant::now(),
            trouble: None,
            buf: Vec::new(),
        }
    }

    pub(super) fn run(mut self) {
        loop {
            let wrote = self.write_handoff(None);
            let commands: Vec<Command> = self.shared.commands.lock().drain(..).collect();
            for command in commands {
                match command {
                    Command::Replay {
                        events,
                        bytes,
                        answer,
                    } => {
                        let chunk = self.next_chunk(events, bytes);
                        if let Err(Some(chunk)) = answer.send(chunk) {
                            // The task is gone (closing): the events stay on disk.
                            self.ack(chunk.id, false);
                        }
                    }
                    Command::Ack { id, done } => {
                        // What a failed replay spilled back reaches the disk before the
                        // segment it came from forgets it (up to the hand-off's cap).
                        for _ in 0..16 {
                            if !self.write_handoff(None) {
                                break;
                            }
                        }
                        self.ack(id, done)
                    }
                    Command::Stop { deadline } => return self.finish(deadline),
                }
            }
            self.sync_if_due();
            if self.last_scan.map_or(true, |t| t.elapsed() >= SCAN_EVERY) {
                self.scan();
            }
            self.publish();
            if !wrote && self.shared.commands.lock().is_empty() {
                std::thread::park_timeout(IDLE_TICK);
            }
        }
    }

    fn note(&self, level: Level, message: String) {
        self.shared.acc.note(level, format!("spool: {message}"));
    }

    /// Reports a problem once per episode (and its end).
    fn trouble(&mut self, problem: Option<String>) {
        if self.trouble == problem {
            return;
        }
        match &problem {
            Some(text) => self.note(Level::Warn, text.clone()),
            None => self.note(Level::Info, "writing again".into()),
        }
        self.trouble = problem;
    }

    /// The directory and this writer's lock, made when first needed (and retried).
    fn ready(&mut self) -> io::Result<()> {
        if self.lock.is_some() {
            return Ok(());
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.s.dir)?;
        match dir::try_lock(&dir::lock_path(&self.s.dir, &self.id))? {
            Some(lock) => {
                self.lock = Some(lock);
                Ok(())
            }
            None => Err(io::Error::other("this writer's lock is held elsewhere")),
        }
    }

    /// Makes sure a segment is open for appending (a new one once the current is full).
    fn open_segment(&mut self) -> io::Result<()> {
        if self
            .current
            .as_ref()
            .is_some_and(|a| a.bytes >= SEGMENT_BYTES)
        {
            self.seal();
        }
        if self.current.is_none() {
            self.ready()?;
            let path = dir::segment_path(&self.s.dir, &self.id, self.next_seq);
            self.next_seq += 1;
            let mut file = OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(&format::header(self.token_hash, now_ms()))?;
            self.dir_bytes += format::HEADER_LEN as u64;
            self.current = Some(Active {
                file: ParentOnly::new(file),
                path,
                bytes: format::HEADER_LEN as u64,
                dirty: true,
            });
        }
        Ok(())
    }

    fn write_segment(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.open_segment()?;
        match self.current.as_mut() {
            Some(active) => {
                active.file.file.write_all(bytes)?;
                active.bytes += bytes.len() as u64;
                active.dirty = true;
                Ok(())
            }
            None => Err(io::Error::other("no segment open")),
        }
    }

    /// Closes the segment being written: durable, and ready to be replayed.
    fn seal(&mut self) {
        if let Some(active) = self.current.take() {
            let _ = active.file.file.sync_data();
            self.sealed.push_back(active.path);
        }
    }

    fn sync_if_due(&mut self) {
        let interval = self.s.sync_interval;
        if let Some(active) = self.current.as_mut() {
            if active.dirty && self.last_sync.elapsed() >= interval {
                let _ = active.file.file.sync_data();
                active.dirty = false;
                self.last_sync = Instant::now();
            }
        }
    }

    /// Writes what the hand-off holds (at most [`WRITE_CHUNK`] per call, or everything
    /// until `until`). True if it wrote or counted anything.
    ///
    /// Events are counted (`spooled`, or failed) before they leave `spool_pending` or the
    /// guard, so that whenever nothing is pending every event is already counted.
    fn write_handoff(&mut self, until: Option<Instant>) -> bool {
        let mut any = false;
        loop {
            let mut overflow: Vec<Message> = Vec::new();
            let mut spilled: Vec<Message> = Vec::new();
            let mut size = 0usize;
            while size < WRITE_CHUNK {
                let Some(item) = self.shared.handoff.pop() else {
                    break;
                };
                match item {
                    Handoff::Overflow(message) => {
                        size += message.len();
                        overflow.push(message);
                    }
                    Handoff::Spill(messages) => {
                        size += messages.iter().map(Message::len).sum::<usize>();
                        spilled.extend(messages);
                    }
                }
            }
            if overflow.is_empty() && spilled.is_empty() {
                return any;
            }
            any = true;
            let acc = self.shared.acc.clone();
            if !overflow.is_empty() {
                let outcome = self.append(&overflow);
                self.count(outcome);
                let charged: u64 = overflow.iter().map(|m| Guard::charge(m.len())).sum();
                acc.counters
                    .spool_pending
                    .fetch_sub(overflow.len() as u64, Relaxed);
                self.shared.overflow_bytes.fetch_sub(charged, Relaxed);
            }
            // Spilled events a close already gave up on were counted failed: not written.
            if !spilled.is_empty() && !acc.guard.is_abandoned() {
                let outcome = self.append(&spilled);
                let bytes: u64 = spilled.iter().map(|m| m.len() as u64).sum();
                self.count(outcome);
                if !acc.release_for_spool(spilled.len() as u64, bytes) {
                    // Given up on while being written: counted failed by the close too.
                    let c = &acc.counters;
                    c.spooled.fetch_sub(outcome.0, Relaxed);
                    if let Some((why, n)) = outcome.1 {
                        c.failed.fetch_sub(n, Relaxed);
                        self.count_unwritten(why, n, false);
                    }
                }
            }
            // Without a deadline, one chunk per loop; with one, everything until then.
            if until.map_or(true, |t| Instant::now() >= t) {
                return true;
            }
        }
    }

    fn count(&self, (written, unwritten): (u64, Option<(Unwritten, u64)>)) {
        let c = &self.shared.acc.counters;
        c.spooled.fetch_add(written, Relaxed);
        if let Some((why, n)) = unwritten {
            c.failed.fetch_add(n, Relaxed);
            self.count_unwritten(why, n, true);
        }
    }

    fn count_unwritten(&self, why: Unwritten, n: u64, add: bool) {
        let c = &self.shared.acc.counters;
        let counter = match why {
            Unwritten::Full => &c.dropped_spool_full,
            Unwritten::Error => &c.dropped_spool_error,
        };
        if add {
            counter.fetch_add(n, Relaxed);
        } else {
            counter.fetch_sub(n, Relaxed);
        }
    }

    /// Appends records for `messages`; returns how many were written and how many not
    /// (and why).
    fn append(&mut self, messages: &[Message]) -> (u64, Option<(Unwritten, u64)>) {
        let created = now_ms();
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut fit = 0usize;
        for message in messages {
            let len = format::record_len(message.len()) as u64;
            if self.dir_bytes + buf.len() as u64 + len > self.s.max_bytes {
                break;
            }
            format::encode(&mut buf, message.endpoint, created, &message.json);
            fit += 1;
        }
        let total = messages.len() as u64;
        let mut result = (fit as u64, None);
        if fit < messages.len() {
            result.1 = Some((Unwritten::Full, total - fit as u64));
            self.trouble(Some(format!(
                "spool_max_bytes ({}) reached: events that cannot be spooled are counted \
                 failed (dropped_spool_full)",
                self.s.max_bytes
            )));
        }
        if fit > 0 {
            match self.write_segment(&buf) {
                Ok(()) => {
                    self.dir_bytes += buf.len() as u64;
                    self.records += fit as u64;
                    if result.1.is_none() {
                        self.trouble(None);
                    }
                    if self.s.sync_interval.is_zero() {
                        self.sync_if_due();
                    }
                }
                Err(e) => {
                    let why = match e.raw_os_error() {
                        Some(libc::ENOSPC) | Some(libc::EDQUOT) => Unwritten::Full,
                        _ => Unwritten::Error,
                    };
                    let counter = match why {
                        Unwritten::Full => "dropped_spool_full",
                        Unwritten::Error => "dropped_spool_error",
                    };
                    self.trouble(Some(format!(
                        "cannot write to {}: {e}; events that cannot be spooled are counted \
                         failed ({counter})",
                        self.s.dir.display()
                    )));
                    // A segment a write failed on may end in a partial record: close it
                    // (readers skip a torn tail) and start a new one next time.
                    self.seal();
                    result = (0, Some((why, total)));
                }
            }
        }
        self.buf = buf;
        result
    }

    /// Looks at the directory: its size, expired segments, and writers that died.
    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        if let Err(e) = self.ready() {
            self.trouble(Some(format!(
                "cannot use spool_dir {}: {e}; events that cannot be spooled are counted \
                 failed (dropped_spool_error)",
                self.s.dir.display()
            )));
            return;
        }
        let Ok(found) = dir::scan(&self.s.dir) else {
            return;
        };
        self.dir_bytes = found.bytes();
        for path in &found.stale {
            let _ = fs::remove_file(path);
        }
        self.expire_old_segments();
        for writer in found.writers() {
            if writer == self.id
                || self.ignored.contains(&writer)
                || self.adopted.iter().any(|a| a.writer == writer)
            {
                continue;
            }
            let path = dir::lock_path(&self.s.dir, &writer);
            let Ok(Some(lock)) = dir::try_lock(&path) else {
                continue; // alive (or not ours to take)
            };
            if !lock.still_named(&path) {
                continue; // another process just finished with it
            }
            let mut segments: Vec<_> = found
                .segments
                .iter()
                .filter(|s| s.writer == writer)
                .collect();
            segments.sort_by_key(|s| s.seq);
            if segments.is_empty() {
                // A writer that ended with nothing on disk.
                let _ = fs::remove_file(&path);
                continue;
            }
            self.note(
                Level::Info,
                format!(
                    "taking over {} segments left by writer {writer} (a process that ended)",
                    segments.len()
                ),
            );
            self.adopted.push(Adopted {
                writer,
                _lock: lock,
                segments: segments.iter().map(|s| s.path.clone()).collect(),
            });
        }
    }

    /// Removes sealed and adopted segments older than `spool_max_age`, counting their
    /// records as expired.
    fn expire_old_segments(&mut self) {
        let horizon = now_ms() - self.s.max_age.as_millis() as i64;
        let reading = self.reading.as_ref().map(|r| r.path.clone());
        let mut old: Vec<PathBuf> = Vec::new();
        let is_old = |p: &PathBuf| {
            fs::metadata(p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .is_some_and(|d| (d.as_millis() as i64) < horizon)
                && Some(p) != reading.as_ref()
        };
        self.sealed.retain(|p| {
            let expired = is_old(p);
            if expired {
                old.push(p.clone());
            }
            !expired
        });
        for group in &mut self.adopted {
            group.segments.retain(|p| {
                let expired = is_old(p);
                if expired {
                    old.push(p.clone());
                }
                !expired
            });
        }
        for path in old {
            let Ok(data) = fs::read(&path) else { continue };
            let records = format::Reader::new(&data, format::HEADER_LEN.min(data.len()))
                .filter(|i| matches!(i, Item::Record(_)))
                .count() as u64;
            self.shared
                .acc
                .counters
                .spool_expired
                .fetch_add(records, Relaxed);
            self.records = self.records.saturating_sub(records);
            self.remove_segment(&path, data.len() as u64);
            self.note(
                Level::Warn,
                format!("{records} events older than spool_max_age expired (spool_expired)"),
            );
        }
        self.release_empty_adoptions();
    }

    fn remove_segment(&mut self, path: &PathBuf, bytes: u64) {
        let _ = fs::remove_file(path);
        self.dir_bytes = self.dir_bytes.saturating_sub(bytes);
    }

    fn release_empty_adoptions(&mut self) {
        let reading = self.reading.as_ref().map(|r| r.owner.clone());
        let dir = self.s.dir.clone();
        self.adopted.retain(|a| {
            let busy = !a.segments.is_empty() || reading == Some(Owner::Adopted(a.writer.clone()));
            if !busy {
                let _ = fs::remove_file(dir::lock_path(&dir, &a.writer));
            }
            busy
        });
    }

    /// Loads the oldest segment this writer may read: a dead writer's first, then its own
    /// sealed ones, then (if nothing else waits to be written) the one being written.
    fn open_next(&mut self) -> bool {
        loop {
            let next = if let Some(group) = self.adopted.iter_mut().find(|g| !g.segments.is_empty())
            {
                group
                    .segments
                    .pop_front()
                    .map(|p| (p, Owner::Adopted(group.writer.clone())))
            } else if let Some(p) = self.sealed.pop_front() {
                Some((p, Owner::Me))
            } else if self
                .current
                .as_ref()
                .is_some_and(|a| a.bytes > format::HEADER_LEN as u64)
                && self.shared.handoff.is_empty()
            {
                self.seal();
                continue;
            } else {
                None
            };
            let Some((path, owner)) = next else {
                return false;
            };
            let Ok(data) = fs::read(&path) else {
                continue; // removed under us: nothing to read
            };
            let start = match format::parse_header(&data) {
                Some(h) if h.token_hash == self.token_hash => h.replayed_to,
                Some(_) => {
                    if let Owner::Adopted(writer) = &owner {
                        self.note(
                            Level::Warn,
                            format!(
                                "segments of writer {writer} belong to another project token: \
                                 left for a client with that token"
                            ),
                        );
                        self.ignored.insert(writer.clone());
                        self.adopted.retain(|g| &g.writer != writer);
                    }
                    continue;
                }
                None => {
                    // Not even a header: a segment cut off at creation, or not ours.
                    self.shared
                        .acc
                        .counters
                        .spool_corrupt
                        .fetch_add(u64::from(!data.is_empty()), Relaxed);
                    self.remove_segment(&path, data.len() as u64);
                    continue;
                }
            };
            if let Owner::Adopted(_) = owner {
                let records = format::Reader::new(&data, start)
                    .filter(|i| matches!(i, Item::Record(_)))
                    .count() as u64;
                self.records += records;
            }
            self.reading = Some(Reading {
                path,
                owner,
                data,
                pos: start,
                counted_to: start,
            });
            return true;
        }
    }

    /// The next events to replay, at most `events` of at most `bytes` in all.
    fn next_chunk(&mut self, events: usize, bytes: usize) -> Option<Chunk> {
        if self.outstanding.is_some() {
            return None;
        }
        let now = now_ms();
        let horizon = now - self.s.max_age.as_millis() as i64;
        loop {
            if self.reading.is_none() && !self.open_next() {
                return None;
            }
            let reading = self.reading.as_mut()?;
            let start = reading.pos;
            let mut reader = format::Reader::new(&reading.data, start);
            let mut messages = Vec::new();
            let (mut size, mut expired, mut corrupt) = (0usize, 0u64, 0u64);
            let counted_to = reading.counted_to;
            while messages.len() < events.max(1) && size < bytes.max(1) {
                let at = reader.position();
                let fresh = u64::from(at >= counted_to);
                match reader.next() {
                    None => break,
                    Some(Item::Record(r)) if r.created_ms < horizon => expired += fresh,
                    Some(Item::Record(r)) => {
                        size += r.payload.len();
                        messages.push(Message {
                            endpoint: replay::endpoint_for(r.endpoint, r.created_ms, now),
                            credentials: None,
                            json: r.payload.to_vec(),
                        });
                    }
                    Some(Item::Corrupt | Item::Torn) => corrupt += fresh,
                }
            }
            let end = reader.position();
            reading.counted_to = reading.counted_to.max(end);
            let at_end = end >= reading.data.len();
            let path = reading.path.clone();
            reading.pos = end;
            let c = &self.shared.acc.counters;
            c.spool_expired.fetch_add(expired, Relaxed);
            c.spool_corrupt.fetch_add(corrupt, Relaxed);
            self.records = self.records.saturating_sub(expired);
            if corrupt > 0 {
                self.note(
                    Level::Warn,
                    format!(
                        "{corrupt} corrupt or torn records skipped in {} (spool_corrupt)",
                        path.display()
                    ),
                );
            }
            if expired > 0 {
                self.note(
                    Level::Warn,
                    format!("{expired} events older than spool_max_age expired (spool_expired)"),
                );
            }
            if messages.is_empty() {
                // Nothing deliverable in the rest of this segment.
                if at_end {
                    self.finish_reading();
                }
                continue;
            }
            self.chunk_ids += 1;
            self.outstanding = Some(Outstanding {
                id: self.chunk_ids,
                start,
                end,
                records: messages.len() as u64,
            });
            return Some(Chunk {
                id: self.chunk_ids,
                messages,
            });
        }
    }

    /// The replay task is done with a chunk: if its events were all resolved, they leave
    /// the disk (the segment once all of it is done); if not, they are read again later.
    fn ack(&mut self, id: u64, done: bool) {
        let Some(out) = self.outstanding.take_if(|o| o.id == id) else {
            return;
        };
        let Some(reading) = self.reading.as_mut() else {
            return;
        };
        if !done {
            reading.pos = out.start;
            return;
        }
        debug_assert_eq!(reading.pos, out.end);
        self.records = self.records.saturating_sub(out.records);
        if out.end >= reading.data.len() {
            self.finish_reading();
        } else {
            // Remembered in the segment itself: a later reader (this process after a
            // restart, or one that takes over) starts after these records. Without it, the
            // records would be replayed again, and those that failed and were spooled anew
            // would then be sent twice.
            let path = reading.path.clone();
            let written = OpenOptions::new().write(true).open(&path).and_then(|f| {
                f.write_all_at(&(out.end as u64).to_le_bytes(), format::CURSOR_OFFSET)
            });
            if let Err(e) = written {
                self.note(
                    Level::Warn,
                    format!(
                        "could not record replay progress in {}: {e}; its replayed records \
                         may be sent again (with the same $insert_id)",
                        path.display()
                    ),
                );
            }
        }
    }

    fn finish_reading(&mut self) {
        if let Some(reading) = self.reading.take() {
            self.remove_segment(&reading.path, reading.data.len() as u64);
            self.release_empty_adoptions();
        }
    }

    /// Writes what was handed over until `deadline`, makes it durable and lets go of the
    /// directory. What could not be written in time is counted failed (`dropped_shutdown`).
    fn finish(mut self, deadline: Instant) {
        self.write_handoff(Some(deadline));
        self.seal();
        let acc = self.shared.acc.clone();
        let c = &acc.counters;
        while let Some(item) = self.shared.handoff.pop() {
            let (count, bytes, charged) = match &item {
                Handoff::Overflow(m) => (1, m.len() as u64, false),
                Handoff::Spill(ms) => (
                    ms.len() as u64,
                    ms.iter().map(|m| m.len() as u64).sum(),
                    true,
                ),
            };
            if charged && !acc.release_for_spool(count, bytes) {
                continue;
            }
            if !charged {
                c.spool_pending.fetch_sub(1, Relaxed);
                self.shared
                    .overflow_bytes
                    .fetch_sub(Guard::charge(bytes as usize), Relaxed);
            }
            c.failed.fetch_add(count, Relaxed);
            c.dropped_shutdown.fetch_add(count, Relaxed);
            self.shared.lost_at_stop.fetch_add(count, Relaxed);
        }
        // A writer that leaves nothing behind removes its lock file too.
        let own_left = self.sealed.iter().any(|p| p.exists())
            || self
                .reading
                .as_ref()
                .is_some_and(|r| r.owner == Owner::Me && r.path.exists());
        if !own_left && self.lock.is_some() {
            let _ = fs::remove_file(dir::lock_path(&self.s.dir, &self.id));
        }
        self.lock = None;
        self.adopted.clear();
        self.publish();
        self.shared.stopped.open();
    }

    /// Gauges for the stats: what this writer knows is on disk.
    pub(super) fn publish(&self) {
        let c = &self.shared.acc.counters;
        c.spool_bytes.store(self.dir_bytes, Relaxed);
        c.spool_records.store(self.records, Relaxed);
    }
}
