#!/usr/bin/env bash
# `make fuzz`: builds the fuzz targets with cargo-fuzz on the stable toolchain (libFuzzer
# with SanitizerCoverage, no sanitizer: `--sanitizer none`, since -Zsanitizer needs nightly)
# and runs each for FUZZ_SECONDS, at most FUZZ_PARALLEL at once. New inputs go to
# corpus-run/<target> (not committed) on top of the committed seeds in corpus/<target>.
# Each crashing input is copied to regressions/<target>/, which tests/fuzz_regressions.rs
# replays in `make test`: commit it, and fix the bug.
#
#   FUZZ_SECONDS=600 FUZZ_PARALLEL=1 FUZZ_TARGETS="track send config response json" fuzz/run.sh
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-600}
parallel=${FUZZ_PARALLEL:-1}
targets=${FUZZ_TARGETS:-track send config response json}
cargo=${CARGO:-cargo}

if ! $cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    $cargo install cargo-fuzz --locked
fi
# -O -a: optimised, with debug assertions and overflow checks; no nightly flags.
$cargo fuzz build --sanitizer none -O -a

run_one() {
    local target=$1
    # Earlier findings were copied to regressions/ when they were found.
    rm -rf "artifacts/$target"
    mkdir -p "corpus-run/$target" "artifacts/$target"
    # Status is judged from the log below; a crash exits non-zero.
    $cargo fuzz run --sanitizer none -O -a "$target" "corpus-run/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -max_len=8192 -timeout=10 \
        -rss_limit_mb=2048 >"artifacts/$target.log" 2>&1 || true
}

running=0
for target in $targets; do
    echo "fuzz: $target for ${seconds}s (log: fuzz/artifacts/$target.log)"
    run_one "$target" &
    running=$((running + 1))
    if [ "$running" -ge "$parallel" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

found=0
summary=()
printf '\n%-9s %12s %9s %8s %8s %8s %9s\n' target executions exec/s cov ft corpus findings
for target in $targets; do
    log=artifacts/$target.log
    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corpus=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    crashes=$(find "artifacts/$target" -type f | wc -l)
    printf '%-9s %12s %9s %8s %8s %8s %9s\n' "$target" "$(stat number_of_executed_units)" \
        "$(stat average_exec_per_sec)" "${cov:-?}" "${ft:-?}" "${corpus:-?}" "$crashes"
    summary+=("$target $(stat number_of_executed_units) runs, $crashes findings")
    if [ "$crashes" -gt 0 ]; then
        found=1
        mkdir -p "regressions/$target"
        for f in "artifacts/$target"/*; do
            cp "$f" "regressions/$target/$(basename "$f")"
            echo "  kept fuzz/regressions/$target/$(basename "$f") (replayed by tests/fuzz_regressions.rs)"
        done
        grep -m1 -A3 -E "panicked at|ERROR: libFuzzer" "$log" | sed 's/^/  /' || true
    fi
done
# The README's Reliability row (scripts/reliability.py).
mkdir -p ../bench/reliability
joined=$(IFS=';'; echo "${summary[*]}" | sed 's/;/; /g')
printf '| fuzzing (cargo-fuzz, libFuzzer, stable): track/import/people/group and send inputs through the C API with property checks, configuration parsing, response classification | %s s per target | `make fuzz` | %s: %s (findings are kept in fuzz/regressions/ and replayed by make test) |\n' \
    "$seconds" "$([ "$found" = 0 ] && echo PASS || echo FOUND)" "$joined" >../bench/reliability/fuzz.md
exit "$found"
