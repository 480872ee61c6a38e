//! The headline promises at their edges: close racing track, flush as a barrier, memory and
//! threads over many client lifetimes, and the memory cap in an outage. Real library, real
//! HTTP, the project's mock on loopback. No timing assertions: hangs are caught by
//! watchdogs, and process-wide measurements (threads, RSS) run in a child process of their
//! own so that other tests cannot disturb them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead::{Client, ErrorKind};
use bulkhead_mock::{DownMode, Fault, MockServer};

mod common;
use common::assert_accounted;

const LONG: Duration = Duration::from_secs(60);

/// Counts the allocations each thread makes, to check what a call costs without timing it.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: same contract as ours.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

fn allocations_on_this_thread() -> u64 {
    ALLOCATIONS.with(|n| n.get())
}

fn client(mock: &MockServer, extra: &str) -> Client {
    const EDGE: &str = r#"{"token":"edge-token","flush_interval_ms":20,
        "backoff_initial_ms":5,"backoff_max_ms":50,"request_timeout_ms":5000,
        "circuit_failure_threshold":0}"#;
    common::client_with(mock, EDGE, extra)
}

/// Runs `body` on a thread and fails the test if it has not finished within `limit`.
fn with_watchdog<T: Send + 'static>(
    limit: Duration,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("watchdog: still running after {limit:?}"))
}

/// Issue 7.2: with the guard full and threads still tracking, close must leave nothing
/// pending: every OK from track is an event delivered or counted, the invariant holds right
/// after close, nothing wraps, and a later flush has nothing to wait for.
#[test]
fn close_racing_track_keeps_every_event_accounted() {
    let mock = MockServer::start();
    mock.set_down(DownMode::Hang);
    with_watchdog(Duration::from_secs(600), move || {
        for round in 0..60 {
            let c = client(
                &mock,
                r#"{"queue_capacity":64,"pool_size":1,"batch_size":8}"#,
            );
            let stop = Arc::new(AtomicBool::new(false));
            let accepted = Arc::new(AtomicU64::new(0));
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let (c, stop, accepted) = (c.clone(), stop.clone(), accepted.clone());
                    std::thread::spawn(move || loop {
                        match c.track(&format!("u{t}"), "race", None) {
                            Ok(()) => {
                                accepted.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) if e.kind() == ErrorKind::QueueFull => {}
                            Err(e) if e.kind() == ErrorKind::Closed => return,
                            Err(e) => panic!("unexpected {e}"),
                        }
                        if stop.load(Ordering::Relaxed) && round % 2 == 0 {
                            return;
                        }
                    })
                })
                .collect();
            // Close once the guard is full and dropping (an outage under traffic).
            while c.stats().dropped_queue_full < 200 {
                std::thread::yield_now();
            }
            let _ = c.close(Duration::from_millis(round % 3));
            let right_after = c.stats();
            stop.store(true, Ordering::Relaxed);
            for t in threads {
                t.join().unwrap();
            }
            let s = c.stats();
            assert!(
                right_after.queue_len < 1 << 40,
                "queue_len wrapped: {right_after:?}"
            );
            assert_eq!(
                s.enqueued,
                accepted.load(Ordering::Relaxed),
                "round {round}: {s:?}"
            );
            assert_accounted(&s);
            assert_eq!(
                s.queue_len, 0,
                "round {round}: left pending after close: {s:?}"
            );
            assert!(s.failed <= s.enqueued, "round {round}: {s:?}");
            c.flush(Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("round {round}: flush after close: {e}: {s:?}"));
        }
    });
}

/// Issue 7.3: flush returns only when every event queued before it is resolved, even while
/// steady traffic resolves other events in the meantime.
#[test]
fn flush_is_a_barrier_under_steady_traffic() {
    let mock = MockServer::start();
    let c = client(
        &mock,
        r#"{"backoff_initial_ms":10,"backoff_max_ms":10000,"retry_budget_ms":60000,"pool_size":4}"#,
    );
    // The first request waits out a Retry-After; everything after it is delivered at once.
    mock.push_fault(Fault::rate_limited(2));
    c.track("first", "before-flush", None).unwrap();
    // Let the first batch go out alone, so that the Retry-After lands on it.
    let deadline = Instant::now() + LONG;
    while mock.stats().requests == 0 {
        assert!(Instant::now() < deadline, "the first batch was never sent");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (c, stop) = (c.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = c.track(&format!("bg{i}"), "steady", None);
                i += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    // Steady traffic first resolves more events than were queued before the flush.
    while c.stats().sent < 20 {
        assert!(
            Instant::now() < deadline,
            "steady traffic was not delivered"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    c.flush(LONG).unwrap();
    let delivered = mock.events().iter().any(|e| e["event"] == "before-flush");
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    assert!(
        delivered,
        "flush returned OK while an event queued before it was still waiting to retry"
    );
    c.close(LONG).unwrap();
    assert_accounted(&c.stats());
}

/// Issue 7.13: the guard is asked before an event is built, so a call it drops costs no
/// allocation (and a fraction of an accepted call).
#[test]
fn a_dropped_track_builds_nothing() {
    let mock = MockServer::start();
    mock.set_down(DownMode::Hang);
    let c = client(
        &mock,
        r#"{"queue_capacity":10,"pool_size":1,"batch_size":2}"#,
    );
    let props = r#"{"plan":"pro","n":1,"tags":["a","b"]}"#;
    while c.track("u", "fill", Some(props)).is_ok() {}
    for _ in 0..100 {
        let before = allocations_on_this_thread();
        let result = c.track("user-1", "Signed up", Some(props));
        let allocated = allocations_on_this_thread() - before;
        assert_eq!(result.unwrap_err().kind(), ErrorKind::QueueFull);
        assert_eq!(allocated, 0, "a dropped track allocated {allocated} times");
    }
    assert!(c.stats().dropped_queue_full >= 100);
    c.close(Duration::ZERO).ok();
}

/// Runs this test binary again with only `test` selected and `BULKHEAD_EDGE_CHILD` set, so
/// a process-wide measurement sees only its own scenario. Returns the child's stdout.
fn run_in_child(test: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("BULKHEAD_EDGE_CHILD", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            panic!("{test}: child process stuck");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "{test} failed in its child:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
    stdout
}

fn in_child() -> bool {
    std::env::var_os("BULKHEAD_EDGE_CHILD").is_some()
}

fn proc_status(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/self/status"))
}

fn rss_kib() -> u64 {
    proc_status("VmRSS:")
}

fn threads() -> u64 {
    proc_status("Threads:")
}

/// Issue 7.14: a client made and shut down a thousand times leaves memory flat.
#[test]
fn shutdown_and_new_client_cycles_keep_memory_flat() {
    if !in_child() {
        run_in_child("shutdown_and_new_client_cycles_keep_memory_flat");
        return;
    }
    let mock = MockServer::start();
    let cycle = || {
        let c = client(&mock, "{}");
        c.track("u", "cycle", None).unwrap();
        bulkhead::shutdown(Duration::from_secs(10)).unwrap();
        drop(c);
    };
    for _ in 0..100 {
        cycle();
    }
    let before = rss_kib();
    for _ in 0..1000 {
        cycle();
    }
    let grown = rss_kib().saturating_sub(before);
    println!("rss grew {grown} KiB over 1000 shutdown cycles");
    assert!(
        grown < 8 * 1024,
        "memory grows per shutdown cycle: +{grown} KiB"
    );
}

/// Issue 7.14: freeing clients that still hold events during an outage starts no thread
/// per client.
#[test]
fn freeing_clients_in_an_outage_keeps_threads_bounded() {
    if !in_child() {
        run_in_child("freeing_clients_in_an_outage_keeps_threads_bounded");
        return;
    }
    let mock = MockServer::start();
    mock.set_down(DownMode::Hang);
    let baseline = threads();
    for i in 0..500 {
        let c = client(&mock, r#"{"shutdown_timeout_ms":60000}"#);
        c.track(&format!("u{i}"), "held", None).unwrap();
        c.close_in_background();
        drop(c);
    }
    let now = threads();
    println!("threads: {baseline} before, {now} after 500 background closes");
    assert!(
        now < baseline + 32,
        "a thread per freed client: {baseline} -> {now}"
    );
    bulkhead::shutdown(Duration::from_millis(100)).ok();
}

/// Issue 7.13: in an outage, RSS stays within `queue_max_bytes` plus the stated margin.
#[test]
fn memory_stays_under_the_cap_in_an_outage() {
    if !in_child() {
        run_in_child("memory_stays_under_the_cap_in_an_outage");
        return;
    }
    const CAP: u64 = 8 * 1024 * 1024;
    let mock = MockServer::start();
    mock.set_down(DownMode::Hang);
    let c = client(
        &mock,
        &format!(
            r#"{{"queue_max_bytes":{CAP},"queue_capacity":1000000,"pool_size":8,
                "token":"0123456789abcdef0123456789abcdef"}}"#
        ),
    );
    c.track("warm", "up", None).unwrap();
    let before = rss_kib();
    // A typical small event: per-event overheads matter more than its bytes of JSON.
    let props = r#"{"plan":"pro","n":3,"ok":true,"page":"/home","ref":"ad"}"#.to_string();
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (c, props) = (c.clone(), props.clone());
            std::thread::spawn(move || {
                for i in 0..200_000 {
                    let _ = c.track(&format!("u{t}-{i}"), "outage", Some(&props));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = c.stats();
    assert!(s.dropped_queue_full > 0, "the guard never filled: {s:?}");
    assert!(s.queue_bytes <= CAP, "{s:?}");
    let grown_kib = rss_kib().saturating_sub(before);
    println!("rss grew {grown_kib} KiB with a {} KiB cap", CAP / 1024);
    // The README's bound: the cap plus a fixed margin for in-flight work (16 MiB).
    assert!(
        grown_kib * 1024 <= CAP + 16 * 1024 * 1024,
        "RSS grew {grown_kib} KiB past the {} KiB cap + 16 MiB margin",
        CAP / 1024
    );
    bulkhead::shutdown(Duration::from_millis(100)).ok();
}

/// A client made while `shutdown` runs is either closed by it (calls return CLOSED) or
/// left on a live runtime (its events are delivered): never left on a stopped runtime with
/// its events pending forever.
#[test]
fn a_client_made_during_shutdown_is_closed_or_alive() {
    if !in_child() {
        run_in_child("a_client_made_during_shutdown_is_closed_or_alive");
        return;
    }
    let mock = MockServer::start();
    let stop = Arc::new(AtomicBool::new(false));
    let shutter = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = bulkhead::shutdown(Duration::from_millis(50));
            }
        })
    };
    with_watchdog(Duration::from_secs(600), move || {
        for round in 0..300 {
            let c = client(&mock, "{}");
            match c.track("u", "during-shutdown", None) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Closed => continue,
                Err(e) => panic!("{e}"),
            }
            if let Err(e) = c.flush(Duration::from_secs(20)) {
                panic!("round {round}: {e}: {:?}", c.stats());
            }
            let s = c.stats();
            assert_accounted(&s);
            assert_eq!(s.queue_len, 0, "round {round}: {s:?}");
            // What the guard charged was released exactly: no byte drift.
            assert_eq!(s.queue_bytes, 0, "round {round}: {s:?}");
        }
    });
    stop.store(true, Ordering::Relaxed);
    shutter.join().unwrap();
}

/// Issue 7.15: `batch_max_bytes` caps the request body Mixpanel caps (form-encoded, before
/// compression), not the batch's JSON, so a full batch is never encoded only to be split.
#[test]
fn batch_max_bytes_caps_the_encoded_body() {
    let mock = MockServer::start();
    let c = client(
        &mock,
        r#"{"batch_max_bytes":20000,"gzip":false,"flush_interval_ms":60000}"#,
    );
    // Quotes and braces: each byte of this JSON is three bytes once form-encoded.
    let props = format!(r#"{{"q":"{}"}}"#, r#"\"{}"#.repeat(100));
    for i in 0..200 {
        c.track(&format!("u{i}"), "escaped", Some(&props)).unwrap();
    }
    c.flush(LONG).unwrap();
    let requests = mock.requests();
    let records: usize = requests.iter().map(|r| r.records).sum();
    assert_eq!(records, 200);
    for r in &requests {
        assert!(
            r.body_bytes <= 20000,
            "a {}-byte body for a 20000-byte batch_max_bytes ({} records)",
            r.body_bytes,
            r.records
        );
    }
    assert!(requests.len() > 1, "more than one batch was needed");
    assert_eq!(c.stats().queue_bytes, 0, "{:?}", c.stats());
    c.close(LONG).unwrap();
}

/// Issue 10: at the C API a full guard refuses `track` and `import` before their text is
/// even validated, so a dropped call costs an atomic load; the drop is counted as a guard
/// drop. With room, the same bad text is refused as invalid. So does `send` with what is
/// surely one message; an array (whose events a refusal counts) is read first.
#[test]
fn a_full_guard_refuses_before_the_text_is_read() {
    use bulkhead::ffi::{
        bulkhead_client, bulkhead_client_free, bulkhead_client_new, bulkhead_client_stats,
        bulkhead_import, bulkhead_send, bulkhead_stats, bulkhead_status, bulkhead_track,
    };
    let mock = MockServer::start();
    mock.set_down(DownMode::Hang);
    let config = format!(
        r#"{{"token":"t","api_host":"{}","queue_capacity":1,"log_level":"off"}}"#,
        mock.url()
    );
    let mut handle: *mut bulkhead_client = std::ptr::null_mut();
    // SAFETY: `config` is readable for its length and `handle` is writable.
    let st = unsafe { bulkhead_client_new(config.as_ptr().cast(), config.len(), &mut handle) };
    assert_eq!(st, bulkhead_status::Ok);
    let bad = b"\xff\xfe";
    let track = |id: &[u8]| {
        // SAFETY: `handle` is live; every string is readable for the length given.
        unsafe {
            bulkhead_track(
                handle,
                id.as_ptr().cast(),
                id.len(),
                "e".as_ptr().cast(),
                1,
                std::ptr::null(),
                0,
            )
        }
    };
    let stats = || {
        let mut s = bulkhead_stats::default();
        // SAFETY: `handle` is live and `s` writable.
        assert_eq!(
            unsafe { bulkhead_client_stats(handle, &mut s) },
            bulkhead_status::Ok
        );
        s
    };
    assert_eq!(
        track(bad),
        bulkhead_status::InvalidUtf8,
        "room left: validated"
    );
    assert_eq!(track(b"u"), bulkhead_status::Ok);
    assert_eq!(
        track(bad),
        bulkhead_status::QueueFull,
        "full: refused unread"
    );
    // SAFETY: as above, with a NULL properties pointer of length 0.
    let st = unsafe {
        bulkhead_import(
            handle,
            bad.as_ptr().cast(),
            bad.len(),
            "e".as_ptr().cast(),
            1,
            1,
            std::ptr::null(),
            0,
        )
    };
    assert_eq!(st, bulkhead_status::QueueFull);
    let send = |json: &[u8]| {
        // SAFETY: `handle` is live; both strings are readable for the length given.
        unsafe {
            bulkhead_send(
                handle,
                "events".as_ptr().cast(),
                6,
                json.as_ptr().cast(),
                json.len(),
            )
        }
    };
    let bad_message = b" {\"event\":\"e\",\"properties\":{\"k\":\"\xff\"}}";
    assert_eq!(
        send(bad_message),
        bulkhead_status::QueueFull,
        "full: refused unread"
    );
    let bad_array = b"[{\"event\":\"e\xff\"}]";
    assert_eq!(
        send(bad_array),
        bulkhead_status::InvalidUtf8,
        "an array is read first"
    );
    let s = stats();
    assert_eq!(
        (s.dropped_invalid, s.dropped_queue_full, s.enqueued),
        (2, 3, 1),
        "{s:?}"
    );
    // SAFETY: `handle` came from bulkhead_client_new and is freed once, here.
    unsafe { bulkhead_client_free(handle) };
}
