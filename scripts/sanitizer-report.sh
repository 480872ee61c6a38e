#!/usr/bin/env bash
# One line per C test program from the logs `make memcheck` (valgrind, one log per process)
# or `make asan` (ASan/LSan, one log per process that found something) left in DIR.
# Exits non-zero when memcheck saw a memory error in any process, or a definite leak in a
# program's own process. A forked child's leaks are listed apart and do not fail: the child
# deliberately leaks the parent's runtime and client cores (their threads do not exist
# there; see src/runtime.rs), so whatever only those threads referenced is "lost" in it.
#   scripts/sanitizer-report.sh memcheck|asan DIR
set -uo pipefail
tool=$1 dir=$2
shopt -s nullglob
case $tool in
memcheck)
    failed=0
    lines=()
    printf '%-22s %5s %6s %14s %14s %14s   %s\n' program procs errors definite indirect possible \
        "forked children: definite/indirect"
    for prog in $(for f in "$dir"/*.log; do basename "$f" | sed 's/\.[0-9]*\.log$//'; done | sort -u); do
        line=$(awk '
            FNR == 1 { own[FILENAME] = 1 }
            { sub(/^==[0-9]+== */, "") }
            /^Parent PID:/ { parent[FILENAME] = $3 }
            /^ERROR SUMMARY:/ { errors += $3; procs++ }
            /definitely lost:/ { gsub(",", ""); d[FILENAME] = $3; dn[FILENAME] = $6 }
            /indirectly lost:/ { gsub(",", ""); i[FILENAME] = $3 }
            /possibly lost:/ { gsub(",", ""); p[FILENAME] = $3 }
            END {
                for (f in own) { fpid = f; sub(/\.log$/, "", fpid); sub(/.*\./, "", fpid); pids[fpid] = 1 }
                for (f in own) {
                    if (parent[f] in pids) { cd += d[f]; ci += i[f] }
                    else { md += d[f]; mn += dn[f]; mi += i[f]; mp += p[f] }
                }
                printf "%-22s %5d %6d %14s %14s %14s   %s\n", prog, procs, errors,
                    (md + 0) "B/" (mn + 0), (mi + 0) "B", (mp + 0) "B", (procs > 1 ? (cd + 0) "B/" (ci + 0) "B" : "-")
                exit (errors > 0 || md > 0)
            }' prog="$prog" "$dir/$prog".*.log) || failed=1
        echo "$line"
        lines+=("$line")
    done
    if [ -n "${ROW:-}" ]; then
        progs=${#lines[@]}
        errors=$(printf '%s\n' "${lines[@]}" | awk '{s += $3} END {print s + 0}')
        printf '| valgrind memcheck over the C/C++ test programs (debug library) | %s programs; skipped: %s | `make memcheck` | %s: %s memory errors; definite leaks in the programs'"'"' own processes: %s; forked children leak the parent'"'"'s runtime on purpose |\n' \
            "$progs" "${MEMCHECK_SKIP:-none}" \
            "$([ "$failed" = 0 ] && [ "${TESTS_STATUS:-0}" = 0 ] && echo PASS || echo "FAIL (tests exit ${TESTS_STATUS:-0})")" "$errors" \
            "$([ "$failed" = 0 ] && echo none || echo "see make memcheck")" >"$ROW"
    fi
    exit "$failed"
    ;;
asan)
    logs=("$dir"/asan.*)
    if [ ${#logs[@]} -eq 0 ]; then
        echo "asan: no AddressSanitizer or LeakSanitizer report from any C test program"
        verdict="PASS: no AddressSanitizer report"
        [ "${TESTS_STATUS:-0}" = 0 ] || verdict="FAIL: no AddressSanitizer report, but the tests failed (exit ${TESTS_STATUS})"
    else
        grep -h -E '^SUMMARY: |ERROR: (Address|Leak)Sanitizer' "${logs[@]}" | sort | uniq -c
        verdict="FAIL: $(grep -h -c -E 'ERROR: AddressSanitizer' "${logs[@]}" | awk '{s += $1} END {print s + 0}') reports"
    fi
    if [ -n "${ROW:-}" ]; then
        printf '| AddressSanitizer: the C/C++ test programs built with -fsanitize=address against the library (whose heap ASan sees; leaks left to memcheck) | every C test program, both builds; skipped: %s (the ASan allocator lock deadlocks a child forked mid-malloc) | `make asan` | %s |\n' \
            "${ASAN_SKIP:-none}" "$verdict" >"$ROW"
    fi
    [ ${#logs[@]} -eq 0 ]
    ;;
esac
