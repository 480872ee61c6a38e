//! Generates the C header with cbindgen into OUT_DIR; `make header` (BULKHEAD_BLESS_HEADER=1)
//! also writes it to the committed `include/bulkhead.h`. A unit test fails when the two
//! differ, so the committed header can never drift from the code.
//!
//! On Linux it also shapes the shared library: a SONAME of `libbulkhead.so.<major>` (what
//! `make install` links to the versioned file) and a linker version script that exports only
//! the `bulkhead_*` symbols (`tests/exports.rs` keeps it so).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // cbindgen reads the whole crate (a public constant anywhere lands in the header).
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=BULKHEAD_BLESS_HEADER");
    let crate_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    shape_shared_library(&out_dir);

    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header");
    let generated = out_dir.join("bulkhead.h");
    bindings.write_to_file(&generated);
    if std::env::var_os("BULKHEAD_BLESS_HEADER").is_some() {
        std::fs::create_dir_all(crate_dir.join("include")).expect("create include/");
        std::fs::copy(&generated, crate_dir.join("include/bulkhead.h"))
            .expect("write include/bulkhead.h");
    }
}

/// SONAME and exported symbols of the cdylib, for ELF targets linked by a GNU-compatible linker.
fn shape_shared_library(out_dir: &std::path::Path) {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if !matches!(os.as_str(), "linux" | "android" | "freebsd") || env == "msvc" {
        return;
    }
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets the version");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libbulkhead.so.{major}");
    link_soname_in_build_tree(out_dir, &format!("libbulkhead.so.{major}"));
    // Only the C API is exported; everything else (Rust's, tokio's, ring's symbols) stays local,
    // so the library cannot interpose on or clash with another copy of them in the host.
    let script = out_dir.join("bulkhead.map");
    std::fs::write(
        &script,
        "{\n  global:\n    bulkhead_*;\n  local:\n    *;\n};\n",
    )
    .expect("write the linker version script");
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        script.display()
    );
}

/// A program linked against the library in the build tree (tests/c_api.rs, `make bench`,
/// `cc -Ltarget/release -lbulkhead`) records the SONAME, so give the library that name there
/// too: `libbulkhead.so.<major>` -> `libbulkhead.so` in `target/<profile>` and its `deps/`.
/// Best effort: a layout this does not recognise is left alone.
fn link_soname_in_build_tree(out_dir: &std::path::Path, soname: &str) {
    #[cfg(unix)]
    {
        // OUT_DIR is target/<profile>/build/<package>-<hash>/out.
        let mut up = out_dir.ancestors();
        let (Some(build), Some(profile)) = (up.nth(2), up.next()) else {
            return;
        };
        if build.file_name() != Some(std::ffi::OsStr::new("build")) {
            return;
        }
        for dir in [profile.to_path_buf(), profile.join("deps")] {
            let link = dir.join(soname);
            if dir.is_dir() && link.symlink_metadata().is_err() {
                let _ = std::os::unix::fs::symlink("libbulkhead.so", &link);
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (out_dir, soname);
}
