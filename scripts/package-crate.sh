#!/usr/bin/env bash
# Usage: scripts/package-crate.sh DEST
#
# Writes the bulkhead crate's sources to DEST as a standalone cargo project, for the source
# gem (bindings/ruby/ext/bulkhead/crate) and the Python sdist (rust/): what `cargo package`
# ships (Cargo.toml with the path-only dev-dependency on mock/ removed, Cargo.lock, build.rs,
# cbindgen.toml, src/, include/, licenses; see `include` in Cargo.toml), plus an empty
# [workspace] table so cargo never looks for a workspace above DEST.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:?usage: $0 DEST}
cargo=${CARGO:-cargo}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
"$cargo" package --quiet --manifest-path "$root/Cargo.toml" -p bulkhead --no-verify \
  --allow-dirty --target-dir "$tmp"
rm -rf "$dest"
mkdir -p "$dest"
tar -xzf "$tmp/package/bulkhead-$version.crate" -C "$dest" --strip-components=1
rm -f "$dest/Cargo.toml.orig" "$dest/.cargo_vcs_info.json"
printf '\n# Built on its own, never as part of an enclosing workspace.\n[workspace]\n' \
  >>"$dest/Cargo.toml"
