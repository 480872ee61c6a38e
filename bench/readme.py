#!/usr/bin/env python3
"""Put bench/results.md into README.md between `<!-- bench:begin -->` and `<!-- bench:end -->`
(its title dropped, its headings one level down, its image links made relative to the root).

    python3 bench/readme.py [--check]   (--check: exit 1 if the README is not up to date)
"""

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def section() -> str:
    lines = (REPO / "bench" / "results.md").read_text().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    text = "\n".join("#" + ln if ln.startswith("## ") else ln for ln in lines).strip()
    return re.sub(r"\]\((?!https?:|/)([^)]+\.svg)\)", r"](bench/\1)", text)


def main() -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        sys.exit(f"README.md has no {BEGIN} ... {END} markers")
    new = text[: start + len(BEGIN)] + "\n" + section() + "\n" + text[end:]
    if "--check" in sys.argv:
        sys.exit(0 if new == text else "README.md: the benchmark section is not bench/results.md (run bench/readme.py)")
    readme.write_text(new)


if __name__ == "__main__":
    main()
