#!/usr/bin/env python3
"""Python side by side: bulkhead against the peer SDKs, each pointed at the project's mock.

    python bench/python_peers.py --mock target/release/bulkhead-mock --out py.json \
        [--events N] [--loop-seconds S] [--outage-seconds S] [--parts perf,outage,exit]

Run with the bench venv (`make deps-bench`: mixpanel, segment-analytics-python, posthog and
bulkhead). Every client runs in its own fresh interpreter (this script re-invoked as a
worker) against its own mock process, so clients do not disturb each other. Parts:

- perf: host µs per call (p50/p99/p99.9), app CPU per event (getrusage of the whole process,
  library threads included, from the first call until the mock holds every event, ÷ events),
  time from the last call until the mock holds every event (after the library's own flush),
  at 0 and 5 ms mock latency; the CPU-bound loop ratio (a loop hashing ~22 µs per iteration
  and tracking one event, iterations/s against the same loop without tracking, 5 ms latency);
  for bulkhead also four tracking threads.
- outage: two threads tracking at a fixed rate for --outage-seconds, the mock hanging from
  25 % to 75 % of it: per-second host p99 and queue depth.
- exit: a process holding up to 100 000 pending events with the service hanging returns from
  its main; time until the process is gone (killed after 60 s).

Prints nothing but progress on stderr; the figures go to --out as JSON (bench/run.py turns
them into bench/results.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any, Callable, Dict, List, Optional, Tuple

CLIENTS = ["bulkhead", "mixpanel+bulkhead", "segment", "posthog", "mixpanel-buffered"]
TOKEN = "bench-token"
# The same 10 properties as the C bench.
PROPS: Dict[str, Any] = {
    "plan": "pro", "country": "NZ", "age": 37, "score": 12.5, "beta": True,
    "referrer": "https://example.com/landing", "campaign": "spring-sale", "items": 3,
    "currency": "NZD", "device": "desktop",
}
# What a peer needed beyond its defaults and the host, shown under the table.
NOTES = {
    "mixpanel-buffered": "request_timeout=10 s (the default, None, waits forever on a hung service); "
    "one consumer per thread (BufferedConsumer is not thread-safe)",
}
EXIT_CAP_S = 60.0
EXIT_PENDING = 100_000


# --- mock ---------------------------------------------------------------------------------

class Mock:
    def __init__(self, binary: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [binary, "--port", "0", "--no-store", "--exit-on-stdin-eof", *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"the mock printed no URL: {self.url!r}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def control(url: str, path: str, method: str = "POST", timeout: float = 10.0) -> Any:
    req = urllib.request.Request(url + "/_mock/" + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def mock_events(url: str) -> int:
    return int(control(url, "stats", "GET")["events"])


def wait_events(url: str, n: int, timeout_s: float) -> int:
    """Block (one long-poll request at a time, so the waiting costs next to no CPU) until the
    mock holds n events or the deadline passes; returns its count."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return mock_events(url)
        ms = int(min(left, 5.0) * 1000)
        got = control(url, f"wait_events?n={n}&timeout_ms={ms}", "GET", timeout=ms / 1000 + 10)
        if got["ok"]:
            return int(got["events"])


# --- the clients ----------------------------------------------------------------------------

class Adapter:
    """One client under test: track(i), flush(), depth() (events it holds, None if unknown)."""

    def __init__(self, name: str, url: str, hanging: bool = False) -> None:
        self.name = name
        self._flush: Callable[[], None]
        self._depth: Callable[[], Optional[int]]
        self._per_thread: Optional[threading.local] = None
        if name == "bulkhead":
            import bulkhead
            c = bulkhead.Client(token=TOKEN, api_host=url)
            self.track = lambda i: c.track(f"u{i % 1000}", "Bench", PROPS)
            self._flush = lambda: c.flush(60.0) and None
            self._depth = lambda: c.stats().queue_len
            self.closer = lambda: c.close()
        elif name == "mixpanel+bulkhead":
            import bulkhead
            import mixpanel
            consumer = bulkhead.MixpanelConsumer(api_host=url)
            mp = mixpanel.Mixpanel(TOKEN, consumer=consumer)
            self.track = lambda i: mp.track(f"u{i % 1000}", "Bench", PROPS)
            self._flush = lambda: consumer.flush(60.0) and None
            self._depth = lambda: consumer.stats().queue_len
            self.closer = lambda: consumer.close()
        elif name == "segment":
            from segment.analytics import Client as SegmentClient
            logging.getLogger("segment").setLevel(logging.CRITICAL)
            s = SegmentClient(write_key=TOKEN, host=url)
            self.track = lambda i: s.track(user_id=f"u{i % 1000}", event="Bench", properties=PROPS)
            self._flush = s.flush
            self._depth = s.queue.qsize
            self.closer = s.shutdown
        elif name == "posthog":
            from posthog import Posthog
            logging.getLogger("posthog").setLevel(logging.CRITICAL)
            p = Posthog(TOKEN, host=url)
            self.track = lambda i: p.capture("Bench", distinct_id=f"u{i % 1000}", properties=PROPS)
            self._flush = lambda: p.flush(60.0)
            self._depth = lambda: p.queue.qsize()
            self.closer = p.shutdown
        elif name == "mixpanel-buffered":
            import mixpanel

            # One BufferedConsumer per thread: it keeps a plain list and is not thread-safe.
            local = threading.local()
            consumers: List[Any] = []
            lock = threading.Lock()

            def mp() -> Any:
                if not hasattr(local, "mp"):
                    bc = mixpanel.BufferedConsumer(
                        events_url=url + "/track", people_url=url + "/engage",
                        groups_url=url + "/groups", import_url=url + "/import", request_timeout=10,
                    )
                    with lock:
                        consumers.append(bc)
                    local.mp = mixpanel.Mixpanel(TOKEN, consumer=bc)
                return local.mp

            self.track = lambda i: mp().track(f"u{i % 1000}", "Bench", PROPS)
            self._flush = lambda: [bc.flush() for bc in list(consumers)] and None
            self._depth = lambda: sum(len(bc._buffers["events"]) for bc in list(consumers))
            self.closer = self._flush
        else:
            raise SystemExit(f"unknown client {name}")

    def flush(self) -> None:
        self._flush()

    def depth(self) -> Optional[int]:
        try:
            return self._depth()
        except Exception:
            return None


def percentiles(us: List[float]) -> Dict[str, float]:
    s = sorted(us)
    if not s:
        return {"p50": 0.0, "p99": 0.0, "p999": 0.0, "max": 0.0}
    at = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    return {"p50": at(0.5), "p99": at(0.99), "p999": at(0.999), "max": s[-1]}


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed_calls(track: Callable[[int], Any], start: int, n: int) -> List[float]:
    clock = time.perf_counter_ns
    out = [0.0] * n
    for k in range(n):
        t0 = clock()
        track(start + k)
        out[k] = (clock() - t0) / 1000.0
    return out


# --- worker: perf -----------------------------------------------------------------------------

def hash_loop(buf: bytes, seconds: float, track: Optional[Callable[[int], Any]]) -> float:
    """Iterations per second of: sha256 over buf (+ one tracked event)."""
    sha = hashlib.sha256
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(50):
            sha(buf).digest()
            if track is not None:
                track(n)
            n += 1
        if time.perf_counter() >= end:
            return n / (time.perf_counter() - t0)


def worker_perf(args: argparse.Namespace) -> Dict[str, Any]:
    mock = Mock(args.mock)
    url = mock.url
    out: Dict[str, Any] = {"client": args.client}
    try:
        a = Adapter(args.client, url)
        # Warm up imports, connections and the mock.
        for i in range(min(1000, args.events)):
            a.track(i)
        a.flush()
        seq = min(1000, args.events)
        wait_events(url, seq, 30)
        for latency in (0, 5):
            control(url, f"latency?ms={latency}")
            base = mock_events(url)
            cpu0 = cpu_s()
            us = timed_calls(a.track, seq, args.events)
            seq += args.events
            t_last = time.perf_counter()
            a.flush()
            held = wait_events(url, base + args.events, 120) - base
            t_all = time.perf_counter()
            cpu = cpu_s() - cpu0
            out[f"lat{latency}"] = {
                **percentiles(us), "events": args.events, "delivered": held,
                "cpu_us_per_event": cpu * 1e6 / args.events,
                "drain_ms": (t_all - t_last) * 1000 if held >= args.events else None,
            }
        # The CPU-bound loop, at 5 ms latency: baseline, with tracking, baseline again.
        buf = os.urandom(args.hash_bytes)
        half = args.loop_seconds / 2
        base_ips = hash_loop(buf, half, None)
        with_ips = hash_loop(buf, args.loop_seconds, lambda k: a.track(seq + k))
        base_ips = (base_ips + hash_loop(buf, half, None)) / 2
        out["loop"] = {"baseline_ips": base_ips, "tracking_ips": with_ips, "ratio": with_ips / base_ips}
        a.flush()
        if args.client == "bulkhead":
            control(url, "latency?ms=0")
            out["threads4"] = threads4(a, args.events)
        a.closer()
    finally:
        mock.stop()
    return out


def threads4(a: Adapter, events: int) -> Dict[str, Any]:
    per = max(1, events // 4)
    results: List[List[float]] = [[] for _ in range(4)]
    gate = threading.Barrier(4)

    def run(k: int) -> None:
        gate.wait()
        results[k] = timed_calls(a.track, 10_000_000 * (k + 1), per)

    ts = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.perf_counter() - t0
    a.flush()
    allus = [x for r in results for x in r]
    return {**percentiles(allus), "calls_per_s": len(allus) / elapsed}


# --- worker: outage -----------------------------------------------------------------------------

def worker_outage(args: argparse.Namespace) -> Dict[str, Any]:
    mock = Mock(args.mock)
    url = mock.url
    secs = args.outage_seconds
    rate = args.outage_rate  # per thread
    a = Adapter(args.client, url)
    for i in range(100):  # warm up: the first calls start the peers' threads and connections
        a.track(i)
    a.flush()
    samples: List[List[Tuple[float, float]]] = [[], []]  # (start offset s, µs)
    in_call: List[Optional[float]] = [None, None]
    stop = threading.Event()
    t0 = time.perf_counter()

    def producer(k: int) -> None:
        interval = 1.0 / rate
        nxt = t0
        i = k * 100_000_000
        while not stop.is_set():
            now = time.perf_counter()
            if now < nxt:
                time.sleep(nxt - now)
            start = time.perf_counter()
            in_call[k] = start
            a.track(i)
            in_call[k] = None
            samples[k].append((start - t0, (time.perf_counter() - start) * 1e6))
            i += 1
            nxt = max(nxt + interval, time.perf_counter() - 10 * interval)  # no burst catching up
            if start - t0 >= secs:
                break

    depth: List[Optional[int]] = []

    def sampler() -> None:
        for s in range(int(secs)):
            time.sleep(max(0.0, t0 + s + 1 - time.perf_counter()))
            depth.append(a.depth())

    ts = [threading.Thread(target=producer, args=(k,), daemon=True) for k in range(2)]
    sam = threading.Thread(target=sampler, daemon=True)
    for t in ts + [sam]:
        t.start()
    time.sleep(max(0.0, t0 + secs * 0.25 - time.perf_counter()))
    control(url, "down?mode=hang")
    time.sleep(max(0.0, t0 + secs * 0.75 - time.perf_counter()))
    control(url, "up")
    sam.join(secs + 5)
    stop.set()
    for t in ts:
        t.join(max(0.1, t0 + secs + 5 - time.perf_counter()))
    end = time.perf_counter() - t0
    blocked = [end - (s - t0) for s in in_call if s is not None]
    for k, s in enumerate(in_call):
        if s is not None:  # a call still blocked: at least this long
            samples[k].append((s - t0, (time.perf_counter() - s) * 1e6))
    p99: List[Optional[float]] = []
    calls: List[int] = []
    for sec in range(int(secs)):
        us = sorted(x for s in samples for (st, x) in s if sec <= st < sec + 1)
        calls.append(len(us))
        p99.append(us[min(len(us) - 1, int(0.99 * len(us)))] if us else None)
    tracked = sum(len(s) for s in samples)
    out = {"client": args.client, "seconds": secs, "rate_per_thread": rate, "p99_us": p99,
           "calls": calls, "depth": depth, "tracked": tracked, "blocked_at_end_s": blocked,
           "hang_from": secs * 0.25, "hang_to": secs * 0.75}
    # What reached the service within 20 s after the run (bounded: the flush may block).
    threading.Thread(target=a.flush, daemon=True).start()
    out["delivered_20s"] = wait_events(url, tracked + 100, 20) - 100
    mock.stop()
    return out


# --- worker: exit -------------------------------------------------------------------------------

def worker_exit(args: argparse.Namespace) -> None:
    """Fill the client with pending events against a hung service, say READY, return from main.
    The suite times how long the interpreter takes to be gone."""
    if args.client == "none":  # the baseline: the interpreter's own exit
        print("READY " + json.dumps({"tracked": 0, "pending": 0}), flush=True)
        return
    a = Adapter(args.client, args.url)
    # BufferedConsumer sends synchronously every 50 events: with the service hanging the 50th
    # call would block, so it holds at most 49.
    n = 49 if args.client == "mixpanel-buffered" else EXIT_PENDING
    for i in range(n):
        a.track(i)
    print("READY " + json.dumps({"tracked": n, "pending": a.depth()}), flush=True)


def run_exit(mock_bin: str, client: str) -> Dict[str, Any]:
    mock = Mock(mock_bin, "--down", "hang")
    try:
        p = subprocess.Popen([sys.executable, __file__, "worker-exit", client, "--url", mock.url],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert p.stdout is not None
        line = p.stdout.readline()
        t_ready = time.perf_counter()
        info = json.loads(line.split(" ", 1)[1]) if line.startswith("READY ") else {}
        try:
            p.wait(EXIT_CAP_S)
            secs: Optional[float] = time.perf_counter() - t_ready
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            secs = None
        return {"client": client, "exit_s": secs, **info, "delivered": mock_events(mock.url)}
    finally:
        mock.stop()


# --- suite --------------------------------------------------------------------------------------

def calibrate_hash_bytes(target_us: float = 22.0) -> int:
    buf = os.urandom(64 * 1024)
    reps = 300
    t0 = time.perf_counter()
    for _ in range(reps):
        hashlib.sha256(buf).digest()
    per_byte = (time.perf_counter() - t0) / (reps * len(buf))
    return max(256, int(target_us * 1e-6 / per_byte))


def run_worker(kind: str, client: str, args: argparse.Namespace, extra: List[str]) -> Dict[str, Any]:
    cmd = [sys.executable, __file__, kind, client, "--mock", args.mock, *extra]
    print(f"python_peers: {kind} {client}", file=sys.stderr, flush=True)
    # The peers log every dropped event: their stderr goes to a file, shown only on failure.
    with tempfile.TemporaryFile("w+") as err:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, timeout=600)
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        if p.returncode != 0 or not lines:
            err.seek(0)
            print(err.read()[-3000:], file=sys.stderr)
            return {"client": client, "error": f"worker exited {p.returncode}"}
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", nargs="?", default="suite",
                    choices=["suite", "worker-perf", "worker-outage", "worker-exit"])
    ap.add_argument("client", nargs="?")
    ap.add_argument("--mock", default="target/release/bulkhead-mock")
    ap.add_argument("--url")
    ap.add_argument("--out")
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--loop-seconds", type=float, default=3.0)
    ap.add_argument("--hash-bytes", type=int, default=0)
    ap.add_argument("--outage-seconds", type=float, default=40.0)
    ap.add_argument("--outage-rate", type=int, default=500, help="events/s per thread")
    ap.add_argument("--parts", default="perf,outage,exit")
    ap.add_argument("--clients", default=",".join(CLIENTS))
    args = ap.parse_args()

    if args.kind == "worker-perf":
        print(json.dumps(worker_perf(args)), flush=True)
        os._exit(0)  # skip the peers' exit hooks: the exit part measures those
    if args.kind == "worker-outage":
        print(json.dumps(worker_outage(args)), flush=True)
        os._exit(0)
    if args.kind == "worker-exit":
        worker_exit(args)
        return

    hash_bytes = args.hash_bytes or calibrate_hash_bytes()
    parts = args.parts.split(",")
    clients = args.clients.split(",")
    result: Dict[str, Any] = {"hash_bytes": hash_bytes, "notes": NOTES, "python": sys.version.split()[0]}
    common = ["--events", str(args.events), "--loop-seconds", str(args.loop_seconds),
              "--hash-bytes", str(hash_bytes)]
    if "perf" in parts:
        result["perf"] = {c: run_worker("worker-perf", c, args, common) for c in clients}
    if "outage" in parts:
        extra = ["--outage-seconds", str(args.outage_seconds), "--outage-rate", str(args.outage_rate)]
        result["outage"] = {c: run_worker("worker-outage", c, args, extra) for c in clients}
    if "exit" in parts:
        result["exit"] = {}
        for c in ["none", *clients]:
            print(f"python_peers: exit {c}", file=sys.stderr, flush=True)
            result["exit"][c] = run_exit(args.mock, c)
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
