#!/usr/bin/env python3
"""Per-call cost of tracking one event, against the project's mock server with 5 ms latency.

    bulkhead.Client.track                      (the native queue, background sending)
    Mixpanel.track + bulkhead.MixpanelConsumer (mixpanel-python builds the message)
    Mixpanel.track + mixpanel.BufferedConsumer (mixpanel-python's own: a synchronous POST
                                                on the caller's thread every 50 events)

Usage: python bench/track_bench.py [--events N] [--buffered-events N] [--latency-ms 5]
       [--mock-url http://127.0.0.1:PORT]   (else starts BULKHEAD_MOCK or
                                             ../../target/release/bulkhead-mock)

Needs `pip install mixpanel` for the last two rows. Prints a small table; no assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]

try:
    import bulkhead
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(HERE.parent))
    import bulkhead


def start_mock() -> Tuple[subprocess.Popen, str]:  # type: ignore[type-arg]
    binary = os.environ.get("BULKHEAD_MOCK") or str(REPO / "target" / "release" / "bulkhead-mock")
    proc = subprocess.Popen(
        [binary, "--port", "0", "--no-store", "--exit-on-stdin-eof"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def control(url: str, path: str, method: str = "POST") -> object:
    req = urllib.request.Request(url + "/_mock/" + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def measure(n: int, call: Callable[[int], object]) -> List[float]:
    """Per-call wall time in microseconds."""
    out: List[float] = []
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        call(i)
        out.append((clock() - t0) / 1000.0)
    return out


def row(name: str, samples: List[float], drain_s: Optional[float], delivered: object) -> str:
    s = sorted(samples)
    p = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    drain = f"{drain_s * 1000:8.0f}" if drain_s is not None else "       -"
    return (
        f"| {name:<42} | {len(s):>6} | {statistics.fmean(s):8.2f} | {p(0.5):7.2f} | "
        f"{p(0.99):8.2f} | {s[-1]:9.0f} | {drain} | {delivered!s:>9} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--buffered-events", type=int, default=2_000)
    ap.add_argument("--latency-ms", type=int, default=5)
    ap.add_argument("--mock-url")
    args = ap.parse_args()

    proc = None
    url = args.mock_url
    if not url:
        proc, url = start_mock()
    try:
        control(url, f"latency?ms={args.latency_ms}")
        props = {"plan": "pro", "amount": 12.5, "tags": ["a", "b"], "source": "bench"}
        cfg = dict(api_host=url, flush_interval_ms=100)
        rows: List[str] = []

        def events_seen() -> int:
            return int(control(url, "stats", "GET")["events"])  # type: ignore[index]

        # 1. bulkhead.Client.track
        base = events_seen()
        with bulkhead.Client(token="bench-token", **cfg) as c:
            samples = measure(args.events, lambda i: c.track(f"u{i % 1000}", "Bench", props))
            t0 = time.perf_counter()
            c.flush(60.0)
            drain = time.perf_counter() - t0
            dropped = c.stats().dropped_queue_full
        rows.append(row("bulkhead.Client.track", samples, drain, events_seen() - base))
        if dropped:
            print(f"note: the guard dropped {dropped} events (queue_capacity)", file=sys.stderr)

        try:
            import mixpanel
        except ImportError:
            mixpanel = None
            print("mixpanel not installed: skipping the mixpanel-python rows", file=sys.stderr)

        if mixpanel is not None:
            # 2. mixpanel-python with bulkhead.MixpanelConsumer
            base = events_seen()
            consumer = bulkhead.MixpanelConsumer(**cfg)
            mp = mixpanel.Mixpanel("bench-token", consumer=consumer)
            samples = measure(args.events, lambda i: mp.track(f"u{i % 1000}", "Bench", props))
            t0 = time.perf_counter()
            consumer.flush(60.0)
            drain = time.perf_counter() - t0
            consumer.close()
            rows.append(row("Mixpanel.track + bulkhead.MixpanelConsumer", samples, drain, events_seen() - base))

            # 3. mixpanel-python with its own BufferedConsumer (synchronous batches of 50)
            base = events_seen()
            buffered = mixpanel.BufferedConsumer(
                events_url=url + "/track",
                people_url=url + "/engage",
                groups_url=url + "/groups",
                import_url=url + "/import",
                request_timeout=10,
            )
            mp = mixpanel.Mixpanel("bench-token", consumer=buffered)
            samples = measure(args.buffered_events, lambda i: mp.track(f"u{i % 1000}", "Bench", props))
            t0 = time.perf_counter()
            buffered.flush()
            drain = time.perf_counter() - t0
            rows.append(row("Mixpanel.track + mixpanel.BufferedConsumer", samples, drain, events_seen() - base))

        print(
            f"per-call cost of track, mock latency {args.latency_ms} ms "
            f"(bulkhead {bulkhead.native_version}, Python {sys.version.split()[0]})"
        )
        print(
            f"| {'consumer':<42} | {'calls':>6} | {'mean µs':>8} | {'p50 µs':>7} | "
            f"{'p99 µs':>8} | {'max µs':>9} | {'flush ms':>8} | {'delivered':>9} |"
        )
        print(f"|{'-' * 44}|{'-' * 8}|{'-' * 10}|{'-' * 9}|{'-' * 10}|{'-' * 11}|{'-' * 10}|{'-' * 11}|")
        for r in rows:
            print(r)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(5)


if __name__ == "__main__":
    main()
