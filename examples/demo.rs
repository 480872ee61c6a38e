//! The outage story, end to end: `make demo` (`cargo run --release --example demo`).
//!
//! Two application threads track events at a steady, paced rate through the C ABI (the same
//! `bulkhead_track` a C, Ruby or Python host calls) to an embedded mock Mixpanel server.
//! From second 5 to second 10 the mock is down (connections refused, or held open without
//! an answer with `--hang`). Once a second the demo prints how many events the app tracked,
//! the p99 latency of the `bulkhead_track` calls themselves, the queue length, what was
//! sent, what the queue-size guard dropped, and the circuit state.
//!
//! The story runs twice, each time with a fresh mock and client on the library's defaults:
//! first without a spool, then with `spool_dir` set to a fresh temporary directory (removed
//! at the end), where the spool run also prints what was spooled, the spool's size and what
//! was replayed. After the app's last second each run waits (at most 20 s, saying so if
//! that was not enough) for what is pending to be delivered, then closes the client.
//!
//! What to look for: the host-call latency does not move when the service dies; the queue
//! fills to its cap and, without a spool, the guard drops the excess instead of growing;
//! with the spool the excess goes to disk instead (nothing dropped) and is replayed once the
//! service is back; the circuit opens, probes, and closes when the service returns; the
//! backlog drains. Each run ends with its accounting and the demo with a comparison of both;
//! the process exits non-zero if a single event is unaccounted for in either run.
//!
//! Options: `--hang` (the outage holds connections open instead of refusing them),
//! `--rate N` (events per second per thread, default 20000), `--seconds N` (default 15).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulkhead::ffi::{
    bulkhead_client, bulkhead_client_close, bulkhead_client_free, bulkhead_client_new,
    bulkhead_client_stats, bulkhead_last_error, bulkhead_shutdown, bulkhead_stats, bulkhead_status,
    bulkhead_status_str, bulkhead_track,
};
use bulkhead_mock::{DownMode, MockServer};

const THREADS: usize = 2;

/// The client handle, shared by the app threads.
#[derive(Clone, Copy)]
struct Handle(*mut bulkhead_client);

// SAFETY: every bulkhead function is documented thread-safe for any number of host
// threads, and the handle is freed only after all the threads using it have been joined.
unsafe impl Send for Handle {}
// SAFETY: as above.
unsafe impl Sync for Handle {}

/// What one app thread measured, drained by the reporter once a second.
#[derive(Default)]
struct Meter {
    /// Nanoseconds of each `bulkhead_track` call since the last report.
    samples: Mutex<Vec<u64>>,
    calls: AtomicU64,
    ok: AtomicU64,
    queue_full: AtomicU64,
    other: AtomicU64,
}

struct Options {
    hang: bool,
    rate: u64,
    seconds: u64,
}

fn options() -> Options {
    let mut o = Options {
        hang: false,
        rate: 20_000,
        seconds: 15,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match arg.as_str() {
            "--hang" => o.hang = true,
            "--rate" => o.rate = number("--rate").max(1),
            "--seconds" => o.seconds = number("--seconds").max(3),
            other => panic!("unknown option {other}; use --hang, --rate N, --seconds N"),
        }
    }
    o
}

fn last_error() -> String {
    let mut buf = [0u8; 512];
    let mut written = 0usize;
    // SAFETY: `buf` is writable for its length and `written` is writable.
    unsafe { bulkhead_last_error(buf.as_mut_ptr().cast(), buf.len(), &mut written) };
    String::from_utf8_lossy(&buf[..written.min(buf.len())]).into_owned()
}

fn status_name(status: bulkhead_status) -> String {
    // SAFETY: bulkhead_status_str returns a static NUL-terminated string, never NULL.
    unsafe { std::ffi::CStr::from_ptr(bulkhead_status_str(status as u32)) }
        .to_string_lossy()
        .into_owned()
}

fn stats(client: Handle) -> bulkhead_stats {
    let mut s = bulkhead_stats::default();
    // SAFETY: the handle is live until the end of main; `s` is writable.
    let st = unsafe { bulkhead_client_stats(client.0, &mut s) };
    assert!(st == bulkhead_status::Ok, "stats: {}", last_error());
    s
}

/// The settings the demo runs with: the library's defaults, read from the library.
fn print_settings() {
    let d = bulkhead::Config::new("demo-token");
    println!(
        "Settings (the defaults, nothing tuned): queue_capacity {}, queue_max_bytes {} MiB, \
         pool_size {}, batch_size {}, flush_interval {:?}, request_timeout {:?}, retries {} \
         (backoff {:?} doubling to {:?}), circuit opens after {} failures, cooldown {:?} \
         doubling to {:?}.",
        d.queue_capacity,
        d.queue_max_bytes >> 20,
        d.pool_size,
        d.batch_size,
        d.flush_interval,
        d.request_timeout,
        d.max_retries,
        d.backoff_initial,
        d.backoff_max,
        d.circuit_failure_threshold,
        d.circuit_cooldown,
        d.circuit_cooldown_max,
    );
}

/// Says what changed since the last report, once per turn of the story.
#[derive(Default)]
struct Story {
    spool: bool,
    circuit: u32,
    dropping: bool,
    spooling: bool,
    replaying: bool,
    outage_seen: bool,
    drained: bool,
    spool_drained: bool,
}

impl Story {
    fn narrate(&mut self, s: &bulkhead_stats, down: bool) {
        if s.circuit_state != self.circuit {
            match (self.circuit, s.circuit_state) {
                (0, 1) => println!(
                    "      >> circuit OPEN after repeated failures: nothing is sent for the \
                     cooldown, then one probe; events wait in the queue"
                ),
                (_, 0) => println!(
                    "      >> a probe got through: circuit closed, the backlog is being sent"
                ),
                _ => {}
            }
            self.circuit = s.circuit_state;
        }
        if !self.dropping && s.dropped_queue_full > 0 {
            self.dropping = true;
            println!(
                "      >> the queue reached its cap: the guard now drops new events and counts \
                 them; bulkhead_track still returns at once"
            );
        }
        if !self.spooling && s.spooled + s.spool_pending > 0 {
            self.spooling = true;
            println!(
                "      >> the queue reached its cap: new events go to the disk spool instead of \
                 being dropped (a writer thread writes them; bulkhead_track still returns at once)"
            );
        }
        self.outage_seen |= down;
        if self.outage_seen && !down && !self.replaying && s.replayed > 0 {
            self.replaying = true;
            println!(
                "      >> replaying the spool: events come back from disk into the queue, at \
                 most half of it at a time, with their original $insert_id and time"
            );
        }
        if self.outage_seen && !down && !self.drained && s.circuit_state == 0 && s.queue_len < 5000
        {
            self.drained = true;
            println!("      >> backlog delivered: the queue is back to its normal level");
        }
        if self.spool
            && self.replaying
            && !self.spool_drained
            && s.spool_records == 0
            && s.spool_pending == 0
        {
            self.spool_drained = true;
            println!("      >> spool drained: every spooled event was replayed and delivered");
        }
    }
}

fn circuit(state: u32) -> &'static str {
    match state {
        0 => "closed",
        1 => "OPEN",
        2 => "half-open",
        _ => "?",
    }
}

/// One app thread: `rate` events a second, paced every millisecond, until `stop`.
fn app_thread(id: usize, client: Handle, rate: u64, start: Instant, stop: &AtomicBool, m: &Meter) {
    let mut distinct = String::new();
    let mut props = String::new();
    let mut done: u64 = 0;
    let mut local: Vec<u64> = Vec::with_capacity(1024);
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while done < due {
            distinct.clear();
            props.clear();
            let _ = write!(distinct, "user-{}", done % 5000);
            let _ = write!(
                props,
                r#"{{"thread":{id},"seq":{done},"plan":"pro","path":"/checkout"}}"#
            );
            let event = "Page viewed";
            let t0 = Instant::now();
            // SAFETY: the handle is live; the strings are readable for the lengths given.
            let st = unsafe {
                bulkhead_track(
                    client.0,
                    distinct.as_ptr().cast(),
                    distinct.len(),
                    event.as_ptr().cast(),
                    event.len(),
                    props.as_ptr().cast(),
                    props.len(),
                )
            };
            local.push(t0.elapsed().as_nanos() as u64);
            m.calls.fetch_add(1, Ordering::Relaxed);
            match st {
                bulkhead_status::Ok => m.ok.fetch_add(1, Ordering::Relaxed),
                bulkhead_status::QueueFull => m.queue_full.fetch_add(1, Ordering::Relaxed),
                _ => m.other.fetch_add(1, Ordering::Relaxed),
            };
            done += 1;
        }
        if let Ok(mut samples) = m.samples.lock() {
            samples.append(&mut local);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000 {
        format!("{:.1} ms", ns as f64 / 1e6)
    } else {
        format!("{:.1} µs", ns as f64 / 1e3)
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// After the app threads stop, each run waits at most this long for the backlog (and the
/// spool) to drain before closing.
const DRAIN_MAX_SECONDS: u64 = 20;

/// What one run of the story ended with.
#[derive(Default)]
struct Outcome {
    tracked: u64,
    dropped: u64,
    delivered: u64,
    duplicates: u64,
    sent: u64,
    failed: u64,
    spooled: u64,
    replayed: u64,
    on_disk: u64,
    unaccounted: i64,
    /// Seconds after the app stopped until everything was delivered; None if not in time.
    drained_after: Option<u64>,
    problems: Vec<String>,
}

/// One run of the outage story: a fresh mock and a fresh client on the library's defaults,
/// plus `spool_dir` when given.
fn run_story(opts: &Options, spool_dir: Option<&Path>) -> Outcome {
    let down_from = opts.seconds / 3;
    let down_until = opts.seconds * 2 / 3;
    let mock = MockServer::start();
    mock.set_store(false); // counters and dedup keys only: this run sends ~600k events
    let outage = if opts.hang {
        DownMode::Hang
    } else {
        DownMode::Refuse
    };
    let spool = spool_dir.is_some();

    // The library's defaults: nothing is tuned for the demo (but the spool's directory).
    let config = match spool_dir {
        None => format!(r#"{{"token":"demo-token","api_host":"{}"}}"#, mock.url()),
        Some(dir) => format!(
            r#"{{"token":"demo-token","api_host":"{}","spool_dir":{:?}}}"#,
            mock.url(),
            dir.to_str().expect("a UTF-8 temporary directory")
        ),
    };
    let mut raw: *mut bulkhead_client = std::ptr::null_mut();
    // SAFETY: `config` is readable for its length and `raw` is writable.
    let st = unsafe { bulkhead_client_new(config.as_ptr().cast(), config.len(), &mut raw) };
    assert!(st == bulkhead_status::Ok, "client_new: {}", last_error());
    let client = Handle(raw);

    let how = if opts.hang {
        "holds every connection open without answering"
    } else {
        "refuses connections"
    };
    println!(
        "{THREADS} app threads each track {} events/s for {} s through the C API into an \
         embedded mock Mixpanel, which {how} from second {down_from} to second {down_until}.",
        opts.rate, opts.seconds
    );
    print_settings();
    match spool_dir {
        None => println!("No spool_dir: what the guard refuses is dropped (and counted)."),
        Some(dir) => {
            let d = bulkhead::Config::new("demo-token");
            println!(
                "Plus spool_dir {} (a fresh temporary directory, removed at the end), the \
                 spool's other settings at their defaults: spool_max_bytes {} MiB, \
                 spool_max_age {} days, spool_sync_interval {:?}.",
                dir.display(),
                d.spool_max_bytes >> 20,
                d.spool_max_age.as_secs() / 86_400,
                d.spool_sync_interval,
            );
        }
    }
    println!(
        "Columns: `tracked` events the app tracked that second; `p99 call` and `max call` the \
         99th percentile and the slowest bulkhead_track call on the app threads that second \
         (the time the host paid, not delivery time; `max call` includes the OS preempting a \
         thread mid-call); `queue` events pending (the guard caps it); `sent` accepted by \
         the mock so far; `dropped` refused by the full guard so far; `failed` given up on.{}\n",
        if spool {
            " `spooled` written to the spool so far; `spool MiB` the spool directory's size; \
             `replayed` read back from it so far."
        } else {
            ""
        }
    );
    let mut header = format!(
        "{:>4}  {:<5} {:>9} {:>10} {:>10} {:>7} {:>9} {:>9} {:>7} {:>9}",
        "t(s)",
        "mock",
        "tracked",
        "p99 call",
        "max call",
        "queue",
        "sent",
        "dropped",
        "failed",
        "circuit"
    );
    if spool {
        let _ = write!(
            header,
            " {:>8} {:>9} {:>8}",
            "spooled", "spool MiB", "replayed"
        );
    }
    println!("{header}");

    let meters: Arc<Vec<Meter>> = Arc::new((0..THREADS).map(|_| Meter::default()).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|id| {
            let (meters, stop) = (meters.clone(), stop.clone());
            let rate = opts.rate;
            std::thread::Builder::new()
                .name(format!("app-{id}"))
                .spawn(move || app_thread(id, client, rate, start, &stop, &meters[id]))
                .expect("spawn app thread")
        })
        .collect();

    let mut last_calls = 0u64;
    let mut story = Story {
        spool,
        ..Story::default()
    };
    let mut threads = Some(threads);
    let mut drained_after = None;
    // Once a second: the app's seconds, then (threads stopped) the drain, bounded.
    for second in 1..=opts.seconds + DRAIN_MAX_SECONDS {
        let tick = start + Duration::from_secs(second);
        std::thread::sleep(tick.saturating_duration_since(Instant::now()));
        if second == opts.seconds {
            // The app's last second: stop its threads, so this row holds all their calls.
            stop.store(true, Ordering::Relaxed);
            for t in threads.take().into_iter().flatten() {
                t.join().expect("app thread panicked");
            }
        }
        let mut samples = Vec::new();
        for m in meters.iter() {
            if let Ok(mut s) = m.samples.lock() {
                samples.append(&mut s);
            }
        }
        samples.sort_unstable();
        let calls: u64 = meters.iter().map(|m| m.calls.load(Ordering::Relaxed)).sum();
        let s = stats(client);
        let down = mock.down_mode() != DownMode::Up;
        let mut line = format!(
            "{:>4}  {:<5} {:>9} {:>10} {:>10} {:>7} {:>9} {:>9} {:>7} {:>9}",
            second,
            if down { "DOWN" } else { "up" },
            calls - last_calls,
            if samples.is_empty() {
                "-".to_string()
            } else {
                fmt_ns(percentile(&samples, 0.99))
            },
            samples.last().map_or("-".to_string(), |&ns| fmt_ns(ns)),
            s.queue_len,
            s.sent,
            s.dropped_queue_full,
            s.failed,
            circuit(s.circuit_state)
        );
        if spool {
            let _ = write!(
                line,
                " {:>8} {:>9} {:>8}",
                s.spooled,
                mib(s.spool_bytes),
                s.replayed
            );
        }
        println!("{line}");
        last_calls = calls;
        story.narrate(&s, down);
        if second == down_from {
            mock.set_down(outage);
            println!("      >> the service goes down: it {how}");
        } else if second == down_until {
            mock.set_down(DownMode::Up);
            println!("      >> the service is back");
        }
        if second == opts.seconds {
            println!(
                "      >> the app stops tracking; waiting (at most {DRAIN_MAX_SECONDS} s) until \
                 everything pending{} is delivered",
                if spool {
                    ", in the queue and on disk,"
                } else {
                    ""
                }
            );
        }
        if second >= opts.seconds {
            // Read after the threads stopped, so nothing new can arrive.
            let s = stats(client);
            let delivered = mock.stats().events;
            if s.queue_len == 0
                && s.spool_pending == 0
                && s.spool_records == 0
                && delivered == s.sent
            {
                drained_after = Some(second - opts.seconds);
                break;
            }
        }
    }
    match drained_after {
        Some(0) => println!("      >> nothing left to deliver when the app stopped"),
        Some(n) => println!("      >> everything delivered {n} s after the app stopped"),
        None => println!(
            "      >> NOT DRAINED: events were still pending {DRAIN_MAX_SECONDS} s after the \
             app stopped; the close below spools or gives them up, counted"
        ),
    }

    // Close with a deadline: whatever is still pending then is counted as failed (or, with
    // a spool, left on disk).
    let close_deadline_ms = 5000;
    let closing = Instant::now();
    // SAFETY: the handle is live.
    let st = unsafe { bulkhead_client_close(client.0, close_deadline_ms) };
    let close_took = closing.elapsed();
    let s = stats(client);
    // SAFETY: the handle came from bulkhead_client_new and is freed once, here.
    unsafe { bulkhead_client_free(client.0) };

    let sum = |f: fn(&Meter) -> &AtomicU64| -> u64 {
        meters.iter().map(|m| f(m).load(Ordering::Relaxed)).sum()
    };
    let tracked = sum(|m| &m.calls);
    let ok = sum(|m| &m.ok);
    let queue_full = sum(|m| &m.queue_full);
    let other = sum(|m| &m.other);
    let server = mock.stats();
    // Spooled and not replayed (nor expired or corrupt): still on disk.
    let on_disk = s
        .spooled
        .saturating_sub(s.replayed + s.spool_expired + s.spool_corrupt);

    println!(
        "\nclosed with a {close_deadline_ms} ms deadline in {:.0} ms: {}",
        close_took.as_secs_f64() * 1e3,
        status_name(st)
    );
    let mut accounting = format!(
        "tracked {tracked} = sent {} + rejected {} + failed {} (shutdown {}) + dropped_queue_full {} \
         + dropped_too_large {} + dropped_invalid {} + pending {}",
        s.sent,
        s.rejected,
        s.failed,
        s.dropped_shutdown,
        s.dropped_queue_full,
        s.dropped_too_large,
        s.dropped_invalid,
        s.queue_len + s.spool_pending
    );
    if spool {
        let _ = write!(
            accounting,
            " + on disk {on_disk} (spooled {} - replayed {}{})",
            s.spooled,
            s.replayed,
            if s.spool_expired + s.spool_corrupt > 0 {
                format!(
                    " - expired {} - corrupt {}",
                    s.spool_expired, s.spool_corrupt
                )
            } else {
                String::new()
            }
        );
    }
    println!("{accounting}");
    println!(
        "mock: {} unique events received ({} duplicates), client sent {}; {} requests, {} retries",
        server.events, server.duplicates, s.sent, s.requests, s.retries
    );
    if spool {
        println!(
            "spool: {} events written to disk, {} replayed from it, {} left on disk; \
             dropped_spool_full {}, dropped_spool_error {}, expired {}, corrupt {}",
            s.spooled,
            s.replayed,
            on_disk,
            s.dropped_spool_full,
            s.dropped_spool_error,
            s.spool_expired,
            s.spool_corrupt
        );
    }

    let mut problems = Vec::new();
    let accounted = s.sent
        + s.rejected
        + s.failed
        + s.dropped_queue_full
        + s.dropped_too_large
        + s.dropped_invalid
        + s.queue_len
        + s.spool_pending
        + on_disk
        + s.spool_expired
        + s.spool_corrupt;
    let unaccounted = tracked as i64 - accounted as i64;
    if unaccounted != 0 {
        problems.push(format!(
            "{tracked} tracked but {accounted} accounted for ({unaccounted} unaccounted)"
        ));
    }
    if s.enqueued + s.replayed
        != s.sent + s.rejected + s.failed + s.spooled + s.queue_len + s.spool_pending
    {
        problems.push(format!(
            "enqueued {} + replayed {} != sent {} + rejected {} + failed {} + spooled {} + \
             queue_len {} + spool_pending {}",
            s.enqueued,
            s.replayed,
            s.sent,
            s.rejected,
            s.failed,
            s.spooled,
            s.queue_len,
            s.spool_pending
        ));
    }
    if ok != s.enqueued || queue_full != s.dropped_queue_full || other != 0 {
        problems.push(format!(
            "call results (ok {ok}, queue full {queue_full}, other {other}) disagree with the \
             counters (enqueued {}, dropped_queue_full {})",
            s.enqueued, s.dropped_queue_full
        ));
    }
    if server.events != s.sent {
        problems.push(format!(
            "the mock holds {} unique events but the client counted {} sent",
            server.events, s.sent
        ));
    }
    if problems.is_empty() {
        if on_disk > 0 {
            println!("every event accounted for ({on_disk} of them on disk, not delivered)");
        } else {
            println!("every event accounted for");
        }
    } else {
        for p in &problems {
            eprintln!("ACCOUNTING ERROR: {p}");
        }
    }
    Outcome {
        tracked,
        dropped: s.dropped_queue_full,
        delivered: server.events,
        duplicates: server.duplicates,
        sent: s.sent,
        failed: s.failed,
        spooled: s.spooled,
        replayed: s.replayed,
        on_disk,
        unaccounted,
        drained_after,
        problems,
    }
}

/// A fresh temporary directory for the spool run.
fn temp_spool_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "bulkhead-demo-spool-{}-{nanos:09}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("create a temporary spool directory");
    dir
}

fn main() {
    let opts = options();
    println!(
        "bulkhead demo: the outage story twice, first on the library's defaults (what the \
         full queue refuses is dropped), then with spool_dir set (it goes to disk and comes \
         back).\n"
    );
    println!("=== Run 1 of 2: without a spool ===");
    let without = run_story(&opts, None);

    let dir = temp_spool_dir();
    println!("\n=== Run 2 of 2: with spool_dir ===");
    let with = run_story(&opts, Some(&dir));
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    if left.is_empty() {
        println!("spool_dir was left empty by the client; removed");
    } else {
        println!(
            "spool_dir still held {} files ({:?}); removed with them",
            left.len(),
            left
        );
    }
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("could not remove {}: {e}", dir.display());
    }
    let _ = bulkhead_shutdown(1000);

    println!("\n=== Without vs with the spool ===");
    println!(
        "{:<34} {:>16} {:>16}",
        "", "without spool", "with spool_dir"
    );
    let row = |label: &str, value: &dyn Fn(&Outcome) -> String| {
        println!("{label:<34} {:>16} {:>16}", value(&without), value(&with));
    };
    row("tracked", &|o| o.tracked.to_string());
    row("dropped (full queue)", &|o| o.dropped.to_string());
    row("delivered (unique at the mock)", &|o| {
        o.delivered.to_string()
    });
    row("duplicates at the mock", &|o| o.duplicates.to_string());
    row("failed", &|o| o.failed.to_string());
    row("spooled (written to disk)", &|o| o.spooled.to_string());
    row("replayed (read back, delivered)", &|o| {
        o.replayed.to_string()
    });
    row("left on disk", &|o| o.on_disk.to_string());
    row("unaccounted", &|o| o.unaccounted.to_string());
    row("client sent = mock holds", &|o| {
        (if o.sent == o.delivered { "yes" } else { "NO" }).to_string()
    });
    row("delivered / tracked", &|o| {
        format!(
            "{:.1} %",
            100.0 * o.delivered as f64 / o.tracked.max(1) as f64
        )
    });
    row(
        "drained after the app stopped",
        &|o| match o.drained_after {
            Some(n) => format!("{n} s"),
            None => format!("not in {DRAIN_MAX_SECONDS} s"),
        },
    );
    if with.dropped == 0 && with.delivered == with.tracked {
        println!(
            "with the spool: nothing dropped, every tracked event delivered ({} through the disk)",
            with.replayed
        );
    } else {
        println!(
            "with the spool: {} dropped, {} failed, {} left on disk, {} of {} tracked delivered",
            with.dropped, with.failed, with.on_disk, with.delivered, with.tracked
        );
    }
    if !without.problems.is_empty() || !with.problems.is_empty() {
        std::process::exit(1);
    }
}
