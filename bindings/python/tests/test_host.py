"""Behaviour a host expects: log lines on the host's logger, test mode, honest flush
results, metrics text, errors that are not ValueErrors when the input was fine."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

import bulkhead
from conftest import Mock


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def test_test_mode_keeps_events_and_sends_nothing(mock: Mock, config: Any) -> None:
    with bulkhead.Client(**config(test_mode=True, test_mode_capacity=2)) as c:
        assert c.track("u1", "Signed up", {"plan": "pro"})
        assert c.people_set("u1", {"name": "A"})
        assert c.track("u1", "over the cap") is False
        events = c.test_events()
        assert [e["endpoint"] for e in events] == ["events", "people"]
        assert events[0]["data"]["event"] == "Signed up"
        assert events[0]["data"]["properties"]["plan"] == "pro"
        assert "$insert_id" in events[0]["data"]["properties"]
        c.clear_test_events()
        assert c.test_events() == []
        assert c.flush(5.0)
    assert mock.stats()["requests"] == 0
    with bulkhead.Client(**config()) as normal:
        with pytest.raises(bulkhead.InvalidArgumentError):
            normal.test_events()


def test_flush_says_delivered_incomplete_or_timed_out(mock: Mock, config: Any) -> None:
    port = _closed_port()
    with bulkhead.Client(**config(max_retries=0)) as c:
        assert c.track("u", "ok")
        r = c.flush(5.0)
        assert r and r.delivered and r.status == "delivered"
    cfg = config(max_retries=0)
    cfg["api_host"] = f"http://127.0.0.1:{port}"
    with bulkhead.Client(**cfg) as c:
        assert c.track("u", "lost")
        r = c.flush(5.0)
        assert not r
        assert (r.status, r.failed, r.rejected) == ("incomplete", 1, 0)
        # Reported once.
        assert c.flush(5.0).status == "delivered"


def test_log_lines_reach_the_logger_on_the_calling_thread(
    mock: Mock, config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    mock.post("down?mode=hang")
    cfg = config(queue_capacity=1, request_timeout_ms=60000)
    c = bulkhead.Client(**cfg)
    with caplog.at_level(logging.INFO, logger="bulkhead"):
        assert c.track("u", "held")
        assert c.track("u", "dropped") is False
        # The next call sees the library's hint and logs the one-time warning.
        assert c.track("u", "dropped again") is False
        warnings = [r for r in caplog.records if "queue full" in r.getMessage()]
        assert len(warnings) == 1, caplog.text
        caplog.clear()
        assert c.close(0.0) is False
        assert "1 undelivered events were abandoned" in caplog.text, caplog.text
    mock.post("down?mode=up")


def test_network_errors_name_host_and_cause(config: Any, caplog: pytest.LogCaptureFixture) -> None:
    port = _closed_port()
    cfg = config(max_retries=0)
    cfg["api_host"] = f"http://127.0.0.1:{port}"
    with caplog.at_level(logging.WARNING, logger="bulkhead"):
        with bulkhead.Client(**cfg) as c:
            c.track("u", "e")
            c.flush(5.0)
            err = c.errors()[-1]
    assert err.http_status is None
    assert f"could not connect to 127.0.0.1:{port}" in err.message
    assert f"127.0.0.1:{port}" in caplog.text


def test_metrics_text(mock: Mock, config: Any) -> None:
    with bulkhead.Client(**config(name="py")) as c:
        c.track("u", "e")
        assert c.flush(5.0)
        text = c.metrics_text()
    assert '# TYPE bulkhead_sent_total counter' in text
    assert 'bulkhead_sent_total{client="py"} 1' in text
    assert 'bulkhead_queue_len{client="py"} 0' in text


def test_closed_error_is_not_a_value_error(config: Any) -> None:
    c = bulkhead.Client(**config())
    c.close()
    with pytest.raises(bulkhead.ClosedError) as info:
        c.track("u", "e")
    assert not isinstance(info.value, ValueError)
    assert isinstance(info.value, bulkhead.Error)
    with pytest.raises(ValueError):
        bulkhead.Client(**config(pool_sise=3))
    assert bulkhead.Client(**config()).stats().errors_overwritten == 0


def test_calls_that_never_wait_keep_the_gil_and_waiting_calls_release_it() -> None:
    """Issue 10: track and its kin go through PyDLL (no GIL release and re-acquire per call,
    the hand-off behind threaded p99 tails); flush, close, shutdown and new go through CDLL,
    so a thread waiting in them lets the others run."""
    import ctypes

    from bulkhead import _ffi, client

    pythonapi = ctypes._FUNCFLAG_PYTHONAPI  # type: ignore[attr-defined]
    keeps_gil = [
        client._track,
        client._import,
        client._people,
        client._group,
        client._send_cred,
        client._stats,
        client._queue_len,
    ]
    for fn in keeps_gil:
        assert fn._flags_ & pythonapi, fn
    for fn in [client._flush, client._close, client._flush_ex, _ffi.lib.bulkhead_shutdown,
               _ffi.lib.bulkhead_client_new]:
        assert not fn._flags_ & pythonapi, fn


def test_track_and_people_without_argtypes_pass_every_length_intact(
    config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10: `track` and `people_*` call the library without argtypes, lengths as C ints
    in registers and the last as a c_size_t. Texts of many lengths must arrive intact through
    that call and through the declared one it falls back to for long texts."""
    from bulkhead import _ffi, client

    if _ffi._WIDENS_REGISTER_INTS:
        assert _ffi.unchecked_track.argtypes is None
        assert _ffi.unchecked_people.argtypes is None
    lengths = [0, 1, 2, 7, 8, 15, 16, 17, 31, 32, 63, 64, 127, 128, 255, 256, 1000, 4095, 4096]
    for limit in (client._UNCHECKED_LIMIT, 0):
        monkeypatch.setattr(client, "_UNCHECKED_LIMIT", limit)
        with bulkhead.Client(**config(test_mode=True)) as c:
            for n in lengths:
                assert c.track("d" * n or None, "e" * (n + 1), {"p": "é" * n, "n": n})
                assert c.track("d" * (n + 1), "f" * (n + 1))
                assert c.people_set("d" * (n + 1), {"v": "y" * n})
            events = [e["data"] for e in c.test_events()]
        assert len(events) == 3 * len(lengths)
        for i, n in enumerate(lengths):
            tracked, bare, person = events[3 * i : 3 * i + 3]
            assert tracked["event"] == "e" * (n + 1)
            props = tracked["properties"]
            assert (props.get("distinct_id"), props["p"], props["n"]) == (
                "d" * n or None,
                "é" * n,
                n,
            )
            assert bare["event"] == "f" * (n + 1)
            assert bare["properties"]["distinct_id"] == "d" * (n + 1)
            assert (person["$distinct_id"], person["$set"]) == ("d" * (n + 1), {"v": "y" * n})


def test_orjson_when_installed_writes_what_json_writes() -> None:
    """Issue 10: properties go through orjson when the `fast` extra is installed, with the
    same result as the `json` path (datetimes, dates, sets, tuples, non-str keys, nesting,
    unicode); what orjson refuses falls back to `json`."""
    import datetime as dt
    import json

    from bulkhead import client

    pytest.importorskip("orjson")
    assert client._dumps is not client._dumps_std, "orjson installed but not used"
    samples = [
        {"plan": "pro", "n": 3, "x": 1.5, "ok": True, "none": None, "list": [1, "a", {"b": []}]},
        {"when": dt.datetime(2026, 11, 27, 12, 30, 5, 123456), "day": dt.date(2026, 11, 27)},
        {"tags": ("a", "b"), "set": {"only"}, 1: "int key", "é": "ü\u2028\"\\\n"},
        {"big": 2**70, "neg": -(2**63)},
    ]
    for value in samples:
        fast, std = client._dumps(value), client._dumps_std(value)
        assert json.loads(fast) == json.loads(std), (fast, std)
        assert list(json.loads(fast)) == list(json.loads(std)), "key order kept"
    with pytest.raises(TypeError):
        client._dumps({"x": object()})
    for bad in [float("nan"), float("inf"), -float("inf")]:
        for value in [{"x": bad}, {"x": [1, {"y": bad}]}, {"x": (bad,)}]:
            with pytest.raises(ValueError):
                client._dumps(value)
