//! `bulkhead-mock`: run the mock Mixpanel ingestion server on 127.0.0.1.
//!
//! Prints `http://127.0.0.1:PORT` on one line of stdout, then serves until SIGTERM/SIGINT
//! (or until stdin reaches EOF with `--exit-on-stdin-eof`).

use std::io::{Read, Write};
use std::time::Duration;

use bulkhead_mock::{bind, serve, Control, DownMode};

const USAGE: &str = "usage: bulkhead-mock [--port N] [--latency-ms N] [--down refuse|hang] \
[--max-body-bytes N] [--no-store] [--exit-on-stdin-eof]

Serves a mock Mixpanel ingestion API (/track /engage /groups /import) on 127.0.0.1 only,
prints http://127.0.0.1:PORT on stdout, and is controlled through /_mock/* endpoints.";

struct Args {
    port: u16,
    latency_ms: u64,
    down: DownMode,
    max_body_bytes: Option<usize>,
    store: bool,
    exit_on_stdin_eof: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        port: 0,
        latency_ms: 0,
        down: DownMode::Up,
        max_body_bytes: None,
        store: true,
        exit_on_stdin_eof: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--port" => {
                a.port = value("--port")?
                    .parse()
                    .map_err(|_| "--port must be 0..65535".to_string())?
            }
            "--latency-ms" => {
                a.latency_ms = value("--latency-ms")?
                    .parse()
                    .map_err(|_| "--latency-ms must be a number".to_string())?
            }
            "--down" => {
                a.down = match value("--down")?.as_str() {
                    "refuse" => DownMode::Refuse,
                    "hang" => DownMode::Hang,
                    "up" => DownMode::Up,
                    m => return Err(format!("--down: unknown mode {m:?} (refuse|hang)")),
                }
            }
            "--max-body-bytes" => {
                let n: usize = value("--max-body-bytes")?
                    .parse()
                    .map_err(|_| "--max-body-bytes must be a number".to_string())?;
                a.max_body_bytes = (n > 0).then_some(n);
            }
            "--no-store" => a.store = false,
            "--exit-on-stdin-eof" => a.exit_on_stdin_eof = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bulkhead-mock: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let listener = match bind(args.port) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bulkhead-mock: cannot bind 127.0.0.1:{}: {e}", args.port);
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().expect("local address");

    let control = Control::new();
    control.set_down(args.down);
    control.set_latency(Duration::from_millis(args.latency_ms));
    control.set_max_body_bytes(args.max_body_bytes);
    control.set_store(args.store);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bulkhead-mock")
        .enable_all()
        .build()
        .expect("tokio runtime");

    let (stdin_tx, stdin_rx) = tokio::sync::oneshot::channel::<()>();
    if args.exit_on_stdin_eof {
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
            let _ = stdin_tx.send(());
        });
    } else {
        std::mem::forget(stdin_tx);
    }

    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "http://{addr}");
            let _ = out.flush();
        }
        let shutdown = async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
                Ok(()) = stdin_rx => {}
            }
        };
        serve(listener, control, shutdown).await;
    });
    // Hung connections are tasks of the runtime: don't wait for them.
    rt.shutdown_timeout(Duration::from_millis(100));
}
