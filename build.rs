//! Generates the C header with cbindgen into OUT_DIR; `make header` (BULKHEAD_BLESS_HEADER=1)
//! also writes it to the committed `include/bulkhead.h`. A unit test fails when the two
//! differ, so the committed header can never drift from the code.

use std::path::PathBuf;

fn main() {
    // cbindgen reads the whole crate (a public constant anywhere lands in the header).
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=BULKHEAD_BLESS_HEADER");
    let crate_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
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
