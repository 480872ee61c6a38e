//! The outage story, end to end: `make demo` (`cargo run --release --example demo`).
//!
//! Two application threads track events at a steady, paced rate through the C ABI (the same
//! `bulkhead_track` a C, Ruby or Python host calls) to an embedded mock Mixpanel server.
//! From second 5 to second 10 the mock is down (connections refused, or held open without
//! an answer with `--hang`). Once a second the demo prints how many events the app tracked,
//! the p99 latency of the `bulkhead_track` calls themselves, the queue length, what was
//! sent, what the queue-size guard dropped, and the circuit state.
//!
//! What to look for: the host-call latency does not move when the service dies; the queue
//! fills to its cap and the guard drops the excess instead of growing; the circuit opens,
//! probes, and closes when the service returns; the backlog drains. At the end the client
//! is closed with a deadline and every tracked event is accounted for — the process exits
//! non-zero if one is not.
//!
//! Options: `--hang` (the outage holds connections open instead of refusing them),
//! `--rate N` (events per second per thread, default 20000), `--seconds N` (default 15).

use std::fmt::Write as _;
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
    circuit: u32,
    dropping: bool,
    outage_seen: bool,
    drained: bool,
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
        self.outage_seen |= down;
        if self.outage_seen && !down && !self.drained && s.circuit_state == 0 && s.queue_len < 5000
        {
            self.drained = true;
            println!("      >> backlog delivered: the queue is back to its normal level");
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

fn main() {
    let opts = options();
    let down_from = opts.seconds / 3;
    let down_until = opts.seconds * 2 / 3;
    let mock = MockServer::start();
    mock.set_store(false); // counters and dedup keys only: this run sends ~600k events
    let outage = if opts.hang {
        DownMode::Hang
    } else {
        DownMode::Refuse
    };

    // The library's defaults: nothing is tuned for the demo.
    let config = format!(r#"{{"token":"demo-token","api_host":"{}"}}"#, mock.url());
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
        "bulkhead demo: {THREADS} app threads each track {} events/s for {} s through the C API \
         into an embedded mock Mixpanel, which {how} from second {down_from} to second \
         {down_until}.",
        opts.rate, opts.seconds
    );
    print_settings();
    println!(
        "Columns: `tracked` events the app tracked that second; `p99 call` and `max call` the \
         99th percentile and the slowest bulkhead_track call on the app threads that second \
         (the time the host paid, not delivery time; `max call` includes the OS preempting a \
         thread mid-call); `queue` events pending (the guard caps it); `sent` accepted by \
         the mock so far; `dropped` refused by the full guard so far; `failed` given up on.\n"
    );
    println!(
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
    let mut story = Story::default();
    for second in 1..=opts.seconds {
        let tick = start + Duration::from_secs(second);
        std::thread::sleep(tick.saturating_duration_since(Instant::now()));
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
        println!(
            "{:>4}  {:<5} {:>9} {:>10} {:>10} {:>7} {:>9} {:>9} {:>7} {:>9}",
            second,
            if down { "DOWN" } else { "up" },
            calls - last_calls,
            fmt_ns(percentile(&samples, 0.99)),
            fmt_ns(samples.last().copied().unwrap_or(0)),
            s.queue_len,
            s.sent,
            s.dropped_queue_full,
            s.failed,
            circuit(s.circuit_state)
        );
        last_calls = calls;
        story.narrate(&s, down);
        if second == down_from {
            mock.set_down(outage);
            println!("      >> the service goes down: it {how}");
        } else if second == down_until {
            mock.set_down(DownMode::Up);
            println!("      >> the service is back");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("app thread panicked");
    }

    // Close with a deadline: whatever is still pending then is counted as failed.
    let close_deadline_ms = 5000;
    let closing = Instant::now();
    // SAFETY: the handle is live.
    let st = unsafe { bulkhead_client_close(client.0, close_deadline_ms) };
    let close_took = closing.elapsed();
    let s = stats(client);
    // SAFETY: the handle came from bulkhead_client_new and is freed once, here.
    unsafe { bulkhead_client_free(client.0) };
    let _ = bulkhead_shutdown(1000);

    let sum = |f: fn(&Meter) -> &AtomicU64| -> u64 {
        meters.iter().map(|m| f(m).load(Ordering::Relaxed)).sum()
    };
    let tracked = sum(|m| &m.calls);
    let ok = sum(|m| &m.ok);
    let queue_full = sum(|m| &m.queue_full);
    let other = sum(|m| &m.other);
    let server = mock.stats();

    println!(
        "\nclosed with a {close_deadline_ms} ms deadline in {:.0} ms: {}",
        close_took.as_secs_f64() * 1e3,
        status_name(st)
    );
    println!(
        "tracked {tracked} = sent {} + rejected {} + failed {} (shutdown {}) + dropped_queue_full {} \
         + dropped_too_large {} + dropped_invalid {} + pending {}",
        s.sent,
        s.rejected,
        s.failed,
        s.dropped_shutdown,
        s.dropped_queue_full,
        s.dropped_too_large,
        s.dropped_invalid,
        s.queue_len
    );
    println!(
        "mock: {} unique events received ({} duplicates), client sent {}; {} requests, {} retries",
        server.events, server.duplicates, s.sent, s.requests, s.retries
    );

    let mut problems = Vec::new();
    let accounted = s.sent
        + s.rejected
        + s.failed
        + s.dropped_queue_full
        + s.dropped_too_large
        + s.dropped_invalid
        + s.queue_len;
    if tracked != accounted {
        problems.push(format!(
            "{tracked} tracked but {accounted} accounted for ({} unaccounted)",
            tracked as i64 - accounted as i64
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
        println!("every event accounted for");
    } else {
        for p in &problems {
            eprintln!("ACCOUNTING ERROR: {p}");
        }
        std::process::exit(1);
    }
}
