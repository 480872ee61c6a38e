#!/usr/bin/env bash
# One line per C test program from the logs `make memcheck` (valgrind, one log per process)
# or `make asan` (ASan/LSan, one log per process that found something) left in DIR.
#   scripts/sanitizer-report.sh memcheck|asan DIR
set -uo pipefail
tool=$1 dir=$2
shopt -s nullglob
case $tool in
memcheck)
    printf '%-28s %5s %7s %16s %16s %16s\n' program procs errors definite indirect possible
    for prog in $(for f in "$dir"/*.log; do basename "$f" | sed 's/\.[0-9]*\.log$//'; done | sort -u); do
        awk -v prog="$prog" '
            /ERROR SUMMARY:/ { errors += $4; procs++ }
            /definitely lost:/ { gsub(",", "", $4); gsub(",", "", $7); db += $4; dn += $7 }
            /indirectly lost:/ { gsub(",", "", $4); gsub(",", "", $7); ib += $4; in_ += $7 }
            /possibly lost:/ { gsub(",", "", $4); gsub(",", "", $7); pb += $4; pn += $7 }
            END { printf "%-28s %5d %7d %16s %16s %16s\n", prog, procs, errors,
                  (db + 0) "B/" (dn + 0), (ib + 0) "B/" (in_ + 0), (pb + 0) "B/" (pn + 0) }' "$dir/$prog".*.log
    done
    ;;
asan)
    logs=("$dir"/asan.*)
    if [ ${#logs[@]} -eq 0 ]; then
        echo "asan: no AddressSanitizer or LeakSanitizer report from any C test program"
    else
        grep -h -E '^SUMMARY: |ERROR: (Address|Leak)Sanitizer' "${logs[@]}" | sort | uniq -c
    fi
    ;;
esac
