"""fork() and process exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, List

import pytest

import bulkhead
from conftest import Mock

PKG_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_child_tracks_and_each_event_arrives_once(mock: Mock, config: Any) -> None:
    c = bulkhead.Client(**config())
    assert c.track("parent", "before fork")
    assert c.flush(5.0)
    # Something still queued at fork time: the parent delivers it, the child must not.
    mock.post("latency?ms=200")
    for i in range(20):
        c.track("parent", "queued at fork", {"i": i})
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            ok = c.track("child", "from child")
            flushed = c.flush(10.0)
            s = c.stats()
            code = 0 if (ok and flushed and s.sent == 1 and s.enqueued == 1) else 2
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert c.flush(10.0)
    c.close()
    mock.post("latency?ms=0")
    events = mock.events()
    names = [(e["event"], e["properties"]["distinct_id"]) for e in events]
    assert names.count(("before fork", "parent")) == 1
    assert names.count(("from child", "child")) == 1
    assert names.count(("queued at fork", "parent")) == 20
    assert len(events) == 22
    assert mock.stats()["duplicates"] == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_child_reports_its_own_delivery_errors(mock: Mock, config: Any) -> None:
    seen: List[bulkhead.DeliveryError] = []
    c = bulkhead.Client(on_error=seen.append, **config())
    mock.post("fault?kind=reject&count=3")
    for i in range(3):  # one request, hence one error, each
        c.track("parent", f"rejected {i}")
        assert c.flush(5.0).status == "incomplete"
    assert len(seen) == 3
    pid = os.fork()
    if pid == 0:  # child: its client starts a new error sequence, which it must report
        code = 1
        try:
            del seen[:]
            mock.post("fault?kind=reject&count=1")
            c.track("child", "rejected in child")
            c.flush(10.0)
            code = 0 if [e.events for e in seen] == [1] else 2
        except BaseException:
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    c.close()
    assert len(seen) == 3  # the child's error is not the parent's


def test_exit_without_cleanup_against_dead_service(mock: Mock) -> None:
    mock.post("down?mode=hang")
    script = textwrap.dedent(
        f"""
        import bulkhead
        c = bulkhead.Client(token="t", api_host={mock.url!r}, flush_interval_ms=50,
                            request_timeout_ms=30000)
        n = sum(c.track("u", "e", {{"i": i}}) for i in range(10000))
        print(n, flush=True)
        # no flush, no close: the atexit hook must bound the exit (2 s default)
        """
    )
    env = dict(os.environ)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=str(PKG_ROOT.parent),  # not the package source dir: import the installed copy if any
        env={**env, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        capture_output=True,
        text=True,
        timeout=2 + 20,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "10000"
    assert elapsed < 22


def test_exit_without_cleanup_mock_refusing(tmp_path: Path) -> None:
    # Nothing listens on this port (closed right away): connection refused, retries.
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    script = textwrap.dedent(
        f"""
        import bulkhead
        c = bulkhead.Client(token="t", api_host="http://127.0.0.1:{port}")
        for i in range(10000):
            c.track("u", "e")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
        capture_output=True,
        text=True,
        timeout=2 + 20,
    )
    assert proc.returncode == 0, proc.stderr
