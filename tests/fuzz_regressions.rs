//! Every input the fuzzers ever found a failure with (`fuzz/regressions/<target>/`), and
//! the seed corpora (`fuzz/corpus/<target>/`), replayed through the fuzz targets' own
//! checks on the stable toolchain, without libFuzzer: `fuzz/src/` is compiled in here.
//! A failure names the file; `cargo fuzz run <target> <file>` (see `make fuzz`) replays it
//! under the fuzzer.

#[path = "../fuzz/src/lib.rs"]
mod fuzz;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

fn inputs(dir: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(dir)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .collect();
    files.sort();
    files
}

/// Runs `run` on every kept input of `target`; reports each failing file, then fails.
/// One target at a time: the track and send checks share their test-mode clients.
fn replay(target: &str, run: fn(&[u8])) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut files = inputs("regressions", target);
    let seeds = inputs("corpus", target);
    assert!(!seeds.is_empty(), "no seed corpus for {target}");
    files.extend(seeds);
    let failed: Vec<String> = files
        .iter()
        .filter(|file| {
            let data = std::fs::read(file).unwrap();
            std::panic::catch_unwind(|| run(&data)).is_err()
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: failing inputs:\n{}",
        failed.join("\n")
    );
    println!("{target}: {} inputs replayed", files.len());
}

#[test]
fn track_inputs() {
    replay("track", fuzz::track::run);
}

#[test]
fn send_inputs() {
    replay("send", fuzz::send::run);
}

#[test]
fn config_inputs() {
    replay("config", fuzz::config::run);
}

#[test]
fn response_inputs() {
    replay("response", fuzz::response::run);
}

#[test]
fn json_inputs() {
    replay("json", fuzz::json::run);
}
