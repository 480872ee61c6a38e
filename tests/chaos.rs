//! Chaos accounting (issue #9): the real library over real HTTP (loopback only) against the
//! project's mock, with a seeded mix of every fault the mock can play and outages that come
//! and go, while several threads track, `send` prebuilt events and `import`. At the end every
//! event must be accounted for, the calls' return statuses must match the counters, and the
//! mock must hold exactly the events the client counted as sent (see `check_mock` for the one
//! legitimate difference: an answer lost after the mock stored the batch).
//!
//! `BULKHEAD_CHAOS_EVENTS` (default 50 000) events, seed `BULKHEAD_CHAOS_SEED` (default fixed,
//! decimal or 0x-hex). `make chaos` runs a million in release. No timing assertions: a
//! watchdog fails the test if it runs past `BULKHEAD_CHAOS_WATCHDOG_S` (default 600 s).
//! With `BULKHEAD_CHAOS_ROW=<path>` a passing run writes its row of the README's Reliability
//! table there (scripts/reliability.py).
//!
//! `chaos_accounting_with_spool` plays the same chaos against a client with a disk spool
//! (`spool_dir` in a fresh temp dir): overflow, failed deliveries and replay all run under
//! the faults. After the chaos it waits (under the same watchdog) until the spool is drained,
//! then checks the spool's promise: nothing accepted at the call is lost — every OK'd event
//! ends sent or rejected (`failed` only from `dropped_spool_*`/`dropped_shutdown`, all 0),
//! what was spooled was replayed, and the mock holds every OK'd event that was not refused.
//! Its row goes to `BULKHEAD_CHAOS_SPOOL_ROW=<path>`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bulkhead::{Client, Config, ErrorKind, Stats};
use bulkhead_mock::{DownMode, Endpoint, Fault, MockServer, MockStats};

const DEFAULT_EVENTS: u64 = 50_000;
const DEFAULT_SEED: u64 = 0x5EED_C4A0_5B0D;
const PRODUCERS: u64 = 4;
const MAX_EVENT_BYTES: usize = 8192;
/// Entries in `pick_fault`'s catalogue.
const FAULT_KINDS: u64 = 22;

/// SplitMix64: small, seeded, the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim().replace('_', "");
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        }
        Err(_) => default,
    }
}

/// What the producers did, per call status, counted per event (a refused `send` array
/// counts each of its events, as the README says of `dropped_invalid`).
#[derive(Default, Debug, Clone)]
struct Calls {
    calls: u64,
    ok: u64,
    queue_full: u64,
    too_large: u64,
    invalid: u64,
    closed: u64,
    /// Events refused as QUEUE_FULL inside `send` arrays (also in `queue_full`).
    queue_full_in_arrays: u64,
    /// `send` arrays refused as QUEUE_FULL.
    queue_full_arrays: u64,
    by_kind: BTreeMap<&'static str, u64>,
    /// `chaos_n` of every event whose call returned OK.
    ok_ns: Vec<u64>,
    /// `chaos_n` of OK events the mock must refuse (`bad` / `imp_bad`).
    bad_ns: Vec<u64>,
    /// `chaos_n` of OK events given an explicit `$insert_id`.
    explicit_ns: Vec<u64>,
}

impl Calls {
    fn merge(&mut self, o: Calls) {
        self.calls += o.calls;
        self.ok += o.ok;
        self.queue_full += o.queue_full;
        self.too_large += o.too_large;
        self.invalid += o.invalid;
        self.closed += o.closed;
        self.queue_full_in_arrays += o.queue_full_in_arrays;
        self.queue_full_arrays += o.queue_full_arrays;
        for (k, v) in o.by_kind {
            *self.by_kind.entry(k).or_default() += v;
        }
        self.ok_ns.extend(o.ok_ns);
        self.bad_ns.extend(o.bad_ns);
        self.explicit_ns.extend(o.explicit_ns);
    }
}

fn explicit_id(seed: u64, n: u64) -> String {
    format!("c{:x}-{n}", seed & 0xFFFF_FFFF)
}

fn prebuilt(seed: u64, n: u64) -> String {
    format!(
        r#"{{"event":"prebuilt","properties":{{"token":"test-token","distinct_id":"u{}","$insert_id":"{}","chaos_n":{n}}}}}"#,
        n % 97,
        explicit_id(seed, n)
    )
}

/// One producer: takes event numbers from `next` until `total`, paced so that the whole run
/// spreads over the chaos (`per_sec` events per second for this thread).
fn produce(c: &Client, seed: u64, id: u64, next: &AtomicU64, total: u64, per_sec: f64) -> Calls {
    let mut rng = Rng::new(seed ^ (0xA11CE + id).wrapping_mul(0x9E37_79B9));
    let mut calls = Calls::default();
    let start = Instant::now();
    let mut mine = 0u64;
    loop {
        let roll = rng.range(0, 1000);
        let k = if (274..304).contains(&roll) {
            rng.range(2, 6)
        } else {
            1
        };
        let first = next.fetch_add(k, Relaxed);
        if first >= total {
            break;
        }
        let k = k.min(total - first);
        let n = first;
        calls.calls += 1;
        mine += k;
        let (kind, result, bad, explicit) = match roll {
            0..8 => {
                let big = "x".repeat(MAX_EVENT_BYTES + 100);
                let props = format!(r#"{{"chaos_n":{n},"big":"{big}"}}"#);
                (
                    "track too large",
                    c.track("u", "chaos", Some(&props)),
                    false,
                    false,
                )
            }
            8..14 => {
                let json = format!(
                    r#"{{"event":"prebuilt","properties":{{"token":"test-token","distinct_id":"u","$insert_id":"not valid!","chaos_n":{n}}}}}"#
                );
                (
                    "send invalid id",
                    c.send("events", &json, None, None),
                    false,
                    false,
                )
            }
            14..16 => {
                let props = format!(r#"{{"chaos_n":{n},"bad":true}}"#);
                (
                    "track bad",
                    c.track("u", "chaos", Some(&props)),
                    true,
                    false,
                )
            }
            16..124 => {
                let props = format!(
                    r#"{{"chaos_n":{n},"$insert_id":"{}"}}"#,
                    explicit_id(seed, n)
                );
                let d = format!("u{}", n % 97);
                (
                    "track explicit id",
                    c.track(&d, "chaos", Some(&props)),
                    false,
                    true,
                )
            }
            124..274 => (
                "send",
                c.send("events", &prebuilt(seed, n), None, None),
                false,
                true,
            ),
            274..304 => {
                let items: Vec<String> = (n..n + k).map(|i| prebuilt(seed, i)).collect();
                let json = format!("[{}]", items.join(","));
                (
                    "send array",
                    c.send("events", &json, None, None),
                    false,
                    true,
                )
            }
            304..424 => {
                let props = format!(r#"{{"chaos_n":{n}}}"#);
                let d = format!("u{}", n % 97);
                let r = c.import(&d, "imported", 1_500_000_000_000 + n as i64, Some(&props));
                ("import", r, false, false)
            }
            424..434 => {
                let props = format!(r#"{{"chaos_n":{n},"imp_bad":1}}"#);
                let r = c.import("u", "imported", 1_500_000_000_000 + n as i64, Some(&props));
                ("import bad", r, true, false)
            }
            _ => {
                let props = format!(r#"{{"chaos_n":{n},"plan":"pro"}}"#);
                let d = format!("u{}", n % 97);
                (
                    "track",
                    c.track(&d, &format!("e{}", n % 5), Some(&props)),
                    false,
                    false,
                )
            }
        };
        *calls.by_kind.entry(kind).or_default() += k;
        match result {
            Ok(()) => {
                calls.ok += k;
                calls.ok_ns.extend(n..n + k);
                if bad {
                    calls.bad_ns.push(n);
                }
                if explicit {
                    calls.explicit_ns.extend(n..n + k);
                }
            }
            Err(e) => match e.kind() {
                ErrorKind::QueueFull => {
                    calls.queue_full += k;
                    if k > 1 {
                        calls.queue_full_in_arrays += k;
                        calls.queue_full_arrays += 1;
                    }
                }
                ErrorKind::TooLarge => calls.too_large += k,
                ErrorKind::InvalidArgument => calls.invalid += k,
                ErrorKind::Closed => calls.closed += k,
                other => panic!("{kind} #{n}: unexpected {other:?}: {e}"),
            },
        }
        // Producer 0 also asks for short flushes now and then: barriers under chaos.
        if id == 0 && calls.calls % 4000 == 0 {
            match c.flush(Duration::from_millis(20)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Timeout => {}
                Err(e) => panic!("flush during chaos: {e}"),
            }
        }
        if calls.calls % 64 == 0 {
            let due = start + Duration::from_secs_f64(mine as f64 / per_sec);
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
        }
    }
    calls
}

/// The catalogue: every fault the mock can play, with its name for the summary. (In debug
/// builds hyper's debug assertion panics the mock's connection task on `TruncatedBody`
/// — "payload claims content-length of 5, custom content-length header claims 1000" — so the
/// client sees the connection close without an answer instead of a short body; harmless.)
fn pick_fault(which: u64) -> (&'static str, Fault) {
    match which {
        0 => ("500", Fault::status(500)),
        1 => ("502", Fault::status(502)),
        2 => ("503", Fault::status(503)),
        3 => ("429", Fault::status(429)),
        4 => ("429 Retry-After", Fault::rate_limited(1)),
        5 => ("413", Fault::status(413)),
        6 => ("400", Fault::status(400)),
        7 => ("401", Fault::status(401)),
        8 => (
            "reject (status 0)",
            Fault::Reject {
                error: "chaos reject".into(),
            },
        ),
        9 => ("hang", Fault::Hang),
        10 => ("drop", Fault::Drop),
        11 => ("early close", Fault::EarlyClose { status: 503 }),
        12 => ("reset mid body", Fault::ResetMidBody),
        13 => ("redirect", Fault::redirect()),
        14 => (
            "200 html",
            Fault::body(200, "<!doctype html><html><body>Welcome</body></html>"),
        ),
        15 => ("200 empty", Fault::body(200, "")),
        16 => ("200 garbage", Fault::body(200, r#"{"status":1"#)),
        17 => ("truncated body", Fault::TruncatedBody),
        18 => ("endless body 200", Fault::EndlessBody { status: 200 }),
        19 => ("endless body 500", Fault::EndlessBody { status: 500 }),
        20 => ("504", Fault::status(504)),
        _ => ("200 ok-ish", Fault::body(200, "ok")),
    }
}

#[derive(Default, Debug)]
struct Chaos {
    faults_pushed: BTreeMap<&'static str, u64>,
    actions: BTreeMap<&'static str, u64>,
}

/// Plays faults, latency, size limits, outages and crashes (kill and restart, same port and
/// store) until `stop`; leaves the mock up.
fn chaos(mock: &Mutex<Option<MockServer>>, seed: u64, stop: &AtomicBool) -> Chaos {
    let mut rng = Rng::new(seed ^ 0x00C4_A05C_4A05);
    let mut played = Chaos::default();
    let ctl = mock.lock().unwrap().as_ref().unwrap().control().clone();
    // The whole catalogue once, in a seeded order, before random picks: every kind is played.
    let mut first: Vec<u64> = (0..FAULT_KINDS).collect();
    for i in (1..first.len()).rev() {
        first.swap(i, rng.range(0, i as u64 + 1) as usize);
    }
    let mut picks = 0usize;
    let mut rounds = 0u64;
    while !stop.load(Relaxed) {
        rounds += 1;
        // A kill early on, whatever the dice say: every run crashes the service at least once.
        let dice = if rounds == 8 { 91 } else { rng.range(0, 100) };
        let action = match dice {
            0..70 => {
                for _ in 0..rng.range(2, 8) {
                    let which = first
                        .get(picks)
                        .copied()
                        .unwrap_or_else(|| rng.range(0, FAULT_KINDS));
                    picks += 1;
                    let (name, fault) = pick_fault(which);
                    match rng.range(0, 4) {
                        0 => ctl.push_fault_for(Endpoint::Import, fault),
                        1 => ctl.push_fault_for(Endpoint::Track, fault),
                        _ => ctl.push_fault(fault),
                    }
                    *played.faults_pushed.entry(name).or_default() += 1;
                }
                "faults"
            }
            70..73 => {
                // Long enough to fill the queue: QUEUE_FULL at the calls.
                let mode = if rng.range(0, 2) == 0 {
                    DownMode::Refuse
                } else {
                    DownMode::Hang
                };
                ctl.set_down(mode);
                thread::sleep(rng.ms(1000, 2500));
                ctl.set_down(DownMode::Up);
                "long outage"
            }
            73..81 => {
                // Below and above request_timeout_ms (300).
                let latency = [10, 60, 150, 450][rng.range(0, 4) as usize];
                ctl.set_latency(Duration::from_millis(latency));
                thread::sleep(rng.ms(100, 400));
                ctl.set_latency(Duration::ZERO);
                "latency"
            }
            81..86 => {
                ctl.set_down(DownMode::Refuse);
                thread::sleep(rng.ms(100, 700));
                ctl.set_down(DownMode::Up);
                "down (refuse)"
            }
            86..91 => {
                ctl.set_down(DownMode::Hang);
                thread::sleep(rng.ms(100, 700));
                ctl.set_down(DownMode::Up);
                "down (hang)"
            }
            91..93 => {
                // Connections in flight die with the process, answered or not; the store
                // survives (a restart on durable storage).
                let mut slot = mock.lock().unwrap();
                let killed = slot.take().unwrap();
                *slot = Some(killed.restart().expect("mock restarts on its port"));
                "kill and restart"
            }
            93..96 => {
                ctl.set_max_body_bytes(Some(rng.range(4_000, 100_000) as usize));
                thread::sleep(rng.ms(100, 400));
                ctl.set_max_body_bytes(None);
                "body limit (413)"
            }
            _ => {
                let status = if rng.range(0, 2) == 0 { 200 } else { 400 };
                ctl.set_reject_property(Some("bad".into()), status);
                "reject property status flip"
            }
        };
        *played.actions.entry(action).or_default() += 1;
        // After a period (latency, outage, size limit), as long again at most of calm, so
        // that a good part of the events gets through between the storms.
        let calm = if action == "faults" || action.starts_with("reject") {
            rng.ms(5, 40)
        } else {
            rng.ms(150, 500)
        };
        thread::sleep(calm);
    }
    ctl.set_down(DownMode::Up);
    ctl.set_latency(Duration::ZERO);
    ctl.set_max_body_bytes(None);
    played
}

/// Delivery errors, drained continuously (`max_recent_errors` is at most 10 000).
#[derive(Default, Debug)]
struct Errors {
    seen: u64,
    by_outcome: BTreeMap<String, u64>,
    /// Events in attempts that got no answer (HTTP status 0: timeout, network error): the
    /// only attempts whose batch the mock may have stored without the client knowing.
    no_answer_events: u64,
}

fn drain_errors(c: &Client, into: &Mutex<Errors>) {
    c.take_errors(|errors| {
        let mut e = into.lock().unwrap();
        for err in errors {
            e.seen += 1;
            *e.by_outcome.entry(err.outcome.to_string()).or_default() += err.events;
            if err.http_status == 0 {
                e.no_answer_events += err.events;
            }
        }
        ((), true)
    })
}

/// The chaos client; with `spool_dir`, the same settings plus a disk spool there (its other
/// spool settings at their defaults: 1 GiB, 7 days, fdatasync every 500 ms).
fn client(url: &str, spool_dir: Option<&Path>) -> Client {
    let spool = spool_dir
        .map(|d| {
            format!(
                r#","spool_dir":{:?}"#,
                d.to_str().expect("a UTF-8 temp dir")
            )
        })
        .unwrap_or_default();
    let json = format!(
        r#"{{"token":"test-token","api_host":"{url}","log_level":"off",
            "queue_capacity":5000,"pool_size":8,"batch_size":200,"flush_interval_ms":20,
            "request_timeout_ms":300,"connect_timeout_ms":300,"max_retries":6,
            "backoff_initial_ms":5,"backoff_max_ms":50,"retry_budget_ms":3000,
            "circuit_failure_threshold":5,"circuit_cooldown_ms":20,"circuit_cooldown_max_ms":200,
            "max_event_bytes":{MAX_EVENT_BYTES},"max_recent_errors":10000{spool}}}"#
    );
    Client::new(Config::from_json_with_env(&json, |_| None).unwrap()).unwrap()
}

/// A fresh spool directory, removed when dropped (also when the test fails; a run the
/// watchdog ends leaves it, and names it).
struct SpoolDir(PathBuf);

impl SpoolDir {
    fn new() -> SpoolDir {
        let dir = std::env::temp_dir().join(format!(
            "bulkhead-chaos-spool-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        SpoolDir(dir)
    }

    /// Files in the directory ending in `.<ext>`.
    fn files(&self, ext: &str) -> Vec<PathBuf> {
        std::fs::read_dir(&self.0)
            .unwrap_or_else(|e| panic!("{}: {e}", self.0.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect()
    }
}

impl Drop for SpoolDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The spool side of a run, for the summary and the row.
struct SpoolRun {
    /// From the end of the final flush until the spool was empty.
    drain: Duration,
    /// Files left in the directory after close (none expected).
    left_after_close: Vec<PathBuf>,
}

/// What the summary table shows.
struct Summary<'a> {
    seed: u64,
    events: u64,
    wall: Duration,
    s: &'a Stats,
    m: &'a MockStats,
    calls: &'a Calls,
    played: &'a Chaos,
    errors: &'a Errors,
    unique_ids: usize,
    pending_faults: usize,
    spool: Option<&'a SpoolRun>,
}

fn print_summary(r: Summary<'_>) {
    let Summary {
        seed,
        events,
        wall,
        s,
        m,
        calls,
        played,
        errors,
        unique_ids,
        pending_faults,
        spool,
    } = r;
    let variant = if spool.is_some() { " (with spool)" } else { "" };
    println!("chaos{variant}: seed {seed} (0x{seed:x}), {events} events, wall {wall:.1?}");
    println!("  client                       mock");
    let rows: [(&str, u64, &str, u64); 9] = [
        ("enqueued", s.enqueued, "unique events", m.events),
        ("sent", s.sent, "unique $insert_ids", unique_ids as u64),
        ("rejected", s.rejected, "duplicates", m.duplicates),
        ("failed", s.failed, "rejected", m.rejected),
        (
            "dropped_queue_full",
            s.dropped_queue_full,
            "requests",
            m.requests,
        ),
        (
            "dropped_too_large",
            s.dropped_too_large,
            "faults served",
            m.faults_served,
        ),
        (
            "dropped_invalid",
            s.dropped_invalid,
            "too large (413)",
            m.too_large,
        ),
        (
            "dropped_shutdown",
            s.dropped_shutdown,
            "faults left over",
            pending_faults as u64,
        ),
        ("requests/retries", s.requests, "", s.retries),
    ];
    for (a, x, b, y) in rows {
        println!("  {a:<20} {x:>9}   {b:<18} {y:>9}");
    }
    println!(
        "  queue_len {} in_flight {} queue_bytes {} errors_overwritten {}",
        s.queue_len, s.in_flight, s.queue_bytes, s.errors_overwritten
    );
    println!(
        "  calls {}: ok {} queue_full {} (in arrays {}) too_large {} invalid {} closed {}",
        calls.calls,
        calls.ok,
        calls.queue_full,
        calls.queue_full_in_arrays,
        calls.too_large,
        calls.invalid,
        calls.closed
    );
    println!("  events by call kind: {:?}", calls.by_kind);
    println!("  faults pushed: {:?}", played.faults_pushed);
    println!("  chaos actions: {:?}", played.actions);
    println!(
        "  delivery errors: {} (events by outcome {:?}; in unanswered attempts {})",
        errors.seen, errors.by_outcome, errors.no_answer_events
    );
    if let Some(run) = spool {
        println!(
            "  spool: spooled {} replayed {} expired {} corrupt {} dropped_spool_full {} \
             dropped_spool_error {} pending {} records {} bytes {}; drained {:.1?} after the \
             final flush; QUEUE_FULL (hand-off full) {}",
            s.spooled,
            s.replayed,
            s.spool_expired,
            s.spool_corrupt,
            s.dropped_spool_full,
            s.dropped_spool_error,
            s.spool_pending,
            s.spool_records,
            s.spool_bytes,
            run.drain,
            calls.queue_full,
        );
    }
}

#[test]
fn chaos_accounting() {
    run_chaos(false);
}

/// The same chaos with a disk spool: nothing accepted at the call may be lost.
#[test]
fn chaos_accounting_with_spool() {
    run_chaos(true);
}

/// Waits (under the watchdog) until the spool holds nothing: no record on disk or in the
/// hand-off, no segment file, nothing queued. Says how it goes every 10 s.
fn wait_for_spool_drained(c: &Client, dir: &SpoolDir) -> Duration {
    let started = Instant::now();
    let mut said = Instant::now();
    loop {
        let s = c.stats();
        if s.spool_records == 0
            && s.spool_pending == 0
            && s.queue_len == 0
            && dir.files("seg").is_empty()
        {
            return started.elapsed();
        }
        if said.elapsed() >= Duration::from_secs(10) {
            said = Instant::now();
            println!(
                "chaos (with spool): draining for {:.0?}: records {} pending {} queue_len {} \
                 segments {} replayed {} spooled {} sent {} circuit {:?}",
                started.elapsed(),
                s.spool_records,
                s.spool_pending,
                s.queue_len,
                dir.files("seg").len(),
                s.replayed,
                s.spooled,
                s.sent,
                s.circuit_state
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The chaos run; with `spool`, the client has a disk spool in a fresh temp dir.
fn run_chaos(spool: bool) {
    let events = env_u64("BULKHEAD_CHAOS_EVENTS", DEFAULT_EVENTS);
    let seed = env_u64("BULKHEAD_CHAOS_SEED", DEFAULT_SEED);
    let watchdog_s = env_u64("BULKHEAD_CHAOS_WATCHDOG_S", 600);
    let spool_dir = spool.then(SpoolDir::new);
    let variant = if spool { " (with spool)" } else { "" };
    println!("chaos{variant}: BULKHEAD_CHAOS_SEED={seed} BULKHEAD_CHAOS_EVENTS={events}");
    let done = Arc::new(AtomicBool::new(false));
    {
        let done = done.clone();
        let where_ = spool_dir
            .as_ref()
            .map(|d| format!("; spool dir {} left for a look", d.0.display()))
            .unwrap_or_default();
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(watchdog_s);
            while Instant::now() < deadline {
                if done.load(Relaxed) {
                    return;
                }
                thread::sleep(Duration::from_millis(200));
            }
            eprintln!(
                "chaos{variant}: watchdog: still running after {watchdog_s} s (seed {seed}){where_}; failing"
            );
            std::process::exit(101);
        });
    }
    let started = Instant::now();
    let mock = MockServer::start();
    let url = mock.url();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    // The chaos thread kills and restarts the server; the store lives in the control.
    let ctl = mock.control().clone();
    let mock = Mutex::new(Some(mock));
    ctl.set_reject_property(Some("bad".into()), 400);
    ctl.set_import_reject_property(Some("imp_bad".into()));
    let c = client(&url, spool_dir.as_ref().map(|d| d.0.as_path()));

    // Spread production over the chaos: at least 15 s, about 20 000 events/s beyond that.
    let secs = (events as f64 / 20_000.0).max(15.0);
    let per_thread = events as f64 / secs / PRODUCERS as f64;
    let next = AtomicU64::new(0);
    let stop_chaos = AtomicBool::new(false);
    let stop_errors = AtomicBool::new(false);
    let errors = Mutex::new(Errors::default());
    let (calls, played) = thread::scope(|s| {
        let chaos = s.spawn(|| chaos(&mock, seed, &stop_chaos));
        let drainer = s.spawn(|| {
            while !stop_errors.load(Relaxed) {
                drain_errors(&c, &errors);
                thread::sleep(Duration::from_millis(10));
            }
        });
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|id| {
                let (c, next) = (&c, &next);
                s.spawn(move || produce(c, seed, id, next, events, per_thread))
            })
            .collect();
        let mut calls = Calls::default();
        for p in producers {
            calls.merge(p.join().unwrap());
        }
        stop_chaos.store(true, Relaxed);
        let played = chaos.join().unwrap();
        // Faults still queued would only slow the end down; the mock is up again.
        let pending = ctl.pending_faults();
        ctl.clear_faults();
        c.flush(Duration::from_secs(240))
            .expect("final flush within its (generous) deadline");
        // With a spool, replay brings back what is on disk: wait until all of it was.
        let drain = spool_dir.as_ref().map(|d| wait_for_spool_drained(&c, d));
        c.close(Duration::from_secs(240))
            .expect("close within its (generous) deadline");
        let spool_run = spool_dir.as_ref().zip(drain).map(|(d, drain)| {
            let mut left: Vec<PathBuf> = std::fs::read_dir(&d.0)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            left.sort();
            SpoolRun {
                drain,
                left_after_close: left,
            }
        });
        stop_errors.store(true, Relaxed);
        drainer.join().unwrap();
        drain_errors(&c, &errors);
        (calls, (played, pending, spool_run))
    });
    let (played, pending_faults, spool_run) = played;
    let wall = started.elapsed();
    let s = c.stats();
    let m = ctl.stats();
    let errors = errors.into_inner().unwrap();

    // What the mock holds, by the test's own event number.
    let stored = ctl.events();
    let mut stored_ns = HashSet::with_capacity(stored.len());
    let mut stored_ids = HashSet::with_capacity(stored.len());
    let ok: HashSet<u64> = calls.ok_ns.iter().copied().collect();
    let explicit: HashSet<u64> = calls.explicit_ns.iter().copied().collect();
    for e in &stored {
        let p = &e["properties"];
        let n = p["chaos_n"]
            .as_u64()
            .unwrap_or_else(|| panic!("stored event without chaos_n: {e}"));
        let id = p["$insert_id"].as_str().unwrap_or_default().to_string();
        assert!(
            ok.contains(&n),
            "the mock holds event #{n}, which the test never got OK for: {e}"
        );
        assert!(
            stored_ns.insert(n),
            "event #{n} stored twice under different $insert_ids (a retry must reuse it): {e}"
        );
        if explicit.contains(&n) {
            assert_eq!(
                id,
                explicit_id(seed, n),
                "explicit $insert_id not kept: {e}"
            );
        }
        assert!(stored_ids.insert(id), "$insert_id stored twice: {e}");
    }
    print_summary(Summary {
        seed,
        events,
        wall,
        s: &s,
        m: &m,
        calls: &calls,
        played: &played,
        errors: &errors,
        unique_ids: stored_ids.len(),
        pending_faults,
        spool: spool_run.as_ref(),
    });

    // Every event accounted for, nothing pending.
    if spool {
        assert_eq!(
            s.enqueued + s.replayed,
            s.sent + s.rejected + s.failed + s.spooled + s.queue_len + s.spool_pending,
            "enqueued + replayed = sent + rejected + failed + spooled + queue_len + \
             spool_pending: {s:?}"
        );
    } else {
        assert_eq!(
            s.enqueued,
            s.sent + s.rejected + s.failed + s.queue_len,
            "enqueued = sent + rejected + failed + queue_len: {s:?}"
        );
    }
    assert_eq!(
        (s.queue_len, s.in_flight, s.queue_bytes),
        (0, 0, 0),
        "{s:?}"
    );
    assert_eq!(
        s.dropped_shutdown, 0,
        "the close deadline is generous: {s:?}"
    );
    // Every call's status matches the counters.
    assert_eq!(calls.closed, 0, "no call raced close");
    assert_eq!(
        calls.ok + calls.queue_full + calls.too_large + calls.invalid,
        events
    );
    assert_eq!(calls.ok, s.enqueued, "OK events == enqueued: {s:?}");
    assert_eq!(
        calls.too_large, s.dropped_too_large,
        "TOO_LARGE == dropped_too_large: {s:?}"
    );
    assert_eq!(
        calls.invalid, s.dropped_invalid,
        "INVALID_ARGUMENT == dropped_invalid: {s:?}"
    );
    assert!(calls.too_large > 0 && calls.invalid > 0, "{calls:?}");
    // The errors read are all there were.
    assert_eq!(s.errors_overwritten, 0, "the drainer kept up: {s:?}");

    // The mock holds what the client counted as sent.
    //
    // No fault of the mock stores a batch and then fails to answer (mock/src/lib.rs: every
    // `Fault`, `DownMode::Refuse` and `DownMode::Hang` answers or closes *before*
    // `handle_form`/`handle_import` commit anything; a commit is always followed by
    // Mixpanel's acceptance, or on /import by a partial success naming the refused records);
    // only a kill can fall between a commit and its answer. So an event the mock holds but the client did not count as sent needs an attempt whose
    // answer was lost after the commit: the client timed out (request_timeout_ms, or the
    // last attempt's timeout cut to what is left of the retry budget) or the connection broke
    // between the mock's commit and its answer reaching the client. Such attempts are
    // recorded as delivery errors with HTTP status 0, so the surplus is bounded by the events
    // in them; and a duplicate at the mock is the resend of such an attempt's batch. Without
    // any unanswered attempt both must be exactly zero.
    assert!(
        calls.bad_ns.iter().all(|n| !stored_ns.contains(n)),
        "the mock stored an event it must refuse"
    );
    assert_eq!(m.events as usize, stored.len());
    assert_eq!(stored_ids.len(), stored.len());
    let surplus = m.events.checked_sub(s.sent).unwrap_or_else(|| {
        panic!(
            "the client counted {} sent but the mock holds only {} events",
            s.sent, m.events
        )
    });
    println!(
        "  mock unique - sent = {surplus} (stored, answer lost; bound {})",
        errors.no_answer_events
    );
    assert!(
        surplus <= errors.no_answer_events && surplus <= s.failed + s.rejected,
        "the mock holds {surplus} events more than sent, beyond what unanswered attempts \
         ({}) explain: {s:?} {m:?}",
        errors.no_answer_events
    );
    assert!(
        m.duplicates <= errors.no_answer_events,
        "{} duplicates at the mock, but only {} events were in unanswered attempts",
        m.duplicates,
        errors.no_answer_events
    );
    // The spool's promise. After the drain, every record written was read back (nothing can
    // expire in minutes, and nothing crashed mid-write, so nothing is corrupt), so `spooled`
    // and `replayed` cancel out of the invariant above: every event OK'd at the call ended
    // sent, rejected or failed, and `failed` may only come from the spool's own drops or the
    // close deadline, none of which has a reason to happen here (a 1 GiB spool on a healthy
    // disk, a close with nothing left to do). So OK'd == sent + rejected, and an OK'd event
    // the mock does not hold was refused (by `bad`/`imp_bad` or by a fault's 400/401/413/
    // reject): none was lost. (The resend of an unanswered attempt may come from replay
    // here, with the same `$insert_id`: the surplus and duplicate bounds above hold as they
    // are.)
    let mut missing_good = 0u64;
    if let Some(run) = &spool_run {
        assert_eq!(
            (s.spool_pending, s.spool_records, s.spool_bytes),
            (0, 0, 0),
            "the spool is empty after the drain and close: {s:?}"
        );
        assert!(
            run.left_after_close.is_empty(),
            "a writer that closes with nothing on disk removes its segments and its lock file; \
             left: {:?}",
            run.left_after_close
        );
        assert_eq!(
            s.failed,
            s.dropped_spool_full + s.dropped_spool_error + s.dropped_shutdown,
            "with a spool, failed deliveries are spooled, not failed: {s:?}"
        );
        assert_eq!(
            (s.dropped_spool_full, s.dropped_spool_error, s.failed),
            (0, 0, 0),
            "nothing accepted was given up (1 GiB spool, healthy disk): {s:?}"
        );
        assert!(s.replayed <= s.spooled, "{s:?}");
        assert_eq!(
            (s.spool_expired, s.spool_corrupt),
            (0, 0),
            "no record expired or was damaged: {s:?}"
        );
        assert_eq!(
            s.replayed,
            s.spooled - s.spool_expired - s.spool_corrupt,
            "everything spooled was replayed once drained: {s:?}"
        );
        assert!(
            s.spooled > 0,
            "the chaos put nothing on disk: the spool was not exercised: {s:?}"
        );
        assert_eq!(
            calls.ok,
            s.sent + s.rejected + s.failed,
            "every OK'd event ended sent, rejected or failed: {s:?}"
        );
        let bad: HashSet<u64> = calls.bad_ns.iter().copied().collect();
        let missing: Vec<u64> = calls
            .ok_ns
            .iter()
            .copied()
            .filter(|n| !stored_ns.contains(n))
            .collect();
        missing_good = missing.iter().filter(|n| !bad.contains(n)).count() as u64;
        println!(
            "  OK'd events not at the mock: {} ({} meant to be refused, {missing_good} refused \
             by faults); rejected {}",
            missing.len(),
            missing.len() as u64 - missing_good,
            s.rejected
        );
        assert!(
            missing.len() as u64 <= s.rejected + s.failed,
            "{} OK'd events are not at the mock but only {} were rejected and {} failed: \
             {} lost (the first: {:?}): {s:?} {m:?}",
            missing.len(),
            s.rejected,
            s.failed,
            missing.len() as u64 - s.rejected - s.failed,
            &missing[..missing.len().min(20)]
        );
    }
    // Last, so that every other check has run: QUEUE_FULL counted per event. A `send` array
    // refused while the queue is completely full is counted once by `Queue::precheck`
    // (client.rs `send`), but k times when `Queue::push` refuses it: see
    // `a_send_array_refused_by_a_full_queue_counts_each_event`.
    assert_eq!(
        calls.queue_full,
        s.dropped_queue_full,
        "QUEUE_FULL events == dropped_queue_full: short by {} events; {} of the refused \
         events were in {} send arrays (at most {} short if each such array counted once): {s:?}",
        calls.queue_full.abs_diff(s.dropped_queue_full),
        calls.queue_full_in_arrays,
        calls.queue_full_arrays,
        calls.queue_full_in_arrays - calls.queue_full_arrays,
    );
    let outages = ["long outage", "down (refuse)", "down (hang)"]
        .iter()
        .map(|a| played.actions.get(a).copied().unwrap_or(0))
        .sum::<u64>();
    let kills = played.actions.get("kill and restart").copied().unwrap_or(0);
    if let (Some(run), Ok(path)) = (&spool_run, std::env::var("BULKHEAD_CHAOS_SPOOL_ROW")) {
        let row = format!(
            "| chaos with the disk spool: the same {} fault kinds ({} faults served), {outages} outages and {kills} kills and restarts of the mock, while overflow, failed deliveries and replay use the spool | {events} events, seed {seed}, {:.0} s | `make chaos` | PASS: nothing accepted lost: every OK'd event sent or rejected ({} sent, {} rejected, 0 failed); {} spooled and {} replayed, drained to 0 records and 0 segments {:.0} s after the final flush; {} refused at the call with the hand-off full; mock holds every OK'd event not refused ({missing_good} refused by faults), + {surplus} stored-but-unanswered, {} duplicates |\n",
            FAULT_KINDS,
            m.faults_served,
            wall.as_secs_f64(),
            s.sent,
            s.rejected,
            s.spooled,
            s.replayed,
            run.drain.as_secs_f64(),
            s.dropped_queue_full,
            m.duplicates,
        );
        std::fs::write(&path, row).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    if let (false, Ok(path)) = (spool, std::env::var("BULKHEAD_CHAOS_ROW")) {
        let row = format!(
            "| chaos: {} fault kinds ({} faults served) from 4 threads tracking, sending and importing; {} outages, {} kills and restarts of the mock | {events} events, seed {seed}, {:.0} s | `make chaos` | PASS: every event accounted ({} sent, {} rejected, {} failed, {} dropped by the guard, {} too large, {} invalid, 0 pending); mock unique = sent + {surplus} stored-but-unanswered, {} duplicates; close in deadline |\n",
            FAULT_KINDS,
            m.faults_served,
            outages,
            kills,
            wall.as_secs_f64(),
            s.sent,
            s.rejected,
            s.failed,
            s.dropped_queue_full,
            s.dropped_too_large,
            s.dropped_invalid,
            m.duplicates,
        );
        std::fs::write(&path, row).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    done.store(true, Relaxed);
}

/// The accounting rule the chaos run checks, on its own: a `send` array refused because the
/// queue is full counts each of its events in `dropped_queue_full`, whether the queue is
/// full to the last slot (refused by `Queue::precheck` before parsing) or only too full for
/// the whole array (refused by `Queue::push`).
#[test]
fn a_send_array_refused_by_a_full_queue_counts_each_event() {
    let mock = MockServer::start();
    mock.control().set_down(DownMode::Hang);
    let json = format!(
        r#"{{"token":"test-token","api_host":"{}","log_level":"off","queue_capacity":10,
            "flush_interval_ms":60000,"request_timeout_ms":300,"retry_budget_ms":300}}"#,
        mock.url()
    );
    let c = Client::new(Config::from_json_with_env(&json, |_| None).unwrap()).unwrap();
    let array = |from: u64| {
        let items: Vec<String> = (from..from + 5).map(|n| prebuilt(1, n)).collect();
        format!("[{}]", items.join(","))
    };
    for _ in 0..8 {
        c.track("u", "e", None).unwrap();
    }
    // Room for 2: `push` refuses the 5 of them.
    let e = c.send("events", &array(0), None, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueFull);
    assert_eq!(c.stats().dropped_queue_full, 5, "{:?}", c.stats());
    for _ in 0..2 {
        c.track("u", "e", None).unwrap();
    }
    // No room at all: refused before parsing, by the precheck.
    let e = c.send("events", &array(5), None, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::QueueFull);
    let s = c.stats();
    c.close(Duration::from_secs(30)).unwrap();
    assert_eq!(
        s.dropped_queue_full,
        10,
        "a 5-event send array refused by a full queue counted {} event(s), not 5: {s:?}",
        s.dropped_queue_full - 5
    );
}
