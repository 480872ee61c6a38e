"""The disk spool (``spool_dir``) through the Python binding: the real library over real HTTP
against the mock, and real files.

- an outage longer than the queue: nothing dropped, every event at the mock exactly once
  after recovery, the counters account for every event;
- forked children and their parent sharing one spool directory during an outage: the
  children close (their events stay on disk) and exit; once the service is back, the
  parent delivers every event of every process exactly once;
- the drop-in path: mixpanel-python's ``Mixpanel`` with ``bulkhead.MixpanelConsumer`` and a
  spool directory.

A hang fails the test (faulthandler's watchdog ends the process with every thread's stack;
forked children have their own, and are killed by the parent past a deadline) instead of
blocking the suite. Nothing here asserts a duration.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

import bulkhead
from conftest import Mock, client_config

#: Generous: "it happened at all", never "it happened fast".
LONG_S = 60.0
#: The whole test, hang included, ends within this (the process is ended with stacks).
WATCHDOG_S = 240.0

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX spool and fork()")


@pytest.fixture(autouse=True)
def watchdog() -> Iterator[None]:
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def spool_config(mock: Mock, spool_dir: Path, **extra: Any) -> Dict[str, Any]:
    """Quick timings, a small queue, a breaker that opens at the first failure and a
    fdatasync after every spool write (tests/spool.rs uses the same)."""
    cfg = client_config(
        mock.url,
        flush_interval_ms=20,
        backoff_initial_ms=5,
        backoff_max_ms=20,
        max_retries=1,
        retry_budget_ms=300,
        circuit_failure_threshold=1,
        circuit_cooldown_ms=200,
        circuit_cooldown_max_ms=400,
        queue_capacity=100,
        batch_size=50,
        spool_dir=str(spool_dir),
        spool_sync_interval_ms=0,
    )
    cfg.update(extra)
    return cfg


def wait_until(what: str, pred: Callable[[], bool], timeout: float = LONG_S) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


def segments(spool_dir: Path) -> List[Path]:
    return sorted(spool_dir.glob("*.seg"))


def settled(s: bulkhead.Stats) -> bool:
    """Nothing in memory or in the hand-off to the spool's writer."""
    return s.queue_len == 0 and s.spool_pending == 0


def assert_accounted(s: bulkhead.Stats) -> None:
    assert s.enqueued + s.replayed == (
        s.sent + s.rejected + s.failed + s.spooled + s.queue_len + s.spool_pending
    ), s


def assert_once_at_mock(mock: Mock, expected: Counter[str]) -> None:
    """The mock holds exactly the events in ``expected`` (event name -> count), each once."""
    m = mock.stats()
    total = sum(expected.values())
    assert (m["events"], m["duplicates"]) == (total, 0), m
    events = mock.events()
    ids = Counter(e["properties"]["$insert_id"] for e in events)
    assert len(ids) == total and max(ids.values()) == 1, "an $insert_id arrived twice"
    keys = Counter((e["event"], e["properties"]["distinct_id"]) for e in events)
    assert max(keys.values()) == 1, "an event arrived twice under new $insert_ids"
    assert Counter(e["event"] for e in events) == expected


def test_an_outage_longer_than_the_queue_loses_nothing(mock: Mock, tmp_path: Path) -> None:
    n = 3000  # thirty times what the queue holds
    spool_dir = tmp_path / "spool"
    mock.post("down?mode=refuse")
    c = bulkhead.Client(**spool_config(mock, spool_dir))
    queued = [c.track(f"u{i}", "Outage", {"n": i}) for i in range(n)]
    assert all(queued), f"{queued.count(False)} of {n} events refused"
    s = c.stats()
    assert (s.enqueued, s.dropped_queue_full) == (n, 0), s
    wait_until("the outage's events to reach the disk", lambda: c.stats().spooled > 0 and settled(c.stats()))
    assert segments(spool_dir)
    assert mock.stats()["events"] == 0

    mock.post("up")
    wait_until("every event at the mock", lambda: mock.stats()["events"] >= n)
    assert c.flush(LONG_S), c.stats()
    wait_until("the replay to finish", lambda: (lambda s: s.spool_records == 0 and settled(s))(c.stats()))
    assert_once_at_mock(mock, Counter({"Outage": n}))
    s = c.stats()
    assert s.dropped_queue_full + s.failed + s.rejected == 0, s
    assert s.replayed == s.spooled, s
    assert s.sent == n, s
    assert_accounted(s)
    assert c.close(LONG_S)
    assert_accounted(c.stats())
    assert not segments(spool_dir), "replayed segments are removed"


CHILDREN = 4
PER_CHILD = 1000
PER_PARENT = 1000
CHILD_WATCHDOG_S = 90.0
#: The breaker's cooldown in the fork test: short, so replay probes the dead service while
#: the children are still tracking and closing (their records read back and spooled anew
#: must still arrive once).
FORK_COOLDOWN_MS = 200


def fork_config(mock: Mock, spool_dir: Path) -> Dict[str, Any]:
    return spool_config(
        mock, spool_dir, circuit_cooldown_ms=FORK_COOLDOWN_MS, circuit_cooldown_max_ms=FORK_COOLDOWN_MS
    )


def spool_child(index: int, inherited: bulkhead.Client, mock: Mock, spool_dir: Path, reports: Path) -> None:
    """In a forked child: tracks its events while the service is down, closes (what is
    pending goes to the spool), reports its counters and leaves. Never returns."""
    code = 1
    try:
        stack_file = open(reports / f"child-{index}.stack", "w")
        faulthandler.dump_traceback_later(CHILD_WATCHDOG_S - 10, file=stack_file, exit=True)
        # Even children use the client made before fork() (gunicorn --preload style); odd
        # ones make their own on the same directory.
        own = index % 2 == 1
        c = bulkhead.Client(**fork_config(mock, spool_dir)) if own else inherited
        queued = sum(1 for i in range(PER_CHILD) if c.track(f"c{index}-{i}", f"Child {index}", {"i": i}))
        deadline = time.monotonic() + LONG_S
        while not settled(c.stats()) and time.monotonic() < deadline:
            time.sleep(0.02)
        closed = c.close(10.0)
        report = {"index": index, "own_client": own, "queued": queued, "closed": closed,
                  "stats": c.stats().__dict__}
        (reports / f"child-{index}.json").write_text(json.dumps(report))
        bulkhead.shutdown(5.0)
        code = 0
    except BaseException:
        try:
            (reports / f"child-{index}.error").write_text(traceback.format_exc())
        except BaseException:
            pass
    finally:
        os._exit(code)  # a forked pytest process must not run pytest's own exit path


def wait_child(pid: int, deadline: float) -> str:
    """"ok", "failed" or "hung" (killed at the deadline)."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return "ok" if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 else f"failed ({status})"
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return "hung"
        time.sleep(0.01)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_children_and_parent_share_a_spool_and_every_event_arrives_once(
    mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No log lines: a stream lock held by another thread at fork() would stay held in the
    # child (a hazard of fork() with threads in Python, not of the library).
    monkeypatch.setattr(logging.getLogger("bulkhead"), "disabled", True)
    spool_dir = tmp_path / "spool"
    reports = tmp_path / "reports"
    reports.mkdir()
    mock.post("down?mode=refuse")
    parent = bulkhead.Client(**fork_config(mock, spool_dir))
    # Some of the parent's events before the children exist, some while they run.
    half = PER_PARENT // 2
    assert all(parent.track(f"p-{i}", "Parent", {"i": i}) for i in range(half))
    pids = []
    # A child cannot re-arm a watchdog armed before fork() (faulthandler would wait for the
    # parent's watchdog thread, which the child does not have): disarm it around the forks.
    faulthandler.cancel_dump_traceback_later()
    for index in range(CHILDREN):
        pid = os.fork()
        if pid == 0:
            spool_child(index, parent, mock, spool_dir, reports)
        pids.append(pid)
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    assert all(parent.track(f"p-{i}", "Parent", {"i": i}) for i in range(half, PER_PARENT))
    deadline = time.monotonic() + CHILD_WATCHDOG_S
    outcomes = [wait_child(pid, deadline) for pid in pids]
    problems = [p.read_text() for p in reports.glob("*.error")]
    problems += [f"{p.name}:\n{p.read_text()}" for p in reports.glob("*.stack") if p.stat().st_size]
    assert outcomes == ["ok"] * CHILDREN, f"{outcomes}\n{''.join(problems[:2])}"
    assert not problems, problems[0]
    for index in range(CHILDREN):
        r = json.loads((reports / f"child-{index}.json").read_text())
        s = r["stats"]
        assert r["queued"] == PER_CHILD, r
        # Nothing delivered (the service is down), nothing dropped or given up: everything
        # went to the spool, at the latest at close.
        assert r["closed"], r
        assert s["enqueued"] == PER_CHILD and s["dropped_queue_full"] == 0, r
        assert (s["failed"], s["sent"], s["queue_len"], s["spool_pending"]) == (0, 0, 0, 0), r
        assert s["spooled"] - s["replayed"] == PER_CHILD, r
    wait_until("the parent's events on disk", lambda: settled(parent.stats()))
    s = parent.stats()
    assert (s.enqueued, s.dropped_queue_full, s.failed) == (PER_PARENT, 0, 0), s
    assert segments(spool_dir)
    assert mock.stats()["events"] == 0

    # The service is back: the parent replays its own events and takes over the segments
    # the children (all exited) left.
    total = PER_PARENT + CHILDREN * PER_CHILD
    mock.post("up")
    wait_until("every process's events at the mock", lambda: mock.stats()["events"] >= total)
    wait_until("the spool to empty", lambda: not segments(spool_dir))
    assert parent.flush(LONG_S), parent.stats()
    expected = Counter({"Parent": PER_PARENT})
    for index in range(CHILDREN):
        expected[f"Child {index}"] = PER_CHILD
    assert_once_at_mock(mock, expected)
    s = parent.stats()
    assert s.failed + s.rejected + s.dropped_queue_full == 0, s
    assert s.sent == total, s
    assert_accounted(s)
    assert parent.close(LONG_S)
    assert list(spool_dir.iterdir()) == [], "nothing left behind once everything is delivered"


def test_dropin_consumer_with_a_spool_drops_nothing_in_an_outage(mock: Mock, tmp_path: Path) -> None:
    mixpanel = pytest.importorskip("mixpanel")
    n = 2000
    spool_dir = tmp_path / "spool"
    mock.post("down?mode=refuse")
    cfg = spool_config(mock, spool_dir)
    del cfg["token"]  # the token comes with each message mixpanel-python builds
    consumer = bulkhead.MixpanelConsumer(**cfg)
    mp = mixpanel.Mixpanel("mp-token", consumer=consumer)
    for i in range(n):
        mp.track(f"u{i}", "Dropin outage", {"i": i})
    s = consumer.stats()
    assert (s.enqueued, s.dropped_queue_full, s.dropped_invalid) == (n, 0, 0), s
    wait_until("the outage's events to reach the disk", lambda: settled(consumer.stats()))
    assert consumer.stats().spooled > 0

    mock.post("up")
    wait_until("every event at the mock", lambda: mock.stats()["events"] >= n)
    assert consumer.flush(LONG_S), consumer.stats()
    wait_until("the replay to finish", lambda: (lambda s: s.spool_records == 0 and settled(s))(consumer.stats()))
    assert_once_at_mock(mock, Counter({"Dropin outage": n}))
    assert {e["properties"]["token"] for e in mock.events()} == {"mp-token"}
    s = consumer.stats()
    assert s.failed + s.rejected == 0, s
    assert_accounted(s)
    assert consumer.close(LONG_S)
    assert not segments(spool_dir)


def test_a_restart_mid_outage_after_a_replay_probe_delivers_each_event_once(
    mock: Mock, tmp_path: Path
) -> None:
    # A deploy during a long outage: the old process spooled, its replay probed the dead
    # service (reading records back), then it closed; the new one delivers after recovery.
    n = 1000
    spool_dir = tmp_path / "spool"
    mock.post("down?mode=refuse")
    old = bulkhead.Client(**spool_config(mock, spool_dir))
    assert all(old.track(f"u{i}", "Restart", {"i": i}) for i in range(n))
    wait_until("a replay probe during the outage", lambda: old.stats().replayed > 0)
    assert old.close(LONG_S)
    s = old.stats()
    assert (s.enqueued, s.failed, s.dropped_queue_full) == (n, 0, 0), s
    assert_accounted(s)

    mock.post("up")
    new = bulkhead.Client(**spool_config(mock, spool_dir))
    wait_until("every event at the mock", lambda: mock.stats()["events"] >= n)
    wait_until("the spool to empty", lambda: not segments(spool_dir))
    assert new.flush(LONG_S), new.stats()
    try:
        assert_once_at_mock(mock, Counter({"Restart": n}))
        assert new.stats().replayed == n, new.stats()
    finally:
        new.close(LONG_S)
