#!/usr/bin/env python3
"""Regenerate the README's Reliability table from the rows the long runs write.

Each command that tries to break a promise (`make chaos`, `make soak`, `make story`,
`make fuzz`, `make memcheck`, `make asan`, the fork storms) writes its result as one
Markdown table row to bench/reliability/<name>.md. This script puts those rows, in a fixed
order, between the README's `<!-- reliability:begin -->` and `<!-- reliability:end -->`
markers, so the table is never typed by hand. Rows it does not know come last, by name.

Usage: scripts/reliability.py [--check]   (--check: exit 1 if the README is out of date)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = ROOT / "bench" / "reliability"
README = ROOT / "README.md"
BEGIN, END = "<!-- reliability:begin -->", "<!-- reliability:end -->"
ORDER = [
    "chaos",
    "chaos-spool",
    "fork-c",
    "fork-cxx",
    "fork-ruby",
    "fork-python",
    "story",
    "gunicorn",
    "puma",
    "soak",
    "fuzz",
    "memcheck",
    "asan",
]
HEADER = (
    "| fault or condition | scale | command | result |\n"
    "|---|---|---|---|\n"
)


def table() -> str:
    rows = {p.stem: p.read_text().strip() for p in sorted(ROWS.glob("*.md"))}
    names = [n for n in ORDER if n in rows] + sorted(n for n in rows if n not in ORDER)
    return HEADER + "".join(rows[n] + "\n" for n in names)


def main() -> int:
    text = README.read_text()
    try:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        print(f"reliability: README.md has no {BEGIN} ... {END} section", file=sys.stderr)
        return 1
    updated = f"{head}{BEGIN}\n{table()}{END}{tail}"
    if "--check" in sys.argv[1:]:
        if updated != text:
            print("reliability: README.md's table is out of date: run scripts/reliability.py")
            return 1
        return 0
    if updated != text:
        README.write_text(updated)
        print("reliability: README.md's table regenerated from bench/reliability/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
