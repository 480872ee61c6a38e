#!/usr/bin/env python3
"""`make bench`: run the C, Ruby and Python benches side by side and write bench/results.md,
bench/outage.svg and bench/python.svg (hand-written SVG), plus bench/raw.json (every figure of
every run).

    python3 bench/run.py --mock target/release/bulkhead-mock --c-bench target/release/bulkhead-bench \
        --python target/bench-venv/bin/python
    python3 bench/run.py --from-raw     (rewrite the report and charts from bench/raw.json)

Environment: BENCH_RUNS (3) runs of the C, Ruby and Python per-call benches, each figure the
median with the range over the runs, ratios against peers taken within a run; the outage
and exit parts run once (BENCH_OUTAGE_SECONDS, 40). BENCH_QUICK=1: one short run (smoke test).
Standard library only: it runs on the system Python.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CLIENT_LABELS = {
    "bulkhead": "`bulkhead.Client.track`",
    "mixpanel+bulkhead": "`Mixpanel` + `bulkhead.MixpanelConsumer`",
    "segment": "segment-analytics-python",
    "posthog": "posthog",
    "mixpanel-buffered": "mixpanel `BufferedConsumer`",
}
COLORS = {
    "bulkhead": "#1b7837", "mixpanel+bulkhead": "#5aae61", "segment": "#2166ac",
    "posthog": "#d6604d", "mixpanel-buffered": "#8073ac",
}


def env_int(name: str, default: int) -> int:
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --- running the parts --------------------------------------------------------------------------

def run_json(cmd: Sequence[str], timeout: float) -> Any:
    """Run one bench; its stdout is one JSON object."""
    log(" ".join(str(c) for c in cmd))
    p = subprocess.run(list(cmd), stdout=subprocess.PIPE, text=True, timeout=timeout, cwd=REPO)
    start = p.stdout.find("{")
    if p.returncode != 0 or start < 0:
        raise SystemExit(f"bench: {cmd[0]} exited {p.returncode}")
    return json.loads(p.stdout[start:])


def python_part(args: argparse.Namespace, parts: str, extra: List[str]) -> Any:
    return run_json([args.python, str(HERE / "python_peers.py"), "--mock", args.mock, "--parts", parts, *extra],
                    timeout=1800)


# --- figures ------------------------------------------------------------------------------------

def get(d: Any, *path: str) -> Optional[float]:
    for p in path:
        if not isinstance(d, dict) or p not in d or d[p] is None:
            return None
        d = d[p]
    return float(d)


def fig(values: Sequence[Optional[float]], fmt: Callable[[float], str]) -> str:
    """Median of the runs, with the range when there are several."""
    vs = sorted(v for v in values if v is not None)
    if not vs:
        return "–"
    med = fmt(statistics.median(vs))
    return med if len(vs) == 1 or fmt(vs[0]) == fmt(vs[-1]) else f"{med} ({fmt(vs[0])}–{fmt(vs[-1])})"


def num(v: float) -> str:
    """Three significant figures, thin-space thousands."""
    if v >= 100:
        s = f"{v:,.0f}"
    elif v >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}"
    return s.replace(",", " ")


def pct(v: float) -> str:
    return f"{v * 100:.0f} %"


def times(v: float) -> str:
    return f"{v:.1f}×" if v < 100 else f"{v:.0f}×"


def us_from_ns(v: float) -> str:
    return f"{v:.0f} ns" if v < 1000 else f"{num(v / 1000)} µs" if v < 1e6 else f"{num(v / 1e6)} ms"


def table(head: List[str], rows: List[List[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


# --- SVG ------------------------------------------------------------------------------------------

def esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def outage_svg(outage: Dict[str, Any]) -> str:
    import math

    runs = {c: o for c, o in outage.items() if "p99_us" in o}
    secs = int(max(o["seconds"] for o in runs.values()))
    hang_from = next(iter(runs.values()))["hang_from"]
    hang_to = next(iter(runs.values()))["hang_to"]
    w, left, right, ph, gap, top = 1000, 70, 290, 230, 60, 40
    pw = w - left - right
    h = top + 2 * ph + gap + 50
    x = lambda s: left + pw * s / secs  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
             f'font-size="12"><rect width="{w}" height="{h}" fill="white"/>',
             f'<text x="{left}" y="20" font-size="14">Outage: two threads at a fixed rate, service hanging '
             f'from {hang_from:.0f} s to {hang_to:.0f} s (shaded)</text>']
    maxdepth = max([d for o in runs.values() for d in o["depth"] if d is not None] + [1])
    panels = [("host µs per call, p99 of each second (log)", "p99_us", True),
              ("events held by the client (queue depth)", "depth", False)]
    for k, (title, key, logscale) in enumerate(panels):
        y0 = top + k * (ph + gap)
        parts.append(f'<rect x="{x(hang_from):.1f}" y="{y0}" width="{x(hang_to) - x(hang_from):.1f}" '
                     f'height="{ph}" fill="#eeeeee"/>')
        parts.append(f'<rect x="{left}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
        parts.append(f'<text x="{left}" y="{y0 - 6}">{esc(title)}</text>')
        if logscale:
            lo, hi = 0, 7  # 1 µs .. 10 s
            # Clipped to the panel: a call blocked longer than 10 s is drawn at 10 s.
            y = lambda v: y0 + ph - ph * (min(math.log10(max(v, 1)), hi) - lo) / (hi - lo)  # noqa: E731
            ticks = [(10 ** e, ["1 µs", "10 µs", "100 µs", "1 ms", "10 ms", "100 ms", "1 s", "10 s"][e])
                     for e in range(lo, hi + 1)]
        else:
            y = lambda v: y0 + ph - ph * v / maxdepth  # noqa: E731
            ticks = [(maxdepth * f, f"{maxdepth * f:,.0f}".replace(",", " ")) for f in (0, 0.25, 0.5, 0.75, 1)]
        for v, label in ticks:
            parts.append(f'<line x1="{left - 4}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                         f'stroke="#ddd"/><text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{label}</text>')
        for s in range(0, secs + 1, max(1, secs // 8)):
            parts.append(f'<text x="{x(s):.1f}" y="{y0 + ph + 15}" text-anchor="middle">{s} s</text>')
        for c, o in runs.items():
            pts = [(i + 0.5, v) for i, v in enumerate(o[key]) if v is not None]
            if key == "depth":
                pts = [(i + 1.0, v) for i, v in enumerate(o[key]) if v is not None]
            if pts:
                path = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in pts)
                parts.append(f'<polyline points="{path}" fill="none" stroke="{COLORS[c]}" stroke-width="2"/>')
    for i, c in enumerate(runs):
        ly = top + 10 + i * 20
        parts.append(f'<line x1="{w - right + 15}" x2="{w - right + 35}" y1="{ly}" y2="{ly}" '
                     f'stroke="{COLORS[c]}" stroke-width="3"/><text x="{w - right + 40}" y="{ly + 4}">'
                     f'{esc(CLIENT_LABELS[c].replace("`", ""))}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def python_svg(rows: List[tuple]) -> str:
    """Horizontal log-scale bars: app CPU µs per event and host p99 µs, per client (5 ms)."""
    import math

    w, left, bar, top = 920, 300, 14, 50
    pw = w - left - 80
    h = top + len(rows) * (2 * bar + 16) + 40
    lo, hi = 0, 5  # 1 µs .. 100 ms
    x = lambda v: left + pw * (math.log10(max(v, 1)) - lo) / (hi - lo)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
             f'font-size="12"><rect width="{w}" height="{h}" fill="white"/>',
             f'<text x="10" y="20" font-size="14">Python, mock latency 5 ms (log scale): '
             f'<tspan fill="#1b7837">app CPU µs per event</tspan>, '
             f'<tspan fill="#999">host µs per call, p99</tspan></text>']
    for e, label in enumerate(["1 µs", "10 µs", "100 µs", "1 ms", "10 ms", "100 ms"]):
        parts.append(f'<line x1="{x(10 ** e):.1f}" x2="{x(10 ** e):.1f}" y1="{top - 10}" y2="{h - 30}" '
                     f'stroke="#ddd"/><text x="{x(10 ** e):.1f}" y="{h - 15}" text-anchor="middle">{label}</text>')
    for i, (c, cpu, p99) in enumerate(rows):
        y = top + i * (2 * bar + 16)
        parts.append(f'<text x="{left - 8}" y="{y + bar + 4}" text-anchor="end">'
                     f'{esc(CLIENT_LABELS[c].replace("`", ""))}</text>')
        for k, (v, color) in enumerate([(cpu, COLORS[c]), (p99, "#999")]):
            if v is not None:
                parts.append(f'<rect x="{left}" y="{y + k * bar}" width="{max(1.0, x(v) - left):.1f}" '
                             f'height="{bar - 2}" fill="{color}"/><text x="{x(v) + 4:.1f}" '
                             f'y="{y + k * bar + bar - 4}">{num(v)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# --- the report -------------------------------------------------------------------------------------

def machine() -> Dict[str, str]:
    model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "cpu": model, "kernel": platform.release()}


def python_rows(runs: List[Any], lat: str, clients: List[str], with_loop: bool) -> str:
    rows = []
    for c in clients:
        per = [r["perf"].get(c, {}) for r in runs]
        m = [p.get(lat, {}) for p in per]
        seg = [r["perf"].get("segment", {}).get(lat, {}).get("cpu_us_per_event") for r in runs]
        ratio = [s / p["cpu_us_per_event"] if s and p.get("cpu_us_per_event") else None for s, p in zip(seg, m)]
        delivered = min((int(x.get("delivered", 0)) for x in m), default=0)
        events = max((int(x.get("events", 0)) for x in m), default=0)
        row = [CLIENT_LABELS[c],
               fig([get(x, "p50") for x in m], num), fig([get(x, "p99") for x in m], num),
               fig([get(x, "p999") for x in m], num), fig([get(x, "cpu_us_per_event") for x in m], num),
               fig(ratio, times) if c != "segment" else "1×",
               fig([get(x, "drain_ms") for x in m], num) + ("" if delivered >= events else
                                                            f" ({events - delivered} never arrived)")]
        if with_loop:
            row.append(fig([get(p, "loop", "ratio") for p in per], pct))
        rows.append(row)
    head = ["client", "host µs p50", "p99", "p99.9", "app CPU µs/event", "CPU vs segment",
            "ms until the mock holds all"]
    if with_loop:
        head.append("CPU-bound loop keeps")
    return table(head, rows)


def report(data: Dict[str, Any], meta: Dict[str, Any]) -> str:
    py = data["python"]
    c = data["c"]
    rb = data["ruby"]
    clients = [k for k in CLIENT_LABELS if k in py[0].get("perf", {})]
    out: List[str] = []
    m = meta["machine"]
    out.append("# Benchmark results\n")
    out.append(f"Machine: {m['nproc']} CPUs, {m['cpu']}, Linux {m['kernel']}; {meta['date']}; "
               f"bulkhead {c[0].get('version', '?')}, Python {py[0].get('python', '?')}, Ruby {rb[0].get('ruby', '?')}. "
               f"Command: `{meta['command']}`. {meta['runs']} run(s): each figure is the median of the "
               f"runs with the range in brackets; ratios are taken within a run. Loopback to the "
               f"project's mock (`bulkhead-mock`), which shares the CPUs with the client.\n")

    out.append("## Python, side by side\n")
    n = py[0]["perf"][clients[0]]["lat0"]["events"]
    out.append(f"Each client in its own fresh interpreter with its own mock, defaults except the host; "
               f"{n} events of 10 properties per figure after 1 000 of warm-up. App CPU: user + system "
               f"CPU of the whole process (library threads included) from the first call until the "
               f"mock holds every event, ÷ events. The clock for \"until the mock holds all\" starts "
               f"at the last call and includes the library's own flush. CPU-bound loop: iterations/s "
               f"of a loop hashing {py[0]['hash_bytes']} bytes (~22 µs) and tracking one event, "
               f"against the same loop without tracking.\n")
    out.append("Mock latency 0 ms:\n")
    out.append(python_rows(py, "lat0", clients, False) + "\n")
    out.append("Mock latency 5 ms:\n")
    out.append(python_rows(py, "lat5", clients, True) + "\n")
    t4 = [r["perf"].get("bulkhead", {}).get("threads4") for r in py]
    if any(t4):
        out.append(table(["`bulkhead.Client.track`, four tracking threads", "host µs p50", "p99", "p99.9",
                          "calls/s (all threads)"],
                         [["0 ms latency", fig([get(t, "p50") for t in t4], num),
                           fig([get(t, "p99") for t in t4], num), fig([get(t, "p999") for t in t4], num),
                           fig([get(t, "calls_per_s") for t in t4], num)]]) + "\n")
    out.append("![Python: app CPU per event and host p99 per client](python.svg)\n")
    notes = py[0].get("notes", {})
    if notes:
        out.append("Settings besides the host: " + "; ".join(
            f"{CLIENT_LABELS[k]}: {v}" for k, v in notes.items()) + ". No peer's retries were changed.\n")

    outage = data.get("outage")
    if outage:
        rows = []
        for cl in clients:
            o = outage.get(cl, {})
            if "p99_us" not in o:
                rows.append([CLIENT_LABELS[cl]] + ["–"] * 6)
                continue
            p = o["p99_us"]
            before = [v for s, v in enumerate(p) if v is not None and s < o["hang_from"]]
            during = [v for s, v in enumerate(p) if v is not None and o["hang_from"] <= s < o["hang_to"]]
            depth = [d for d in o["depth"] if d is not None]
            blocked = o.get("blocked_at_end_s") or []
            rows.append([CLIENT_LABELS[cl], num(statistics.median(before)) if before else "–",
                         num(max(during)) if during else "no call returned",
                         num(max(depth)) if depth else "–",
                         f"{o['tracked']:,}".replace(",", " "),
                         f"{o['delivered_20s']:,}".replace(",", " "),
                         (f"{len(blocked)} call(s) blocked {max(blocked):.0f} s at the end" if blocked else "")])
        o0 = next(iter(outage.values()))
        out.append("## Outage\n")
        out.append(f"Two threads tracking {o0['rate_per_thread']} events/s each for {o0['seconds']:.0f} s; the "
                   f"mock holds requests unanswered from {o0['hang_from']:.0f} s to {o0['hang_to']:.0f} s (a held "
                   f"request stays held after that until its client gives up on it). One run. "
                   f"segment-analytics-python and posthog hold at most 10 000 events (`max_queue_size`) and "
                   f"drop the rest; bulkhead holds 100 000 (`queue_capacity`) and counts what its guard "
                   f"drops; \"at the mock 20 s after\" is what the mock held 20 s after the last call.\n")
        out.append(table(["client", "host p99 µs, healthy (median of seconds)", "worst second's p99 µs, hanging",
                          "most events held", "tracked", "at the mock 20 s after", "note"], rows) + "\n")
        out.append("![Outage: per-second host p99 and queue depth, one line per client](outage.svg)\n")

    ex = data.get("exit")
    if ex:
        rows = []
        for cl in clients:
            e = ex.get(cl, {})
            secs = e.get("exit_s")
            rows.append([CLIENT_LABELS[cl], f"{e.get('tracked', 0):,}".replace(",", " "),
                         "–" if e.get("pending") is None else f"{e['pending']:,}".replace(",", " "),
                         "> 60 s (killed)" if secs is None else f"{secs:.2f} s"])
        out.append("## Exit with the service hanging\n")
        out.append("A process tracks 100 000 events (mixpanel `BufferedConsumer`: 49, since its 50th call "
                   "would block on the hung service) and returns from its main: time until the process "
                   "is gone, its exit hooks included. Killed at 60 s. One run.\n")
        base = ex.get("none", {}).get("exit_s")
        if base is not None:
            rows.append(["(Python alone, no client: the interpreter's own exit)", "0", "0", f"{base:.2f} s"])
        out.append(table(["client", "tracked", "held at exit (the rest dropped by the client)", "exit time"], rows)
                   + "\n")

    out.append("## Ruby\n")
    out.append(f"Mock latency {rb[0]['latency_ms']} ms. mixpanel-ruby is not installable here (no gem "
               f"registry): its Tracker#track and synchronous Consumer#send! (a Net::HTTP POST per "
               f"event) are re-written in `bench/ruby_peers.rb`. CPU: the whole process "
               f"(CLOCK_PROCESS_CPUTIME_ID) until the mock holds every event.\n")
    names = [x["client"] for x in rb[0]["clients"]]
    rows = []
    for i, name in enumerate(names):
        xs = [r["clients"][i] for r in rb]
        rows.append([name, f"{xs[0]['events']:,}".replace(",", " "), fig([get(x, "p50") for x in xs], num),
                     fig([get(x, "p99") for x in xs], num), fig([get(x, "p999") for x in xs], num),
                     fig([get(x, "cpu_us_per_event") for x in xs], num)])
    out.append(table(["client", "events", "host µs p50", "p99", "p99.9", "app CPU µs/event"], rows) + "\n")

    out.append("## C\n")
    out.append("`bindings/c/bench/bench.c`. Each call timed with `clock_gettime` (~20–30 ns of it is "
               "the clock). Idle: mock up, queue empty, sender idle (bursts of 500 calls, an untimed "
               "flush after each). Busy: back-to-back calls while the sender delivers. Guard full: "
               "service hanging, queue at its capacity, every call refused (`QUEUE_FULL`). `send`: a "
               "~300-byte prebuilt event; `track`: 10 properties.\n")
    rows = []
    for call in ("send", "track"):
        for state, label in (("idle", "idle"), ("busy", "sender busy"), ("guard_full", "guard full (dropped)")):
            xs = [r.get(f"{call}_{state}", {}) for r in c]
            rows.append([f"`bulkhead_{call}`, {label}", fig([get(x, "median_ns") for x in xs], us_from_ns),
                         fig([get(x, "p99_ns") for x in xs], us_from_ns),
                         fig([get(x, "p999_ns") for x in xs], us_from_ns)])
    xs = [r.get("track_spool_outage", {}) for r in c]
    if any(xs):
        rows.append(["`bulkhead_track`, service down, disk spool on (event spooled)",
                     fig([get(x, "median_ns") for x in xs], us_from_ns),
                     fig([get(x, "p99_ns") for x in xs], us_from_ns),
                     fig([get(x, "p999_ns") for x in xs], us_from_ns)])
    out.append(table(["call", "median", "p99", "p99.9"], rows) + "\n")
    xs = [r.get("spool_replay", {}) for r in c]
    if any(xs):
        evs = f"{xs[0].get('events', 0):,}".replace(",", " ")
        out.append(f"Disk spool (`spool_dir`): the service refuses every request while {evs} events "
                   "are tracked into a 20 000-event queue; the rest go to the spool. Then the service "
                   "comes back; replay rate from then until the mock holds every event: "
                   + fig([get(x, "replayed_per_s") for x in xs], num) + " events/s (recovery "
                   + fig([get(x, "recovery_s") for x in xs], lambda v: f"{v:.1f} s") + "; dropped "
                   + fig([get(x, "dropped") for x in xs], num) + ").\n")
    rows = []
    for call in ("send", "track"):
        rows.append([f"`bulkhead_{call}`"] + [fig([get(r, f"{call}_{t}", "calls_per_s") for r in c], num)
                                              for t in ("1thread", "2threads")])
    out.append(table(["producer calls/s, sender busy", "one thread", "two threads"], rows) + "\n")
    rows = []
    for key, label in (("e2e_gzip", "gzip on (default)"), ("e2e_plain", "gzip off")):
        xs = [r.get(key, {}) for r in c]
        rows.append([label, fig([get(x, "delivered_per_s") for x in xs], num),
                     fig([get(x, "library_cpu_s_per_million") for x in xs], num),
                     fig([get(x, "wire_bytes_per_event") for x in xs], num)])
    ev = c[0].get("e2e_gzip", {}).get("events", 0)
    evs = f"{ev:,}".replace(",", " ")
    out.append(f"End to end: {evs} events tracked from one thread as fast as it can, then flushed; "
               f"every one confirmed once by the mock. Library CPU: the threads named "
               f"`bulkhead-worker` (/proc/self/task/*/stat).\n")
    out.append(table(["end to end", "delivered events/s", "library CPU s per million events",
                      "bytes on the wire per event"], rows) + "\n")
    out.append(f"Peak RSS of the C bench process after the gzip run (up to {evs} events queued at once): " + fig([get(r, "e2e_gzip", "peak_rss_kb") for r in c],
                                        lambda v: f"{v / 1024:.0f} MiB") + ".\n")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mock")
    ap.add_argument("--c-bench")
    ap.add_argument("--python")
    ap.add_argument("--ruby", default="ruby")
    ap.add_argument("--from-raw", action="store_true", help="only rewrite the report and charts from bench/raw.json")
    args = ap.parse_args()
    if args.from_raw:
        raw = json.loads((HERE / "raw.json").read_text())
        write(raw.pop("meta"), raw)
        return
    if not (args.mock and args.c_bench and args.python):
        ap.error("--mock, --c-bench and --python are required")
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    runs = 1 if quick else env_int("BENCH_RUNS", 3)
    outage_s = env_int("BENCH_OUTAGE_SECONDS", 8 if quick else 40)
    c_calls = 20_000 if quick else 200_000
    py_events, loop_s = (3_000, 1.0) if quick else (20_000, 3.0)
    rb_events, rb_sync = (3_000, 200) if quick else (20_000, 1_000)

    data: Dict[str, Any] = {"c": [], "ruby": [], "python": []}
    hash_bytes: List[str] = []
    for r in range(runs):
        log(f"run {r + 1} of {runs}")
        data["c"].append(run_json([args.c_bench, args.mock, str(c_calls)], timeout=900))
        data["ruby"].append(run_json([args.ruby, "-I", str(REPO / "bindings/ruby/lib"), str(HERE / "ruby_peers.rb"),
                                      args.mock, str(rb_events), str(rb_sync)], timeout=900))
        py = python_part(args, "perf", ["--events", str(py_events), "--loop-seconds", str(loop_s), *hash_bytes])
        hash_bytes = ["--hash-bytes", str(py["hash_bytes"])]  # the same loop in every run
        data["python"].append(py)
    once = python_part(args, "outage,exit", ["--outage-seconds", str(outage_s)])
    data["outage"], data["exit"] = once["outage"], once["exit"]

    command = "BENCH_QUICK=1 make bench" if quick else "make bench"
    meta = {"machine": machine(), "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": command, "runs": runs}
    (HERE / "raw.json").write_text(json.dumps({"meta": meta, **data}, indent=1) + "\n")
    write(meta, data)


def write(meta: Dict[str, Any], data: Dict[str, Any]) -> None:
    (HERE / "results.md").write_text(report(data, meta))
    (HERE / "outage.svg").write_text(outage_svg(data["outage"]))
    clients = [k for k in CLIENT_LABELS if k in data["python"][0]["perf"]]
    bars = []
    for cl in clients:
        m = [p["perf"][cl].get("lat5", {}) for p in data["python"]]
        cpu = [get(x, "cpu_us_per_event") for x in m]
        p99 = [get(x, "p99") for x in m]
        bars.append((cl, statistics.median([v for v in cpu if v is not None] or [0]),
                     statistics.median([v for v in p99 if v is not None] or [0])))
    (HERE / "python.svg").write_text(python_svg(bars))
    log("wrote bench/results.md, bench/outage.svg, bench/python.svg, bench/raw.json")


if __name__ == "__main__":
    main()
