//! The shared library's ELF interface: a SONAME of `libbulkhead.so.<major>`, and nothing but
//! `bulkhead_*` in its dynamic symbol table (build.rs sets both). Linux only; needs `nm` and
//! `readelf` (binutils), which the C compiler the other tests use brings along.

#![cfg(target_os = "linux")]

use std::path::PathBuf;
use std::process::Command;

/// The cdylib cargo built for this test run: in `target/<profile>/deps` beside this test's
/// executable, or copied up to `target/<profile>` by `cargo build`.
fn library() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let found = [Some(deps), deps.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join("libbulkhead.so"))
        .find(|lib| lib.is_file());
    found.unwrap_or_else(|| panic!("libbulkhead.so not found beside {}", exe.display()))
}

fn run(tool: &str, args: &[&str], lib: &PathBuf) -> String {
    let out = Command::new(tool)
        .args(args)
        .arg(lib)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    assert!(
        out.status.success(),
        "{tool} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tool output is UTF-8")
}

#[test]
fn only_the_c_api_is_exported() {
    let lib = library();
    let listing = run("nm", &["-D", "--defined-only"], &lib);
    let names: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert!(names.len() >= 10, "too few exported symbols:\n{listing}");
    let strays: Vec<&&str> = names
        .iter()
        .filter(|n| !n.starts_with("bulkhead_"))
        .collect();
    assert!(
        strays.is_empty(),
        "symbols exported besides bulkhead_*: {strays:?}"
    );
    for needed in [
        "bulkhead_client_new",
        "bulkhead_track",
        "bulkhead_shutdown",
        "bulkhead_version",
    ] {
        assert!(names.contains(&needed), "{needed} is not exported");
    }
}

#[test]
fn soname_carries_the_major_version() {
    let lib = library();
    let dynamic = run("readelf", &["-d"], &lib);
    let want = format!("[libbulkhead.so.{}]", env!("CARGO_PKG_VERSION_MAJOR"));
    assert!(
        dynamic
            .lines()
            .any(|l| l.contains("(SONAME)") && l.contains(&want)),
        "no SONAME {want} in:\n{dynamic}"
    );
}
