//! The C API as C and C++ programs see it (the wasmtime pattern: a plain cargo test compiles
//! C against the library this test run built, runs it, and checks the result).
//!
//! Each program in `bindings/c/tests/` is compiled twice: as C99 (`-pedantic`) linked to
//! the shared library, and as C++11 linked to the static library. Each build runs against
//! its own in-process mock ingestion server, must exit 0 (every `CHECK` in the program
//! held), and then the mock is inspected for what actually arrived on the wire.
//!
//! Set `CC`/`CXX` to use other compilers. Nothing here asserts a duration.
//!
//! Hooks for `make memcheck` and `make asan` (read here, never passed to the programs):
//! `BULKHEAD_C_TEST_CFLAGS` adds compiler flags (`-fsanitize=address`),
//! `BULKHEAD_C_TEST_WRAPPER` runs each program under a command (`valgrind ...`; `{name}`
//! in it becomes the program's file name), `BULKHEAD_C_TEST_SKIP` names programs (by
//! file stem, comma-separated) to leave out, each printed as skipped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use bulkhead_mock::{DownMode, Fault, MockServer};
use serde_json::{json, Value};

/// The token the C helper header configures (`BH_TOKEN`).
const TOKEN: &str = "c-test-token";
/// A program still running after this long is stuck (a hang is a failure, not a timing).
const WATCHDOG: Duration = Duration::from_secs(300);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// How a test program is linked to the library.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Shared,
    Static,
}

/// The directory holding the library artifacts cargo built for this run. Cargo leaves the
/// cdylib and staticlib of a dependency in `target/<profile>/deps` (next to this test's
/// executable) and only copies them up to `target/<profile>` for `cargo build`.
fn lib_dir(file: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    let found = [deps, deps.parent()?]
        .into_iter()
        .find(|d| d.join(file).is_file())
        .map(Path::to_path_buf);
    found
}

/// Link flags for one mode, or `None` when cargo did not build that artifact.
fn link_args(link: Link) -> Option<Vec<String>> {
    match link {
        Link::Shared => {
            let dir = lib_dir("libbulkhead.so")?;
            let dir = dir.display();
            Some(vec![
                format!("-L{dir}"),
                "-lbulkhead".into(),
                format!("-Wl,-rpath,{dir}"),
                "-lpthread".into(),
            ])
        }
        Link::Static => {
            let dir = lib_dir("libbulkhead.a")?;
            Some(vec![
                // Back to "guess the language from the suffix" after `-x c++`.
                "-x".into(),
                "none".into(),
                dir.join("libbulkhead.a").display().to_string(),
                "-lpthread".into(),
                "-ldl".into(),
                "-lm".into(),
                "-lrt".into(),
            ])
        }
    }
}

/// A compiled test program.
struct Program {
    label: String,
    exe: PathBuf,
}

/// Compiles `source` (relative to the repository) as C99 against the shared library and
/// as C++11 against the static library, warnings as errors. Panics with the compiler's
/// output on failure. Falls back to the other artifact if one of them was not built.
fn compile(source: &str) -> Vec<Program> {
    let src = root().join(source);
    let stem = src.file_stem().unwrap().to_string_lossy().to_string();
    if skipped(&stem) {
        println!("{stem}: skipped (BULKHEAD_C_TEST_SKIP)");
        return Vec::new();
    }
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c_api");
    std::fs::create_dir_all(&out_dir).unwrap();
    let shared = link_args(Link::Shared);
    let stat = link_args(Link::Static);
    assert!(
        shared.is_some() || stat.is_some(),
        "neither libbulkhead.so nor libbulkhead.a was found next to {:?}",
        std::env::current_exe().ok()
    );
    let (c_link, cxx_link) = match (shared, stat) {
        (Some(s), Some(a)) => (s, a),
        (Some(s), None) => (s.clone(), s),
        (None, Some(a)) => (a.clone(), a),
        (None, None) => unreachable!(),
    };
    let include = format!("-I{}", root().join("include").display());
    let helpers = format!("-I{}", root().join("bindings/c/tests").display());
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let builds = [
        (
            "c99",
            cc,
            vec!["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"],
            c_link,
        ),
        (
            "c++11",
            cxx,
            vec!["-x", "c++", "-std=c++11", "-Wall", "-Wextra", "-Werror"],
            cxx_link,
        ),
    ];
    builds
        .into_iter()
        .map(|(label, compiler, flags, link)| {
            let exe = out_dir.join(format!("{stem}-{}", label.replace('+', "x")));
            let output = Command::new(&compiler)
                .args(&flags)
                .arg("-g")
                .args(hook_words("BULKHEAD_C_TEST_CFLAGS"))
                .arg(&include)
                .arg(&helpers)
                .arg(&src)
                .arg("-o")
                .arg(&exe)
                .args(&link)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
            assert!(
                output.status.success(),
                "{compiler} {label} failed on {source}:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            Program {
                label: format!("{stem} ({label})"),
                exe,
            }
        })
        .collect()
}

/// The whitespace-separated words of a hook variable (none when unset).
fn hook_words(var: &str) -> Vec<String> {
    std::env::var(var)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Whether `BULKHEAD_C_TEST_SKIP` names the program `stem`.
fn skipped(stem: &str) -> bool {
    std::env::var("BULKHEAD_C_TEST_SKIP")
        .unwrap_or_default()
        .split(',')
        .any(|s| s.trim() == stem)
}

/// Runs `program` with `args`, without any `BULKHEAD_*` environment that could change
/// its configuration; panics unless it exits 0. Returns its stdout.
fn run(program: &Program, args: &[&str]) -> String {
    run_driven(program, args, None)
}

/// Answers a program that asks its driver for something: called with each line the
/// program writes to stdout; a returned line is written to its stdin.
type Driver<'a> = &'a mut dyn FnMut(&str) -> Option<String>;

/// As [`run`]; with a `driver`, the program's stdin is a pipe the driver answers on (else
/// it is /dev/null).
fn run_driven(program: &Program, args: &[&str], mut driver: Option<Driver<'_>>) -> String {
    let name = program
        .exe
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let wrapper: Vec<String> = hook_words("BULKHEAD_C_TEST_WRAPPER")
        .into_iter()
        .map(|w| w.replace("{name}", &name))
        .collect();
    let mut cmd = match wrapper.split_first() {
        Some((tool, tool_args)) => {
            let mut cmd = Command::new(tool);
            cmd.args(tool_args).arg(&program.exe);
            cmd
        }
        None => Command::new(&program.exe),
    };
    cmd.args(args)
        .stdin(if driver.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("BULKHEAD_") {
            cmd.env_remove(key);
        }
    }
    // cargo points LD_LIBRARY_PATH at target/<profile>, which wins over the program's
    // RUNPATH: a stale libbulkhead.so left there by an earlier `cargo build` would be
    // tested instead of the one this run built.
    cmd.env_remove("LD_LIBRARY_PATH");
    // Its own process group, so that a process it forked and lost (a hung child of a fork
    // test) is killed with it instead of holding its output pipes open forever.
    cmd.process_group(0);
    let mut child = cmd.spawn().unwrap();
    let group = child.id() as i32;
    let kill_group = || {
        // SAFETY: kill has no memory preconditions; a negative pid names the group.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    };
    // Read both pipes while it runs: a program that writes more than a pipe holds (log
    // lines on stderr) must not block on a reader that waits for it to exit.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).to_string()
        })
    };
    // Stdout line by line, handed to the driver as it comes.
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let out = child.stdout.take().map(|pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let mut reader = std::io::BufReader::new(pipe);
            let mut line = Vec::new();
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let decoded = String::from_utf8_lossy(&line).to_string();
                text.push_str(&decoded);
                let _ = lines_tx.send(decoded.trim_end_matches('\n').to_string());
                line.clear();
            }
            text
        })
    });
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let mut stdin = child.stdin.take();
    let started = Instant::now();
    let status = loop {
        match lines.recv_timeout(Duration::from_millis(20)) {
            Ok(line) => {
                if let (Some(driver), Some(pipe)) = (driver.as_mut(), stdin.as_mut()) {
                    if let Some(answer) = driver(&line) {
                        // A program that died meanwhile fails below, with its output.
                        let _ = writeln!(pipe, "{answer}").and_then(|()| pipe.flush());
                    }
                }
            }
            // Its stdout is closed: nothing more to answer.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > WATCHDOG {
            kill_group();
            let _ = child.wait();
            panic!("{} is stuck: killed after {WATCHDOG:?}", program.label);
        }
    };
    drop(stdin);
    kill_group();
    let stdout = out.map(|t| t.join().unwrap()).unwrap_or_default();
    let stderr = err.join().unwrap();
    println!("--- {} ---\n{stdout}{stderr}", program.label);
    assert!(
        status.success(),
        "{} failed ({status}):\n{stdout}\n{stderr}",
        program.label
    );
    stdout
}

/// Compiles `source`, and for each build starts a fresh mock, lets `setup` script it, runs
/// the program with the mock's URL, and hands the mock and stdout to `check`.
fn each_build(
    source: &str,
    setup: impl Fn(&MockServer),
    check: impl Fn(&Program, &MockServer, &str),
) {
    for program in compile(source) {
        let mock = MockServer::start();
        setup(&mock);
        let stdout = run(&program, &[&mock.url()]);
        check(&program, &mock, &stdout);
    }
}

/// Events by name.
fn by_name(events: &[Value]) -> BTreeMap<String, Vec<&Value>> {
    let mut map: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in events {
        let name = e["event"].as_str().unwrap_or("<none>").to_string();
        map.entry(name).or_default().push(e);
    }
    map
}

/// The only event named `name`.
fn one<'a>(events: &'a BTreeMap<String, Vec<&'a Value>>, name: &str) -> &'a Value {
    let found = events
        .get(name)
        .unwrap_or_else(|| panic!("no event {name:?}"));
    assert_eq!(found.len(), 1, "events named {name:?}: {found:?}");
    &found[0]["properties"]
}

fn insert_id(props: &Value) -> &str {
    let id = props["$insert_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no $insert_id in {props}"));
    assert!(bulkhead::valid_insert_id(id), "bad $insert_id {id:?}");
    id
}

/// A `key=value` number from a line of the program's output starting with `prefix`.
fn reported(stdout: &str, prefix: &str, key: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{stdout}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

#[test]
fn bad_input_is_refused_with_documented_statuses() {
    each_build(
        "bindings/c/tests/bad_input.c",
        |_| {},
        |p, mock, _| {
            // Only the two valid events reached the server; nothing refused leaked out.
            let events = mock.events();
            let names: Vec<_> = events.iter().map(|e| e["event"].clone()).collect();
            assert_eq!(
                names,
                vec![json!("valid event"), json!("after shutdown")],
                "{}",
                p.label
            );
            assert_eq!(events[0]["properties"]["k"], 1);
            assert!(mock.updates().is_empty());
            let s = mock.stats();
            assert_eq!((s.events, s.duplicates, s.rejected), (2, 0, 0));
            assert!(mock.requests().iter().all(|r| r.path == "/track"));
        },
    );
}

#[test]
fn every_endpoint_and_message_shape_arrives() {
    each_build(
        "bindings/c/tests/wire_shapes.c",
        |_| {},
        |p, mock, _| {
            let events = mock.events();
            assert_eq!(events.len(), 11, "{}: {events:#?}", p.label);
            let named = by_name(&events);
            let mut ids = HashSet::new();
            for e in &events {
                let props = &e["properties"];
                assert_eq!(props["token"], TOKEN, "{e}");
                assert!(
                    ids.insert(insert_id(props).to_string()),
                    "repeated id in {e}"
                );
                // Every event has a time, including prebuilt ones that came without one
                // (the "batch" array below): it is fixed before the first attempt.
                assert!(props["time"].is_number(), "{e}");
            }

            let signed = one(&named, "Signed up");
            assert_eq!(signed["distinct_id"], "u1");
            assert_eq!(signed["plan"], "pro");
            assert_eq!(signed["n"], 3);
            assert_eq!(signed["nested"], json!({"a": [1, 2]}));
            assert_eq!(signed["mp_lib"], bulkhead::LIB_NAME);
            assert_eq!(signed["$lib_version"], bulkhead::LIB_VERSION);

            // The caller's values win, except for the token.
            let caller = one(&named, "Caller ids");
            assert_eq!(caller["$insert_id"], "caller-id-1");
            assert_eq!(caller["time"], 4_102_444_800_000u64);
            assert_eq!(caller["distinct_id"], "override");

            let old = one(&named, "Old event");
            assert_eq!(old["time"], 1_500_000_000_000u64);
            assert_eq!(old["distinct_id"], "u2");
            assert_eq!(old["src"], "import");

            assert_eq!(one(&named, "py event")["distinct_id"], "u3");
            let ruby = one(&named, "ruby event");
            assert_eq!(ruby["distinct_id"], "u4");
            assert_eq!(ruby["mp_lib"], "ruby");
            assert_eq!(ruby["$lib_version"], "2.3.1");
            assert_eq!(one(&named, "py import")["$insert_id"], "py-import-1");
            assert_eq!(one(&named, "py secret import")["distinct_id"], "u8");
            assert_eq!(one(&named, "ruby import")["distinct_id"], "u9");
            let batch: HashSet<_> = named["batch"]
                .iter()
                .map(|e| e["properties"]["distinct_id"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(batch, HashSet::from(["b1", "b2", "b3"].map(String::from)));

            // Updates: 6 built by the library, 4 passed through from SDK-shaped JSON.
            let updates = mock.updates();
            assert_eq!(updates.len(), 10, "{updates:#?}");
            assert!(updates.iter().all(|u| u["$token"] == TOKEN));
            let find = |pred: &dyn Fn(&Value) -> bool| -> Value {
                let found: Vec<_> = updates.iter().filter(|u| pred(u)).collect();
                assert_eq!(found.len(), 1, "{found:?} in {updates:#?}");
                found[0].clone()
            };
            let u1 =
                |op: &'static str| move |u: &Value| u["$distinct_id"] == "u1" && !u[op].is_null();
            assert_eq!(find(&u1("$set"))["$set"], json!({"$email": "a@b.c"}));
            assert_eq!(find(&u1("$add"))["$add"], json!({"visits": 1}));
            assert_eq!(find(&u1("$unset"))["$unset"], json!(["gone"]));
            assert!(find(&u1("$delete")).get("$delete").is_some());
            assert!(find(&u1("$set"))["$time"].is_number());
            let acme = |op: &'static str| {
                move |u: &Value| {
                    u["$group_key"] == "company" && u["$group_id"] == "acme" && !u[op].is_null()
                }
            };
            assert_eq!(find(&acme("$set"))["$set"], json!({"size": 5}));
            assert_eq!(find(&acme("$union"))["$union"], json!({"tags": ["a"]}));
            assert_eq!(
                find(&|u| u["$distinct_id"] == "u5")["$set"],
                json!({"py": true})
            );
            assert_eq!(
                find(&|u| u["$distinct_id"] == "u6")["$set"],
                json!({"$name": "x"})
            );
            assert_eq!(
                find(&|u| u["$group_id"] == "py-co")["$set"],
                json!({"n": 1})
            );
            assert_eq!(
                find(&|u| u["$group_id"] == "rb-co")["$set"],
                json!({"size": 5})
            );

            // Requests: the right paths, profile APIs never gzipped, /import credentials.
            let requests = mock.requests();
            let mut by_path: HashMap<&str, usize> = HashMap::new();
            let mut import_users: BTreeMap<String, usize> = BTreeMap::new();
            for r in &requests {
                assert_eq!(r.method, "POST");
                assert_eq!(r.status, 200, "{r:?}");
                *by_path.entry(r.path.as_str()).or_default() += r.records;
                match r.path.as_str() {
                    "/engage" | "/groups" => assert_eq!(r.content_encoding, None, "{r:?}"),
                    "/import" => {
                        assert!(r.query.contains("strict=1"), "{r:?}");
                        let user = r.auth_username.clone().expect("Basic auth on /import");
                        *import_users.entry(user).or_default() += r.records;
                    }
                    "/track" => {}
                    other => panic!("unexpected path {other}"),
                }
            }
            assert_eq!(by_path.get("/track"), Some(&7));
            assert_eq!(by_path.get("/import"), Some(&4));
            assert_eq!(by_path.get("/engage"), Some(&6));
            assert_eq!(by_path.get("/groups"), Some(&4));
            let expected: BTreeMap<String, usize> = [
                ("c-secret", 1),  // bulkhead_import: the client's api_secret
                ("py-key", 1),    // send_with_credentials(api_key)
                ("py-secret", 1), // send_with_credentials(api_key, api_secret): the secret
                ("rb-key", 1),    // the mixpanel-ruby envelope's api_key
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
            assert_eq!(import_users, expected);
        },
    );
}

#[test]
fn fork_children_deliver_their_own_events_exactly_once() {
    each_build(
        "bindings/c/tests/fork.c",
        // A little latency keeps requests in flight when the program forks.
        |mock| mock.set_latency(Duration::from_millis(5)),
        |p, mock, stdout| {
            let expected: BTreeMap<String, u64> = ["parent", "parent-bg", "child", "grandchild"]
                .into_iter()
                .map(|k| (k.to_string(), reported(stdout, "counts ", k)))
                .collect();
            let total: u64 = expected.values().sum();
            let s = mock.stats();
            assert_eq!(s.duplicates, 0, "{}: an event was delivered twice", p.label);
            assert_eq!(s.events, total, "{}: {s:?}", p.label);
            let events = mock.events();
            let named = by_name(&events);
            let mut ids = HashSet::new();
            for (name, want) in &expected {
                let got = named.get(name).map_or(&[][..], Vec::as_slice);
                assert_eq!(got.len() as u64, *want, "{}: events named {name}", p.label);
                // Each index exactly once: nothing lost, nothing repeated.
                let distinct: HashSet<_> = got
                    .iter()
                    .map(|e| e["properties"]["distinct_id"].as_str().unwrap().to_string())
                    .collect();
                assert_eq!(distinct.len() as u64, *want, "{}: {name}", p.label);
                // All of one kind came from one process.
                let pids: HashSet<_> = got.iter().map(|e| e["properties"]["pid"].clone()).collect();
                if name != "parent-bg" {
                    assert_eq!(pids.len(), 1, "{}: {name} from {pids:?}", p.label);
                }
            }
            // Insert ids never repeat across the processes (the child reseeds).
            for e in &events {
                assert!(
                    ids.insert(insert_id(&e["properties"]).to_string()),
                    "{}: repeated $insert_id in {e}",
                    p.label
                );
            }
            let pid = |name: &str| named[name][0]["properties"]["pid"].clone();
            assert_ne!(pid("parent"), pid("child"));
            assert_ne!(pid("child"), pid("grandchild"));
        },
    );
}

/// Issue 7.1: no child hangs at exit or starts threads to free an unused client, however
/// the fork lands among threads that track, make clients and shut down.
#[test]
fn forks_among_busy_threads_never_hang_a_child() {
    each_build(
        "bindings/c/tests/fork_stress.c",
        |mock| mock.set_latency(Duration::from_millis(2)),
        |p, mock, stdout| {
            assert_eq!(reported(stdout, "forks=", "hung"), 0, "{}", p.label);
            assert_eq!(reported(stdout, "forks=", "failed"), 0, "{}", p.label);
            // Every event of parent and children arrived once: the mock holds what the
            // clients counted sent, plus at most what they gave up on with a request under
            // way (a shutdown's deadline can cut one off after the mock stored it).
            let events = mock.events();
            let by = by_name(&events);
            let ids: HashSet<&str> = events.iter().map(|e| insert_id(&e["properties"])).collect();
            assert_eq!(ids.len(), events.len(), "{}: an $insert_id twice", p.label);
            assert_eq!(
                mock.stats().duplicates,
                0,
                "{}: a batch delivered twice",
                p.label
            );
            for name in [
                "stress",
                "churn",
                "parent",
                "steady",
                "churn-steady",
                "parent-steady",
                "child",
            ] {
                let held = by.get(name).map_or(0, Vec::len) as u64;
                let sent = reported(stdout, "sent ", name);
                let unsure = reported(stdout, "unsure ", name);
                assert!(
                    sent <= held && held <= sent + unsure,
                    "{}: the mock holds {held} {name:?} events; the clients counted {sent} sent \
                     and {unsure} given up",
                    p.label
                );
            }
            for name in ["steady", "churn-steady", "parent-steady", "child"] {
                assert!(
                    reported(stdout, "sent ", name) > 0,
                    "{}: no {name:?} delivered",
                    p.label
                );
            }
            // `make fork-storms`: this build's row of the README's Reliability table.
            if let Ok(dir) = std::env::var("BULKHEAD_RELIABILITY_DIR") {
                let total = |line: &str| -> u64 {
                    stdout
                        .lines()
                        .find(|l| l.starts_with(line))
                        .map(|l| {
                            l.split_whitespace()
                                .filter_map(|w| w.split_once('=')?.1.parse::<u64>().ok())
                                .sum()
                        })
                        .unwrap_or(0)
                };
                let row = format!(
                    "| fork storm from C ({}): {} forks (300 one at a time, then waves of 20 alive at once) \
                     while parent threads track through a slow mock, make and close clients and call \
                     `bulkhead_shutdown` every 3 ms | {} events held by the mock | `make fork-storms` | \
                     PASS: 0 hung, 0 failed children; every event arrived once or was counted given up \
                     by its client ({} sent, {} given up), 0 duplicates |\n",
                    p.label,
                    reported(stdout, "forks=", "forks"),
                    events.len(),
                    total("sent "),
                    total("unsure "),
                );
                let file = if p.label.contains("c++") {
                    "fork-cxx.md"
                } else {
                    "fork-c.md"
                };
                std::fs::write(Path::new(&dir).join(file), row).unwrap();
            }
        },
    );
}

/// The log callback is never called on a host thread from the hot path.
#[test]
fn the_log_callback_never_runs_on_a_tracking_thread() {
    each_build(
        "bindings/c/tests/log_threads.c",
        |mock| mock.set_down(DownMode::Hang),
        |p, _, stdout| assert!(stdout.contains("log_threads: ok"), "{}", p.label),
    );
}

#[test]
fn errors_buffer_protocol() {
    each_build(
        "bindings/c/tests/errors_buffer.c",
        |mock| mock.push_fault(Fault::status(400)),
        |p, mock, _| {
            let names: Vec<_> = mock.events().iter().map(|e| e["event"].clone()).collect();
            assert_eq!(names, vec![json!("accepted")], "{}", p.label);
            let statuses: Vec<_> = mock.requests().iter().map(|r| r.status).collect();
            assert_eq!(statuses, vec![400, 200]);
        },
    );
}

#[test]
fn hung_server_cannot_hang_flush_close_or_shutdown() {
    each_build(
        "bindings/c/tests/hang_close.c",
        |mock| mock.set_down(DownMode::Hang),
        |p, mock, _| {
            let s = mock.stats();
            assert_eq!(s.events, 0, "{}", p.label);
            assert!(s.requests >= 1, "{}: the client did try: {s:?}", p.label);
        },
    );
}

#[test]
fn threads_and_faults_keep_every_event_accounted() {
    each_build(
        "bindings/c/tests/threads_faults.c",
        |mock| {
            for _ in 0..3 {
                mock.push_fault(Fault::status(503));
            }
            mock.push_fault(Fault::Drop);
            mock.push_fault(Fault::Reject {
                error: "scripted rejection".into(),
            });
            mock.push_fault(Fault::status(400));
        },
        |p, mock, stdout| {
            let sent = reported(stdout, "final ", "sent");
            let rejected = reported(stdout, "final ", "rejected");
            assert_eq!(sent + rejected, 10_000, "{}", p.label);
            assert!(rejected > 0);
            let s = mock.stats();
            assert_eq!(
                s.events, sent,
                "{}: the server's unique events = sent",
                p.label
            );
            assert_eq!(mock.pending_faults(), 0, "every scripted fault was hit");
            assert_eq!(s.faults_served, 6);
        },
    );
}

#[test]
fn quickstart_example_runs() {
    each_build(
        "bindings/c/examples/quickstart.c",
        |_| {},
        |p, mock, _| {
            let events = mock.events();
            assert_eq!(events.len(), 1, "{}", p.label);
            assert_eq!(events[0]["event"], "Signed up");
            assert_eq!(events[0]["properties"]["plan"], "pro");
            assert_eq!(mock.updates().len(), 1);
        },
    );
}

/// The benchmark is not run here (it measures time); it must keep compiling.
#[test]
fn bench_program_compiles() {
    assert_eq!(compile("bindings/c/bench/bench.c").len(), 2);
}

#[test]
fn mixpanel_limits_refuse_locally_and_count_every_event() {
    each_build(
        "bindings/c/tests/limits.c",
        |_| {},
        |p, mock, _| {
            let names: Vec<_> = mock.events().iter().map(|e| e["event"].clone()).collect();
            assert_eq!(names, vec![json!("valid")], "{}", p.label);
        },
    );
}

#[test]
fn a_server_closing_mid_upload_cannot_kill_the_host_with_sigpipe() {
    each_build(
        "bindings/c/tests/sigpipe.c",
        |mock| {
            for _ in 0..8 {
                mock.push_fault(Fault::EarlyClose { status: 413 });
            }
            for _ in 0..3 {
                mock.push_fault(Fault::ResetMidBody);
            }
        },
        |p, mock, stdout| {
            let sent = reported(stdout, "final ", "sent");
            let rejected = reported(stdout, "final ", "rejected");
            assert_eq!(sent + rejected, 46, "{}", p.label);
            assert_eq!(mock.pending_faults(), 0, "{}: every fault was hit", p.label);
            assert_eq!(mock.stats().events, sent, "{}", p.label);
        },
    );
}

#[test]
fn log_callback_flush_outcomes_metrics_and_test_mode() {
    each_build(
        "bindings/c/tests/host_behaviour.c",
        |mock| {
            mock.control()
                .set_reject_property(Some("reject_me".into()), 400)
        },
        |p, mock, stdout| {
            assert!(stdout.contains("host_behaviour: ok"), "{}", p.label);
            // Only the two good events arrived; test mode sent nothing.
            let names: Vec<_> = mock.events().iter().map(|e| e["event"].clone()).collect();
            assert_eq!(names, vec![json!("ok 1"), json!("ok 2")], "{}", p.label);
            assert!(mock.requests().iter().all(|r| r.path == "/track"));
            assert!(!stdout.contains("\"kept\"") || stdout.contains("test events:"));
        },
    );
}

/// The disk spool from C (`spool_dir`): with the service refusing, a parent tracks 100
/// times what its queue holds and a forked child of it tracks more into the same directory
/// and closes; nothing is refused or dropped, everything reaches the disk, and once the
/// driver brings the service back (when the program prints `recover`) the parent delivers
/// its own events and the dead child's: the mock holds each exactly once.
#[test]
fn spool_outage_from_c_with_a_forked_child_delivers_every_event_once() {
    for program in compile("bindings/c/tests/spool.c") {
        let mock = MockServer::start();
        mock.set_down(DownMode::Refuse);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "c_api/spool-{}-{}",
            program.exe.file_name().unwrap().to_string_lossy(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut recovered = false;
        let stdout = run_driven(
            &program,
            &[&mock.url(), dir.to_str().unwrap()],
            Some(&mut |line: &str| {
                (line == "recover").then(|| {
                    // Nothing reached the service during the outage.
                    assert_eq!(mock.stats().events, 0, "{}", program.label);
                    mock.set_down(DownMode::Up);
                    recovered = true;
                    "up".to_string()
                })
            }),
        );
        assert!(recovered, "{}: the program never asked", program.label);
        let (n, child) = (
            reported(&stdout, "final ", "n"),
            reported(&stdout, "final ", "child"),
        );
        let m = mock.stats();
        assert_eq!(m.duplicates, 0, "{}: {m:?}", program.label);
        assert_eq!(m.events, n + child, "{}: {m:?}", program.label);
        let events = mock.events();
        let ids: HashSet<&str> = events.iter().map(|e| insert_id(&e["properties"])).collect();
        assert_eq!(
            ids.len(),
            events.len(),
            "{}: an $insert_id twice",
            program.label
        );
        let named = by_name(&events);
        for (name, want) in [("parent", n), ("child", child)] {
            let got = named.get(name).map_or(&[][..], Vec::as_slice);
            let distinct: HashSet<&str> = got
                .iter()
                .map(|e| e["properties"]["distinct_id"].as_str().unwrap())
                .collect();
            assert_eq!(
                (got.len() as u64, distinct.len() as u64),
                (want, want),
                "{}: events named {name}",
                program.label
            );
            let pids: HashSet<_> = got.iter().map(|e| e["properties"]["pid"].clone()).collect();
            assert_eq!(pids.len(), 1, "{}: {name} from {pids:?}", program.label);
        }
        // Replayed segments and the lock files of finished writers are removed.
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            left.is_empty(),
            "{}: left in spool_dir: {left:?}",
            program.label
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
