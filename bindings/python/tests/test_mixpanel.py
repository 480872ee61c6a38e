"""The real mixpanel-python package with bulkhead.MixpanelConsumer (nothing patched)."""

from __future__ import annotations

from typing import Any

import pytest

import bulkhead
from conftest import Mock, client_config, find

mixpanel = pytest.importorskip("mixpanel")


def consumer(mock: Mock, **extra: Any) -> bulkhead.MixpanelConsumer:
    cfg = client_config(mock.url, **extra)
    del cfg["token"]  # the consumer takes the token from each message
    return bulkhead.MixpanelConsumer(**cfg)


def test_mixpanel_shapes_arrive(mock: Mock) -> None:
    c = consumer(mock, gzip=False)
    mp = mixpanel.Mixpanel("mp-token", consumer=c)
    mp.track("u1", "Played", {"level": 3})
    mp.people_set("u1", {"$name": "Ann"})
    mp.group_set("company", "acme", {"size": 5})
    mp.import_data(None, "u1", "Long ago", 1500000000, {"old": True})
    assert c.flush(5.0)
    stats = c.stats()
    assert stats.sent == 4 and stats.rejected == 0 and stats.failed == 0

    events = mock.events()
    t = find(events, lambda e: e["event"] == "Played")
    assert t is not None
    p = t["properties"]
    assert p["token"] == "mp-token" and p["distinct_id"] == "u1" and p["level"] == 3
    assert p["mp_lib"] == "python"  # mixpanel-python's own properties are kept
    assert p["$lib_version"] == mixpanel.__version__
    i = find(events, lambda e: e["event"] == "Long ago")
    assert i is not None
    assert i["properties"]["token"] == "mp-token" and i["properties"]["old"] is True
    assert i["properties"]["$insert_id"]

    updates = mock.updates()
    pu = find(updates, lambda u: "$distinct_id" in u)
    assert pu is not None and pu["$token"] == "mp-token" and pu["$set"] == {"$name": "Ann"}
    gu = find(updates, lambda u: "$group_key" in u)
    assert gu is not None and gu["$token"] == "mp-token"
    assert gu["$group_id"] == "acme" and gu["$set"] == {"size": 5}

    reqs = mock.requests()
    assert {r["path"] for r in reqs} == {"/track", "/engage", "/groups", "/import"}
    imp = [r for r in reqs if r["path"] == "/import"]
    # No credentials anywhere: the message's own token authenticates /import (the
    # consumer has no token of its own).
    assert all(r["auth_username"] == "mp-token" for r in imp)
    c.close()


def test_mixpanel_import_credentials(mock: Mock) -> None:
    c = consumer(mock)
    mp = mixpanel.Mixpanel("mp-token", consumer=c)
    mp.import_data("the-key", "u1", "With secret", 1500000000, api_secret="the-secret")
    c.send("imports", '{"event":"Tuple","properties":{"distinct_id":"u","time":1500000000,"token":"t"}}', ("k2", "s2"))
    assert c.flush(5.0)
    users = sorted(r["auth_username"] for r in mock.requests() if r["path"] == "/import")
    assert "the-secret" in users and "s2" in users
    c.close()


def test_service_account_credentials(mock: Mock) -> None:
    creds = mixpanel.ServiceAccountCredentials("sa-user", "sa-secret", "12345")
    c = bulkhead.MixpanelConsumer(credentials=creds, **{k: v for k, v in client_config(mock.url).items() if k != "token"})
    mp = mixpanel.Mixpanel("mp-token", consumer=c)
    mp.import_data(None, "u1", "SA import", 1500000000)
    assert c.flush(5.0)
    (r,) = [r for r in mock.requests() if r["path"] == "/import"]
    assert r["auth_username"] == "sa-user" and r["auth_password"] == "sa-secret"
    assert "project_id=12345" in r["query"]
    c.close()


def test_consumer_errors_only_for_bad_input(mock: Mock) -> None:
    c = consumer(mock)
    with pytest.raises(mixpanel.MixpanelException) as info:
        c.send("nowhere", "{}")
    assert "No such endpoint" in str(info.value)
    with pytest.raises(mixpanel.MixpanelException):
        c.send("events", "{not json")
    # Delivery trouble never raises.
    mock.post("down?mode=refuse")
    mp = mixpanel.Mixpanel("mp-token", consumer=c)
    mp.track("u", "while down")
    assert c.flush(0.2) in (True, False)
    c.close(0.1)
    mp.track("u", "after close")  # dropped, no exception
    assert c.flush() in (True, False)


def test_consumer_queue_full_never_raises(mock: Mock) -> None:
    mock.post("down?mode=hang")
    c = consumer(mock, queue_capacity=2, request_timeout_ms=300)
    mp = mixpanel.Mixpanel("mp-token", consumer=c)
    for i in range(20):
        mp.track("u", f"e{i}")
    s = c.stats()
    assert s.dropped_queue_full > 0
    assert s.enqueued + s.dropped_queue_full == 20
    c.close(0.1)
