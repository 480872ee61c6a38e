"""bulkhead.Client against the mock: wire shapes, errors, guard, flush deadline, threads."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

import bulkhead
from conftest import SOURCE, Mock, find


def test_loaded_bundled_or_repo_library() -> None:
    assert bulkhead.native_version
    assert bulkhead.library_path
    pkg_dir = Path(bulkhead.__file__).resolve().parent
    if "BULKHEAD_LIB" not in os.environ and pkg_dir != SOURCE / "bulkhead":
        # An installed copy: it must use the library bundled inside it.
        assert Path(bulkhead.library_path).resolve().parent == pkg_dir, bulkhead.library_path
    assert set(bulkhead.__all__) >= {"Client", "MixpanelConsumer", "Error", "ClosedError", "Stats"}


def test_track_wire_shape(mock: Mock, config: Any) -> None:
    with bulkhead.Client(**config()) as c:
        when = dt.datetime(2024, 5, 6, 7, 8, 9)
        assert c.track("u1", "Signed up", {"plan": "pro", "n": 3, "at": when, "tags": ["a", "b"], "name": "Zoë 🚀"})
        assert c.track(None, "Anonymous")
        assert c.flush(5.0)
        s = c.stats()
        assert s.sent == 2 and s.enqueued == 2 and s.queue_len == 0
        assert s.circuit_state == "closed"
    events = mock.events()
    assert len(events) == 2
    e = find(events, lambda e: e["event"] == "Signed up")
    assert e is not None
    p = e["properties"]
    assert p["token"] == "test-token"
    assert p["distinct_id"] == "u1"
    assert p["plan"] == "pro" and p["n"] == 3 and p["tags"] == ["a", "b"]
    assert p["at"] == "2024-05-06T07:08:09"  # mixpanel-python's DatetimeSerializer format
    assert p["name"] == "Zoë 🚀"
    assert isinstance(p["time"], int)
    assert p["$insert_id"]
    reqs = [r for r in mock.requests() if r["path"] == "/track"]
    assert reqs and all(r["status"] == 200 for r in reqs)


def test_import_wire_shape(mock: Mock, config: Any) -> None:
    with bulkhead.Client(**config(api_secret="sekrit", gzip=False)) as c:
        t = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
        assert c.import_event("u2", "Old event", t, {"k": "v"})
        assert c.import_event("u3", "Older event", 1500000000)
        assert c.flush(5.0)
    events = {e["event"]: e for e in mock.events()}
    p = events["Old event"]["properties"]
    assert p["distinct_id"] == "u2" and p["k"] == "v" and p["$insert_id"]
    assert p["time"] == int(t.timestamp() * 1000)
    assert events["Older event"]["properties"]["time"] == 1500000000 * 1000
    reqs = [r for r in mock.requests() if r["path"] == "/import"]
    assert reqs
    assert all(r["auth_username"] == "sekrit" for r in reqs)
    assert all("strict=1" in r["query"] for r in reqs)


def test_people_and_group_wire_shapes(mock: Mock, config: Any) -> None:
    with bulkhead.Client(**config()) as c:
        assert c.people_set("u1", {"$email": "a@b.c"})
        assert c.people_set_once("u1", {"first": 1})
        assert c.people_increment("u1", {"logins": 2})
        assert c.people_append("u1", {"list": "x"})
        assert c.people_union("u1", {"set": ["a", "b"]})
        assert c.people_remove("u1", {"list": "x"})
        assert c.people_unset("u1", ["gone"])
        assert c.people_delete("u2")
        assert c.group_set("company", "acme", {"size": 5})
        assert c.group_set_once("company", "acme", {"founded": 1999})
        assert c.group_union("company", "acme", {"tags": ["x"]})
        assert c.group_remove("company", "acme", {"tags": "x"})
        assert c.group_unset("company", "acme", ["old"])
        assert c.group_delete("company", "gone")
        assert c.flush(5.0)
        assert c.stats().sent == 14
    updates = mock.updates()
    assert len(updates) == 14
    people = [u for u in updates if "$distinct_id" in u]
    groups = [u for u in updates if "$group_key" in u]
    assert len(people) == 8 and len(groups) == 6
    ops: Dict[str, Any] = {}
    for u in people:
        assert u["$token"] == "test-token"
        (op,) = [k for k in u if k in ("$set", "$set_once", "$add", "$append", "$union", "$remove", "$unset", "$delete")]
        ops[op] = (u["$distinct_id"], u[op])
    assert ops["$set"] == ("u1", {"$email": "a@b.c"})
    assert ops["$add"] == ("u1", {"logins": 2})
    assert ops["$union"] == ("u1", {"set": ["a", "b"]})
    assert ops["$unset"] == ("u1", ["gone"])
    assert ops["$delete"][0] == "u2"
    g = find(groups, lambda u: "$set" in u)
    assert g is not None and g["$group_key"] == "company" and g["$group_id"] == "acme"
    assert g["$set"] == {"size": 5} and g["$token"] == "test-token"
    assert find(groups, lambda u: "$delete" in u and u["$group_id"] == "gone") is not None
    paths = {r["path"] for r in mock.requests()}
    assert paths == {"/engage", "/groups"}


def test_invalid_input_raises(mock: Mock, config: Any) -> None:
    with pytest.raises(bulkhead.Error) as info:
        bulkhead.Client(**config(no_such_key=1))
    assert "no_such_key" in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError):
        bulkhead.Client(**config(pool_size=0))
    with pytest.raises(ValueError):
        bulkhead.Client(api_host=mock.url)  # no token
    with bulkhead.Client(**config()) as c:
        with pytest.raises(TypeError):
            c.track("u", "e", ["not", "a", "dict"])  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            c.track("u", 5)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            c.track("u", "e", {"x": object()})
        with pytest.raises(ValueError):
            c.track("u", "e", {"x": float("nan")})
        with pytest.raises(TypeError):
            c.import_event("u", "e", "yesterday")  # type: ignore[arg-type]
        with pytest.raises(bulkhead.Error) as info:
            c.send("nowhere", "{}")
        assert info.value.status_name
        with pytest.raises(bulkhead.Error):
            c.send("events", "{not json")
        with pytest.raises(bulkhead.TooLargeError):
            small = bulkhead.Client(**config(max_event_bytes=64))
            small.track("u", "e", {"x": "y" * 200})
        assert c.stats().enqueued == 0


def test_closed(mock: Mock, config: Any) -> None:
    c = bulkhead.Client(**config())
    assert c.track("u", "e")
    assert c.close(5.0) is True
    assert c.close() is True  # idempotent
    assert c.closed
    with pytest.raises(bulkhead.ClosedError):
        c.track("u", "e")
    with pytest.raises(bulkhead.ClosedError):
        c.people_set("u", {"a": 1})
    assert c.stats().sent == 1  # still readable after close
    assert mock.stats()["events"] == 1


def test_guard_drops_exactly(mock: Mock, config: Any) -> None:
    mock.post("down?mode=hang")
    c = bulkhead.Client(**config(queue_capacity=5, request_timeout_ms=300, batch_size=1, pool_size=1))
    results = [c.track("u", f"e{i}") for i in range(50)]
    accepted = results.count(True)
    dropped = results.count(False)
    s = c.stats()
    assert dropped > 0
    assert s.dropped_queue_full == dropped
    assert s.enqueued == accepted
    assert accepted + dropped == 50
    assert c.close(0.1) is False
    s = c.stats()
    assert s.enqueued == s.sent + s.rejected + s.failed + s.queue_len


def test_flush_deadline_releases_gil(mock: Mock, config: Any) -> None:
    mock.post("down?mode=hang")
    c = bulkhead.Client(**config(request_timeout_ms=30000, max_retries=0))
    assert c.track("u", "e")
    progress = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal progress
        while not stop.is_set():
            progress += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        start = time.monotonic()
        before = progress
        ok = c.flush(timeout=0.5)
        elapsed = time.monotonic() - start
        during = progress - before
    finally:
        stop.set()
        t.join()
    assert not ok and ok.timed_out
    assert elapsed < 10  # bounded (generous: no tight timing)
    assert during > 0  # the other Python thread ran while flush waited in the library
    c.close(0.1)


def test_threads_concurrent_tracking(mock: Mock, config: Any) -> None:
    n_threads, per = 8, 500
    with bulkhead.Client(**config()) as c:
        barrier = threading.Barrier(n_threads)
        oks: List[int] = [0] * n_threads

        def work(i: int) -> None:
            barrier.wait()
            for j in range(per):
                if c.track(f"t{i}", "threaded", {"j": j}):
                    oks[i] += 1

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(oks) == n_threads * per
        assert c.flush(10.0)
        s = c.stats()
        assert s.enqueued == n_threads * per
        assert s.sent == n_threads * per
    st = mock.stats()
    assert st["events"] == n_threads * per
    assert st["duplicates"] == 0


def test_delivery_errors_reach_logger_and_callback(
    mock: Mock, config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    mock.post("fault?kind=reject&count=1")
    seen: List[bulkhead.DeliveryError] = []
    main = threading.get_ident()
    threads: List[int] = []

    def on_error(err: bulkhead.DeliveryError) -> None:
        threads.append(threading.get_ident())
        seen.append(err)

    with caplog.at_level(logging.WARNING, logger="bulkhead"):
        with bulkhead.Client(on_error=on_error, **config()) as c:
            c.track("u", "will be rejected")
            c.flush(5.0)
            assert c.stats().rejected == 1
            # Each error is surfaced once.
            c.flush(1.0)
            assert len(seen) == 1
            assert c.errors() and c.errors()[0].seq == seen[0].seq
    assert seen[0].endpoint.endswith("track")
    assert seen[0].events == 1
    assert threads == [main]
    assert any("delivery error" in r.getMessage() for r in caplog.records)


def test_errors_surfaced_from_track_every_n_calls(mock: Mock, config: Any) -> None:
    mock.post("fault?kind=reject&count=1")
    seen: List[bulkhead.DeliveryError] = []
    c = bulkhead.Client(on_error=seen.append, error_check_interval=10, **config(batch_size=1))
    c.track("u", "first")
    mock.wait(lambda s: s["faults_served"] >= 1)
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        c.track("u", "more")  # no flush/stats: track polls every 10 calls
        time.sleep(0.005)
    assert seen and seen[0].outcome
    c.close(2.0)


def test_queue_size_and_stats_invariant(mock: Mock, config: Any) -> None:
    mock.post("down?mode=hang")
    c = bulkhead.Client(**config(request_timeout_ms=200, max_retries=0))
    for i in range(10):
        c.track("u", "e")
    assert c.queue_size == 10  # queued or in flight against the hanging mock
    mock.post("up")
    assert c.flush(10.0)
    s = c.stats()
    assert c.queue_size == 0
    assert s.enqueued == s.sent + s.rejected + s.failed + s.queue_len
    c.close()
