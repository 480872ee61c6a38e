//! The disk spool (`spool_dir`) over real HTTP against the mock and real files: outages
//! longer than the queue, `kill -9`, torn and corrupt segments, a full spool, expiry, an
//! unusable directory, and several processes on one directory.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bulkhead::{Client, Stats};
use bulkhead_mock::{DownMode, MockServer};

mod common;
use common::{assert_accounted, client_with};

const LONG: Duration = Duration::from_secs(60);

/// Quick timings, a small queue, a breaker that opens at the first failure (so nothing
/// churns between the spool and a dead service), and a spool in `dir`.
fn spooling(mock: &MockServer, dir: &Path, extra: &str) -> Client {
    let base = format!(
        r#"{{"token":"test-token","flush_interval_ms":20,"backoff_initial_ms":5,
        "backoff_max_ms":20,"max_retries":1,"request_timeout_ms":2000,
        "circuit_failure_threshold":1,"circuit_cooldown_ms":200,
        "circuit_cooldown_max_ms":400,"retry_budget_ms":300,"queue_capacity":200,
        "batch_size":50,"spool_sync_interval_ms":0,"spool_dir":{:?}}}"#,
        dir.to_str().unwrap()
    );
    client_with(mock, &base, extra)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "bulkhead-spool-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    out.sort();
    out
}

/// Everything is on disk or delivered: nothing pending in memory or the hand-off.
fn settled(s: &Stats) -> bool {
    s.queue_len == 0 && s.spool_pending == 0
}

fn track_n(c: &Client, name: &str, n: usize) {
    for i in 0..n {
        c.track(&format!("u{i}"), name, Some(r#"{"plan":"pro","n":1}"#))
            .unwrap_or_else(|e| panic!("event {i} refused: {e}"));
    }
}

#[test]
fn an_outage_longer_than_the_queue_loses_nothing() {
    let mock = MockServer::start();
    let dir = temp_dir("outage");
    let c = spooling(&mock, &dir, "{}");
    mock.control().set_down(DownMode::Refuse);
    // Twenty-five times what the queue holds.
    track_n(&c, "Outage", 5000);
    let s = c.stats();
    assert_eq!(s.dropped_queue_full, 0, "{s:?}");
    assert_eq!(s.enqueued, 5000, "{s:?}");
    wait("the outage's events to reach the disk", LONG, || {
        c.stats().spooled >= 4800
    });
    mock.control().set_down(DownMode::Up);
    wait("every event at the mock", LONG, || {
        mock.stats().events >= 5000
    });
    c.flush(LONG).unwrap();
    wait("replay to finish", LONG, || {
        let s = c.stats();
        s.spool_records == 0 && settled(&s)
    });
    let m = mock.stats();
    assert_eq!(m.events, 5000, "{m:?}");
    assert_eq!(m.duplicates, 0, "{m:?}");
    let s = c.stats();
    assert_eq!(s.dropped_queue_full + s.failed + s.rejected, 0, "{s:?}");
    assert_eq!(s.replayed, s.spooled, "{s:?}");
    assert_accounted(&s);
    c.close(LONG).unwrap();
    assert!(segments(&dir).is_empty(), "replayed segments are removed");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn close_in_an_outage_spools_what_is_pending_and_the_next_client_sends_it() {
    let mock = MockServer::start();
    let dir = temp_dir("close");
    mock.control().set_down(DownMode::Hang);
    let c = spooling(
        &mock,
        &dir,
        r#"{"queue_capacity":100000,"request_timeout_ms":60000,
        "retry_budget_ms":120000}"#,
    );
    track_n(&c, "Pending at close", 300);
    let err = c.close(Duration::from_millis(800));
    let s = c.stats();
    assert!(err.is_ok(), "nothing was given up: {err:?} {s:?}");
    assert_eq!((s.dropped_shutdown, s.failed), (0, 0), "{s:?}");
    assert_eq!(s.spooled, 300, "{s:?}");
    assert_accounted(&s);
    assert!(!segments(&dir).is_empty());

    mock.control().set_down(DownMode::Up);
    let next = spooling(&mock, &dir, "{}");
    wait("the spooled events at the mock", LONG, || {
        mock.stats().events >= 300
    });
    wait("the spool to empty", LONG, || segments(&dir).is_empty());
    let m = mock.stats();
    assert_eq!((m.events, m.duplicates), (300, 0), "{m:?}");
    let s = next.stats();
    assert_eq!((s.replayed, s.sent), (300, 300), "{s:?}");
    next.close(LONG).unwrap();
    fs::remove_dir_all(&dir).unwrap();
}

/// A replay attempt during the outage reads records back, fails, and spools them anew; the
/// segment it read them from must not hand them out again after a restart.
#[test]
fn replay_attempts_in_an_outage_are_not_sent_twice_after_a_restart() {
    let mock = MockServer::start();
    let dir = temp_dir("reattempt");
    mock.control().set_down(DownMode::Refuse);
    let c = spooling(&mock, &dir, r#"{"queue_capacity":100}"#);
    track_n(&c, "Reattempted", 1000);
    wait("a replay attempt spooled anew", LONG, || {
        let s = c.stats();
        s.replayed > 0 && s.spooled > 1000 && settled(&s)
    });
    c.close(LONG).unwrap();

    mock.control().set_down(DownMode::Up);
    let next = spooling(&mock, &dir, "{}");
    wait("the spool to empty", LONG, || segments(&dir).is_empty());
    next.flush(LONG).unwrap();
    let m = mock.stats();
    assert_eq!(
        (m.events, m.duplicates),
        (1000, 0),
        "{m:?} {:?}",
        next.stats()
    );
    next.close(LONG).unwrap();
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn torn_and_corrupt_records_are_counted_and_the_rest_delivered() {
    let mock = MockServer::start();
    let dir = temp_dir("corrupt");
    mock.control().set_down(DownMode::Refuse);
    let c = spooling(&mock, &dir, r#"{"queue_capacity":10}"#);
    // Several segments' worth: one record is ~300 bytes, a segment 4 MiB.
    let n = 30_000;
    for i in 0..n {
        c.track(&format!("u{i}"), "Corrupt", Some(r#"{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#))
            .unwrap();
    }
    wait("everything on disk", LONG, || settled(&c.stats()));
    c.close(LONG).unwrap();
    assert_eq!(c.stats().spooled, n, "{:?}", c.stats());
    let segs = segments(&dir);
    assert!(segs.len() >= 2, "{segs:?}");
    // Flip a byte in the middle of the first segment; cut the last one mid-record.
    let mut first = fs::read(&segs[0]).unwrap();
    let middle = first.len() / 2;
    first[middle] ^= 0x40;
    fs::write(&segs[0], &first).unwrap();
    let last = segs.last().unwrap();
    let len = fs::metadata(last).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 7)
        .unwrap();

    mock.control().set_down(DownMode::Up);
    let next = spooling(&mock, &dir, "{}");
    wait("the spool to empty", LONG, || segments(&dir).is_empty());
    next.flush(LONG).unwrap();
    let s = next.stats();
    assert!(s.spool_corrupt >= 2, "{s:?}");
    let m = mock.stats();
    // At most the two damaged records are lost; everything else arrives once.
    assert!(m.events >= n - 2 && m.events < n, "{m:?} {s:?}");
    assert_eq!(m.duplicates, 0, "{m:?}");
    assert_eq!(s.replayed, m.events, "{s:?}");
    next.close(LONG).unwrap();
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_full_spool_counts_and_says_so_and_the_host_is_unaffected() {
    let mock = MockServer::start();
    let dir = temp_dir("full");
    mock.control().set_down(DownMode::Refuse);
    let c = spooling(
        &mock,
        &dir,
        r#"{"spool_max_bytes":65536,"queue_capacity":10}"#,
    );
    track_n(&c, "Full", 2000);
    wait("everything resolved", LONG, || settled(&c.stats()));
    let s = c.stats();
    assert!(s.dropped_spool_full > 0, "{s:?}");
    assert!(s.spooled > 0 && s.spooled < 2000, "{s:?}");
    assert!(s.failed >= s.dropped_spool_full, "{s:?}");
    assert!(s.spool_bytes <= 65536, "{s:?}");
    assert_accounted(&s);
    let notes = c.take_notes(|n| (n.to_vec(), true));
    assert!(
        notes.iter().any(|n| n.message.contains("spool_max_bytes")),
        "{notes:?}"
    );
    c.close(Duration::from_millis(500)).ok();
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn records_past_spool_max_age_expire_and_are_counted() {
    let mock = MockServer::start();
    let dir = temp_dir("age");
    mock.control().set_down(DownMode::Refuse);
    let c = spooling(&mock, &dir, r#"{"queue_capacity":10}"#);
    track_n(&c, "Old", 500);
    wait("everything on disk", LONG, || settled(&c.stats()));
    c.close(LONG).unwrap();
    let spooled = c.stats().spooled;
    assert_eq!(spooled, 500);
    std::thread::sleep(Duration::from_millis(20));

    mock.control().set_down(DownMode::Up);
    let next = spooling(&mock, &dir, r#"{"spool_max_age_ms":10}"#);
    wait("the spool to empty", LONG, || segments(&dir).is_empty());
    let s = next.stats();
    assert_eq!(s.spool_expired, 500, "{s:?}");
    assert_eq!((s.replayed, mock.stats().events), (0, 0));
    let notes = next.take_notes(|n| (n.to_vec(), true));
    assert!(
        notes.iter().any(|n| n.message.contains("spool_max_age")),
        "{notes:?}"
    );
    next.close(LONG).unwrap();
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unusable_directory_degrades_to_counted_drops_with_a_log_line() {
    let mock = MockServer::start();
    let base = temp_dir("unusable");
    let file = base.join("a-file");
    fs::write(&file, b"not a directory").unwrap();
    mock.control().set_down(DownMode::Refuse);
    let dir = file.join("spool");
    let c = spooling(&mock, &dir, r#"{"queue_capacity":10}"#);
    track_n(&c, "Nowhere", 300);
    wait("everything resolved", LONG, || settled(&c.stats()));
    let s = c.stats();
    assert!(s.dropped_spool_error > 0, "{s:?}");
    assert_eq!(s.spooled, 0, "{s:?}");
    assert_eq!(s.failed, s.dropped_spool_error, "{s:?}");
    assert_accounted(&s);
    let notes = c.take_notes(|n| (n.to_vec(), true));
    assert!(
        notes
            .iter()
            .any(|n| n.message.contains("spool") && n.message.contains("dropped_spool_error")),
        "{notes:?}"
    );
    c.close(Duration::from_millis(500)).ok();
    fs::remove_dir_all(&base).unwrap();
}

/// The child side of the process tests: set by the parent through the environment.
fn child_env() -> Option<(String, PathBuf, String, usize)> {
    let url = std::env::var("SPOOL_TEST_URL").ok()?;
    let dir = std::env::var("SPOOL_TEST_DIR").ok()?;
    let name = std::env::var("SPOOL_TEST_NAME").ok()?;
    let n = std::env::var("SPOOL_TEST_N").ok()?.parse().ok()?;
    Some((url, PathBuf::from(dir), name, n))
}

/// Run by the parent as a separate process: tracks into the spool while the service is
/// down, says how much reached the disk, then waits to be killed (or, with
/// SPOOL_TEST_EXIT, closes and exits).
#[test]
fn spool_child_process() {
    let Some((url, dir, name, n)) = child_env() else {
        return; // not a child: nothing to do
    };
    let config = format!(
        r#"{{"token":"test-token","api_host":{url:?},"flush_interval_ms":20,
        "backoff_initial_ms":5,"backoff_max_ms":20,"max_retries":1,
        "circuit_failure_threshold":1,"circuit_cooldown_ms":60000,
        "circuit_cooldown_max_ms":60000,"retry_budget_ms":300,"queue_capacity":50,
        "spool_sync_interval_ms":0,"spool_dir":{:?}}}"#,
        dir.to_str().unwrap()
    );
    let c = Client::new(bulkhead::Config::from_json_with_env(&config, |_| None).unwrap()).unwrap();
    track_n(&c, &name, n);
    wait("everything on disk", LONG, || settled(&c.stats()));
    let s = c.stats();
    println!("SPOOLED {} {}", s.spooled, s.enqueued);
    if std::env::var("SPOOL_TEST_EXIT").is_ok() {
        c.close(Duration::from_secs(2)).ok();
        return;
    }
    std::thread::sleep(Duration::from_secs(600));
}

fn spawn_child(
    mock: &MockServer,
    dir: &Path,
    name: &str,
    n: usize,
    exit: bool,
) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "spool_child_process",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("SPOOL_TEST_URL", mock.url())
    .env("SPOOL_TEST_DIR", dir)
    .env("SPOOL_TEST_NAME", name)
    .env("SPOOL_TEST_N", n.to_string())
    .stdout(Stdio::piped());
    if exit {
        cmd.env("SPOOL_TEST_EXIT", "1");
    }
    cmd.spawn().unwrap()
}

/// Reads the child's "SPOOLED <spooled> <enqueued>" line.
fn spooled_line(child: &mut std::process::Child) -> (u64, u64) {
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    while let Some(Ok(line)) = lines.next() {
        // The test harness prints its own words before ours on the same line.
        if let Some(at) = line.find("SPOOLED ") {
            let mut parts = line[at + 8..]
                .split_whitespace()
                .map(|p| p.parse::<u64>().unwrap());
            let found = (parts.next().unwrap(), parts.next().unwrap());
            // Keep reading, so the child never writes into a closed pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return found;
        }
    }
    panic!("the child ended without saying what it spooled");
}

#[test]
fn kill_9_mid_outage_then_a_new_process_delivers_what_reached_the_disk_once() {
    let mock = MockServer::start();
    mock.control().set_down(DownMode::Refuse);
    let dir = temp_dir("kill9");
    let mut child = spawn_child(&mock, &dir, "Killed", 3000, false);
    let (spooled, enqueued) = spooled_line(&mut child);
    assert_eq!((spooled, enqueued), (3000, 3000));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!segments(&dir).is_empty());

    mock.control().set_down(DownMode::Up);
    let c = spooling(&mock, &dir, "{}");
    wait("the dead process's events at the mock", LONG, || {
        mock.stats().events >= spooled
    });
    wait("the spool to empty", LONG, || segments(&dir).is_empty());
    c.flush(LONG).unwrap();
    let m = mock.stats();
    assert_eq!((m.events, m.duplicates), (spooled, 0), "{m:?}");
    let ids: std::collections::HashSet<String> = mock
        .events()
        .iter()
        .map(|e| e["properties"]["$insert_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len() as u64, spooled);
    assert_eq!(c.stats().replayed, spooled);
    c.close(LONG).unwrap();
    let left: Vec<_> = fs::read_dir(&dir).unwrap().collect();
    assert!(
        left.is_empty(),
        "lock files of finished writers are removed: {left:?}"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn several_processes_on_one_directory_deliver_every_event_once() {
    let mock = MockServer::start();
    mock.control().set_down(DownMode::Refuse);
    let dir = temp_dir("many");
    let mut children: Vec<_> = (0..3)
        .map(|i| spawn_child(&mock, &dir, &format!("P{i}"), 1500, true))
        .collect();
    let mut total = 0;
    for child in &mut children {
        total += spooled_line(child).0;
    }
    for child in &mut children {
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(total, 4500);
    // Two live clients (in two threads of this process, each its own writer) share the
    // directory and take over the three dead writers' segments between them.
    mock.control().set_down(DownMode::Up);
    let a = spooling(&mock, &dir, "{}");
    let b = spooling(&mock, &dir, "{}");
    wait("every event at the mock", LONG, || {
        mock.stats().events >= total
    });
    wait("the spool to empty", LONG, || segments(&dir).is_empty());
    a.flush(LONG).unwrap();
    b.flush(LONG).unwrap();
    let m = mock.stats();
    assert_eq!((m.events, m.duplicates), (total, 0), "{m:?}");
    assert_eq!(a.stats().replayed + b.stats().replayed, total);
    a.close(LONG).unwrap();
    b.close(LONG).unwrap();
    fs::remove_dir_all(&dir).unwrap();
}
