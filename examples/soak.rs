//! Soak (`make soak`, issue #9; not in CI): a long run at a steady rate with the service
//! flapping, sampling the process's resident memory, threads and open file descriptors every
//! second.
//!
//! The library runs on its default settings (only `api_host` points at the mock) in this
//! process; the mock runs as its own process (`bulkhead-mock --no-store`), so what is sampled
//! is the host and the library alone. The mock is up for `--flap` seconds, then down for as
//! long (refusing and hanging in turn), and so on; the run ends up, then flushes and closes.
//!
//! The run fails (exit 1) when:
//! - resident memory grows past the README's bound (`queue_max_bytes + pool_size × 4.1 MiB +
//!   a few MiB`) over the first sample;
//! - memory, threads or descriptors trend upward: the peak over the last two flap cycles is
//!   above the peak over cycles 2–3 by more than a margin (allocator noise);
//! - an up period ends with the queue not drained (more than one second of traffic pending,
//!   or still dropping in its last third);
//! - an event is unaccounted for, or the mock does not hold exactly what was counted sent.
//!
//! Writes every sample to `--csv` and a chart to `--svg`.
//!
//! Options: `--mock PATH` (required), `--seconds N` (600), `--rate N` (events/s over all
//! producer threads, 20000), `--flap N` (30), `--csv PATH`, `--svg PATH`, `--row PATH` (the
//! README's Reliability row, see scripts/reliability.py).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use bulkhead::{Client, Config, Stats};

const PRODUCERS: u64 = 2;
/// The README's per-request allowance (encoded body, its uncompressed copy, the answer).
const PER_CONSUMER_BYTES: u64 = 4_300_000;
/// The runtime, HTTP clients and allocator slack ("a few MiB" in the README).
const RUNTIME_BYTES: u64 = 8 << 20;
/// How much a later peak may exceed an early one before it counts as a trend.
const RSS_TREND_MARGIN: u64 = 8 << 20;
const THREAD_TREND_MARGIN: u64 = 2;
const FD_TREND_MARGIN: u64 = 4;

struct Args {
    mock: String,
    seconds: u64,
    rate: u64,
    flap: u64,
    csv: String,
    svg: String,
    row: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        mock: String::new(),
        seconds: 600,
        rate: 20_000,
        flap: 30,
        csv: "bench/soak.csv".into(),
        svg: "bench/soak.svg".into(),
        row: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| die(&format!("{flag} needs a value")))
        };
        let number = |v: String| {
            v.parse::<u64>()
                .unwrap_or_else(|_| die(&format!("{flag}: {v:?}")))
        };
        match flag.as_str() {
            "--mock" => a.mock = value(),
            "--seconds" => a.seconds = number(value()),
            "--rate" => a.rate = number(value()),
            "--flap" => a.flap = number(value()).max(1),
            "--csv" => a.csv = value(),
            "--svg" => a.svg = value(),
            "--row" => a.row = Some(value()),
            _ => die(&format!("unknown option {flag}")),
        }
    }
    if a.mock.is_empty() {
        die("--mock PATH (target/release/bulkhead-mock) is required");
    }
    a
}

fn die(msg: &str) -> ! {
    eprintln!("soak: {msg}");
    std::process::exit(2)
}

/// The mock in its own process; it exits when our end of its stdin closes (even if we die).
struct Mock {
    child: Child,
    port: u16,
}

impl Mock {
    fn start(bin: &str) -> Mock {
        let mut child = Command::new(bin)
            .args(["--port", "0", "--no-store", "--exit-on-stdin-eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| die(&format!("cannot start {bin}: {e}")));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("http://127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| die(&format!("the mock printed {line:?}")));
        Mock { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// POST or GET a control endpoint; the answer's body.
    fn control(&self, method: &str, path: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("mock control");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            s,
            "{method} /_mock/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("mock control answer");
        answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default()
    }

    fn set(&self, mode: &str) {
        self.control("POST", &format!("down?mode={mode}"));
    }

    /// The mock's unique events and duplicates.
    fn events(&self) -> (u64, u64) {
        let body = self.control("GET", "stats");
        let v: serde_json::Value = serde_json::from_str(&body).expect("mock stats JSON");
        (
            v["events"].as_u64().unwrap(),
            v["duplicates"].as_u64().unwrap(),
        )
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of /proc/self/status, in its own unit (kB for memory).
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// What a trend check reads from a sample.
type Measure = dyn Fn(&Sample) -> u64;
/// A chart panel: its title, its lines (name, colour, values) and a fixed top (0: automatic).
type Panel<'a> = (&'a str, Vec<(&'a str, &'a str, Vec<f64>)>, f64);

struct Sample {
    t: u64,
    up: bool,
    rss: u64,
    threads: u64,
    fds: u64,
    /// Events offered so far (accepted or refused by the guard).
    offered: u64,
    s: Stats,
    /// Slowest `track` call in this second, in nanoseconds.
    max_track_ns: u64,
}

/// Producer: `rate` events per second, paced against the clock, each call timed.
fn produce(c: &Client, id: u64, rate: u64, stop: &AtomicBool, max_ns: &AtomicU64) {
    let start = Instant::now();
    let mut n = 0u64;
    let props =
        r#"{"plan":"pro","path":"/checkout","items":3,"amount":42.5,"coupon":null,"ab":"b"}"#;
    while !stop.load(Relaxed) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        if n >= due {
            thread::sleep(Duration::from_millis(1));
            continue;
        }
        while n < due {
            let user = format!("user-{id}-{}", n % 1000);
            let t = Instant::now();
            // Refusals (QUEUE_FULL during an outage) are counted by the library.
            let _ = c.track(&user, "Soak", Some(props));
            max_ns.fetch_max(t.elapsed().as_nanos() as u64, Relaxed);
            n += 1;
        }
    }
}

fn main() {
    let args = parse_args();
    let mock = Mock::start(&args.mock);
    let config = format!(
        r#"{{"token":"soak-token","api_host":"{}","log_level":"off"}}"#,
        mock.url()
    );
    let config = Config::from_json_with_env(&config, |_| None).expect("config");
    let (queue_max_bytes, pool_size) = (config.queue_max_bytes as u64, config.pool_size as u64);
    let c = Client::new(config).expect("client");
    let bound = queue_max_bytes + pool_size * PER_CONSUMER_BYTES + RUNTIME_BYTES;

    let stop = AtomicBool::new(false);
    let max_ns = AtomicU64::new(0);
    let mut samples: Vec<Sample> = Vec::new();
    let rss0 = proc_status("VmRSS") * 1024;
    println!(
        "soak: {} s at {} events/s, mock down every other {} s (refuse, then hang), library defaults",
        args.seconds, args.rate, args.flap
    );
    println!(
        "soak: RSS at start {:.1} MiB; bound on growth {:.1} MiB",
        mib(rss0),
        mib(bound)
    );
    let started = Instant::now();
    thread::scope(|s| {
        for id in 0..PRODUCERS {
            let (c, stop, max_ns) = (&c, &stop, &max_ns);
            s.spawn(move || produce(c, id, args.rate / PRODUCERS, stop, max_ns));
        }
        let mut up = true;
        let mut outages = 0u64;
        for t in 1..=args.seconds {
            let next = started + Duration::from_secs(t);
            thread::sleep(next.saturating_duration_since(Instant::now()));
            // Flip after the sample of the period's last second, so each sample is labelled
            // with the mode it was taken in.
            let s = c.stats();
            samples.push(Sample {
                t,
                up,
                rss: proc_status("VmRSS") * 1024,
                threads: proc_status("Threads"),
                fds: open_fds(),
                offered: s.enqueued + s.dropped_queue_full,
                max_track_ns: max_ns.swap(0, Relaxed),
                s,
            });
            if t % 60 == 0 {
                let x = samples.last().unwrap();
                println!(
                    "  t={t:4}s rss {:6.1} MiB threads {:2} fds {:3} queue {:6} sent {:9} dropped {:8}",
                    mib(x.rss),
                    x.threads,
                    x.fds,
                    x.s.queue_len,
                    x.s.sent,
                    x.s.dropped_queue_full
                );
            }
            if t % args.flap == 0 && t < args.seconds {
                up = !up;
                if up {
                    mock.set("up");
                } else {
                    outages += 1;
                    mock.set(if outages % 2 == 1 { "refuse" } else { "hang" });
                }
            }
        }
        stop.store(true, Relaxed);
        if !up {
            mock.set("up");
        }
    });
    let end = Instant::now();
    let flushed = c.flush(Duration::from_secs(120));
    let closed = c.close(Duration::from_secs(30));
    let drain_s = end.elapsed().as_secs_f64();
    let s = c.stats();
    let (mock_events, mock_dups) = mock.events();

    write_csv(&args.csv, &samples);
    write_svg(&args.svg, &samples, args.flap, rss0, bound);

    let mut failures = Vec::new();
    let peak = samples.iter().map(|x| x.rss).max().unwrap_or(0);
    if peak.saturating_sub(rss0) > bound {
        failures.push(format!(
            "RSS grew by {:.1} MiB, past the bound of {:.1} MiB",
            mib(peak - rss0),
            mib(bound)
        ));
    }
    let cycle = 2 * args.flap;
    let cycles = args.seconds / cycle;
    if cycles >= 5 {
        let window = |from: u64, to: u64, f: &dyn Fn(&Sample) -> u64| {
            samples
                .iter()
                .filter(|x| x.t > from * cycle && x.t <= to * cycle)
                .map(f)
                .max()
                .unwrap_or(0)
        };
        let trends: [(&str, &Measure, u64); 3] = [
            ("RSS", &|x| x.rss, RSS_TREND_MARGIN),
            ("threads", &|x| x.threads, THREAD_TREND_MARGIN),
            ("open fds", &|x| x.fds, FD_TREND_MARGIN),
        ];
        for (name, f, margin) in trends {
            let early = window(1, 3, f);
            let late = window(cycles - 2, cycles, f);
            println!("soak: {name} peak in cycles 2-3: {early}; in the last two: {late}");
            if late > early + margin {
                failures.push(format!(
                    "{name} trends upward: peak {early} early, {late} late"
                ));
            }
        }
    } else {
        println!("soak: fewer than 5 flap cycles; no trend check");
    }
    // Every up period ends drained: at most a second of traffic pending, and no drops in its
    // last third.
    for period in samples
        .chunk_by(|a, b| a.up == b.up)
        .filter(|p| p[0].up)
        .skip(1)
    {
        let last = period.last().unwrap();
        let third = &period[period.len() * 2 / 3..];
        let dropped_late = last.s.dropped_queue_full - third[0].s.dropped_queue_full;
        if last.s.queue_len > args.rate || dropped_late > 0 {
            failures.push(format!(
                "the up period ending at {} s did not drain: queue {} and {} dropped in its last third",
                last.t, last.s.queue_len, dropped_late
            ));
        }
    }
    let accounted = s.sent + s.rejected + s.failed + s.queue_len;
    if s.enqueued != accounted || s.queue_len != 0 || s.in_flight != 0 {
        failures.push(format!("unaccounted events: {s:?}"));
    }
    if mock_events != s.sent || mock_dups != 0 {
        failures.push(format!(
            "the mock holds {mock_events} events ({mock_dups} duplicates), the client counted {} sent",
            s.sent
        ));
    }
    if flushed.is_err() || closed.is_err() {
        failures.push(format!("final flush {flushed:?}, close {closed:?}"));
    }

    let wall = samples.len() as f64;
    let max_track = samples.iter().map(|x| x.max_track_ns).max().unwrap_or(0);
    println!(
        "soak: {:.0} s, offered {} ({:.0}/s): sent {} dropped_queue_full {} failed {} rejected {}; \
         mock unique {} duplicates {}; final flush+close {:.1} s",
        wall,
        s.enqueued + s.dropped_queue_full,
        (s.enqueued + s.dropped_queue_full) as f64 / wall,
        s.sent,
        s.dropped_queue_full,
        s.failed,
        s.rejected,
        mock_events,
        mock_dups,
        drain_s
    );
    println!(
        "soak: RSS start {:.1} MiB, peak {:.1} MiB (growth {:.1} of {:.1} MiB allowed); threads max {}; fds max {}; slowest track {:.1} µs",
        mib(rss0),
        mib(peak),
        mib(peak.saturating_sub(rss0)),
        mib(bound),
        samples.iter().map(|x| x.threads).max().unwrap_or(0),
        samples.iter().map(|x| x.fds).max().unwrap_or(0),
        max_track as f64 / 1000.0
    );
    println!("soak: wrote {} and {}", args.csv, args.svg);
    if let Some(path) = &args.row {
        let verdict = if failures.is_empty() {
            "PASS".to_string()
        } else {
            format!("FAIL: {}", failures.join("; "))
        };
        let row = format!(
            "| soak: service down every other {} s (refusing, then hanging), library defaults | {:.0} s, {} events offered at {:.0}/s | `make soak` | {verdict}: {} sent, mock unique {mock_events}, {mock_dups} duplicates, {} dropped by the guard, {} unaccounted; RSS growth {:.1} MiB (bound {:.1}); threads ≤ {}, fds ≤ {}, no upward trend; close in {:.1} s |\n",
            args.flap,
            wall,
            s.enqueued + s.dropped_queue_full,
            (s.enqueued + s.dropped_queue_full) as f64 / wall,
            s.sent,
            s.dropped_queue_full,
            s.enqueued.abs_diff(accounted),
            mib(peak.saturating_sub(rss0)),
            mib(bound),
            samples.iter().map(|x| x.threads).max().unwrap_or(0),
            samples.iter().map(|x| x.fds).max().unwrap_or(0),
            drain_s
        );
        std::fs::write(path, row).unwrap_or_else(|e| die(&format!("{path}: {e}")));
    }
    if failures.is_empty() {
        println!("soak: PASS");
    } else {
        for f in &failures {
            println!("soak: FAIL: {f}");
        }
        std::process::exit(1);
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn write_csv(path: &str, samples: &[Sample]) {
    let mut out = String::from(
        "t_s,service,rss_bytes,threads,open_fds,offered,enqueued,sent,dropped_queue_full,failed,queue_len,queue_bytes,in_flight,circuit,max_track_ns\n",
    );
    for x in samples {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{:?},{}",
            x.t,
            if x.up { "up" } else { "down" },
            x.rss,
            x.threads,
            x.fds,
            x.offered,
            x.s.enqueued,
            x.s.sent,
            x.s.dropped_queue_full,
            x.s.failed,
            x.s.queue_len,
            x.s.queue_bytes,
            x.s.in_flight,
            x.s.circuit_state,
            x.max_track_ns
        );
    }
    std::fs::write(path, out).unwrap_or_else(|e| die(&format!("{path}: {e}")));
}

/// Two panels over time, outages shaded: RSS growth against the bound, and the queue depth
/// with threads and descriptors.
fn write_svg(path: &str, samples: &[Sample], flap: u64, rss0: u64, bound: u64) {
    let (w, panel_h, left, top) = (900.0, 220.0, 70.0, 30.0);
    let plot_w = w - left - 20.0;
    let t_max = samples.len().max(1) as f64;
    let x = |t: u64| left + plot_w * t as f64 / t_max;
    let mut svg = String::new();
    let height = top + 2.0 * (panel_h + 50.0) + 10.0;
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{left}" y="18" font-size="14">bulkhead soak: {} s, service down every other {flap} s (shaded), library defaults</text>"#,
        samples.len()
    );
    let panels: [Panel; 2] = [
        (
            "RSS growth (MiB); dashed: the README's bound",
            vec![(
                "RSS",
                "#1f77b4",
                samples
                    .iter()
                    .map(|s| mib(s.rss.saturating_sub(rss0)))
                    .collect(),
            )],
            mib(bound) * 1.1,
        ),
        (
            "queue depth (events, left) · threads, open fds (×1000)",
            vec![
                (
                    "queue",
                    "#d62728",
                    samples.iter().map(|s| s.s.queue_len as f64).collect(),
                ),
                (
                    "threads×1000",
                    "#2ca02c",
                    samples.iter().map(|s| s.threads as f64 * 1000.0).collect(),
                ),
                (
                    "fds×1000",
                    "#9467bd",
                    samples.iter().map(|s| s.fds as f64 * 1000.0).collect(),
                ),
            ],
            0.0,
        ),
    ];
    for (i, (title, lines, fixed_max)) in panels.iter().enumerate() {
        let y0 = top + i as f64 * (panel_h + 50.0) + 20.0;
        let y_max = if *fixed_max > 0.0 {
            *fixed_max
        } else {
            lines
                .iter()
                .flat_map(|(_, _, v)| v.iter().copied())
                .fold(1.0, f64::max)
                * 1.1
        };
        let y = |v: f64| y0 + panel_h - panel_h * v / y_max;
        for x_down in samples.chunk_by(|a, b| a.up == b.up).filter(|p| !p[0].up) {
            let (a, b) = (x(x_down[0].t - 1), x(x_down.last().unwrap().t));
            let _ = writeln!(
                svg,
                r##"<rect x="{a:.1}" y="{y0}" width="{:.1}" height="{panel_h}" fill="#eeeeee"/>"##,
                b - a
            );
        }
        let _ = writeln!(
            svg,
            r##"<rect x="{left}" y="{y0}" width="{plot_w}" height="{panel_h}" fill="none" stroke="#888"/>"##
        );
        let _ = writeln!(svg, r#"<text x="{left}" y="{}">{title}</text>"#, y0 - 6.0);
        for k in 0..=4 {
            let v = y_max * k as f64 / 4.0;
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{:.0}</text>"#,
                left - 6.0,
                y(v) + 4.0,
                v
            );
        }
        if i == 0 {
            let _ = writeln!(
                svg,
                r##"<line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#000" stroke-dasharray="6,4"/>"##,
                left + plot_w,
                y(mib(bound)),
                y(mib(bound))
            );
        }
        for (j, (name, color, values)) in lines.iter().enumerate() {
            let points: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(k, v)| format!("{:.1},{:.1}", x(k as u64 + 1), y(*v)))
                .collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
                points.join(" ")
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" fill="{color}">{name}</text>"#,
                left + plot_w - 110.0,
                y0 + 16.0 + 14.0 * j as f64
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds</text>"#,
            left + plot_w / 2.0,
            y0 + panel_h + 30.0
        );
        for k in 0..=6 {
            let t = (t_max * k as f64 / 6.0) as u64;
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t}</text>"#,
                x(t),
                y0 + panel_h + 15.0
            );
        }
    }
    svg.push_str("</svg>\n");
    std::fs::write(path, svg).unwrap_or_else(|e| die(&format!("{path}: {e}")));
}
