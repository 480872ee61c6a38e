"""Fixtures: the project's mock ingestion server (bulkhead-mock) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
SOURCE = Path(__file__).resolve().parents[1]  # bindings/python


def _prefer_installed_package() -> None:
    """`python -m pytest` from bindings/python puts the source tree first on sys.path, which
    would shadow the installed package (the one with the bundled library). When bulkhead is
    installed, test that copy, unless BULKHEAD_TEST_SOURCE=1."""
    if os.environ.get("BULKHEAD_TEST_SOURCE") == "1":
        return
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        distribution("bulkhead-mixpanel")
    except PackageNotFoundError:
        return
    except Exception:
        return
    keep = []
    for entry in sys.path:
        try:
            same = Path(entry or os.getcwd()).resolve() == SOURCE
        except OSError:
            same = False
        if not same:
            keep.append(entry)
    sys.path[:] = keep
    assert "bulkhead" not in sys.modules or not sys.modules["bulkhead"].__file__.startswith(str(SOURCE))


_prefer_installed_package()


def mock_binary() -> str:
    env = os.environ.get("BULKHEAD_MOCK")
    if env:
        return env
    for profile in ("release", "debug"):
        p = REPO / "target" / profile / "bulkhead-mock"
        if p.exists():
            return str(p)
    pytest.skip("bulkhead-mock not built (cargo build --release -p bulkhead-mock) and BULKHEAD_MOCK unset")
    raise AssertionError  # unreachable


class Mock:
    """A running bulkhead-mock process and its /_mock/* control API."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [mock_binary(), "--port", "0", "--exit-on-stdin-eof"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line.startswith("http://127.0.0.1:"), f"mock said {line!r}"
        self.url = line

    def _call(self, method: str, path: str) -> Any:
        req = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def get(self, what: str) -> Any:
        return self._call("GET", "/_mock/" + what)

    def post(self, what: str) -> Any:
        return self._call("POST", "/_mock/" + what)

    def stats(self) -> Dict[str, Any]:
        return self.get("stats")  # type: ignore[no-any-return]

    def events(self) -> List[Dict[str, Any]]:
        return self.get("events")  # type: ignore[no-any-return]

    def updates(self) -> List[Dict[str, Any]]:
        return self.get("updates")  # type: ignore[no-any-return]

    def requests(self) -> List[Dict[str, Any]]:
        return self.get("requests")  # type: ignore[no-any-return]

    def wait(self, pred: Callable[[Dict[str, Any]], bool], timeout: float = 10.0) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            s = self.stats()
            if pred(s) or time.monotonic() > deadline:
                return s
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None:
                f.close()


@pytest.fixture
def mock() -> Iterator[Mock]:
    m = Mock()
    try:
        yield m
    finally:
        m.stop()


def client_config(url: str, **extra: Any) -> Dict[str, Any]:
    """Fast settings for tests against the mock."""
    cfg: Dict[str, Any] = dict(
        token="test-token",
        api_host=url,
        flush_interval_ms=50,
        backoff_initial_ms=10,
        backoff_max_ms=100,
        request_timeout_ms=2000,
        connect_timeout_ms=1000,
    )
    cfg.update(extra)
    return cfg


@pytest.fixture
def config(mock: Mock) -> Callable[..., Dict[str, Any]]:
    def make(**extra: Any) -> Dict[str, Any]:
        return client_config(mock.url, **extra)

    return make


def find(items: List[Dict[str, Any]], pred: Callable[[Dict[str, Any]], bool]) -> Optional[Dict[str, Any]]:
    for i in items:
        if pred(i):
            return i
    return None
