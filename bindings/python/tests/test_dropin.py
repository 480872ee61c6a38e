"""Drop-in parity: every method of mixpanel-python's ``Mixpanel`` (from PyPI, unpatched)
that goes through its consumer, sent through ``bulkhead.MixpanelConsumer`` with no token of
its own, checked against what the mock received."""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

import bulkhead
from conftest import Mock, client_config

mixpanel = pytest.importorskip("mixpanel")

TOKEN = "mp-token"
Call = Callable[[Any], Any]


def make_consumer(mock: Mock, **extra: Any) -> bulkhead.MixpanelConsumer:
    cfg = client_config(mock.url, **extra)
    del cfg["token"]  # as in the docs: MixpanelConsumer() takes the token from each message
    return bulkhead.MixpanelConsumer(**cfg)


@pytest.fixture
def sdk(mock: Mock) -> Iterator[Tuple[Any, bulkhead.MixpanelConsumer]]:
    c = make_consumer(mock)
    try:
        yield mixpanel.Mixpanel(TOKEN, consumer=c), c
    finally:
        c.close(0.5)


def delivered(c: bulkhead.MixpanelConsumer, n: int = 1) -> None:
    assert c.flush(10.0)
    s = c.stats()
    assert (s.enqueued, s.sent, s.rejected, s.failed, s.dropped_invalid) == (n, n, 0, 0, 0), s


def only_request(mock: Mock, path: str) -> Dict[str, Any]:
    reqs = mock.requests()
    assert [r["path"] for r in reqs] == [path], reqs
    assert reqs[0]["status"] == 200 and reqs[0]["records"] == 1, reqs
    return reqs[0]  # type: ignore[no-any-return]


def only_update(mock: Mock) -> Dict[str, Any]:
    updates: List[Dict[str, Any]] = mock.updates()
    assert len(updates) == 1, updates
    return updates[0]


OPERATIONS = {"$set", "$set_once", "$add", "$append", "$union", "$remove", "$unset", "$delete"}

# (method, call, operation, value) for /engage; every update is for distinct_id "u1".
PEOPLE: List[Tuple[str, Call, str, Any]] = [
    ("people_set", lambda mp: mp.people_set("u1", {"$name": "Ann"}), "$set", {"$name": "Ann"}),
    ("people_set_once", lambda mp: mp.people_set_once("u1", {"first": 1}), "$set_once", {"first": 1}),
    ("people_increment", lambda mp: mp.people_increment("u1", {"n": -2}), "$add", {"n": -2}),
    ("people_append", lambda mp: mp.people_append("u1", {"items": "x"}), "$append", {"items": "x"}),
    ("people_union", lambda mp: mp.people_union("u1", {"tags": ["a", "b"]}), "$union", {"tags": ["a", "b"]}),
    ("people_unset", lambda mp: mp.people_unset("u1", ["old"]), "$unset", ["old"]),
    ("people_remove", lambda mp: mp.people_remove("u1", {"items": "x"}), "$remove", {"items": "x"}),
    ("people_delete", lambda mp: mp.people_delete("u1"), "$delete", ""),
    (
        "people_track_charge",
        lambda mp: mp.people_track_charge("u1", 9.5, {"sku": "a"}),
        "$append",
        {"$transactions": {"sku": "a", "$amount": 9.5}},
    ),
    ("people_clear_charges", lambda mp: mp.people_clear_charges("u1"), "$unset", ["$transactions"]),
    (
        "people_update",
        lambda mp: mp.people_update({"$distinct_id": "u1", "$set": {"x": 1}}),
        "$set",
        {"x": 1},
    ),
]

# (method, call, operation, value) for /groups; every update is for company/acme.
GROUPS: List[Tuple[str, Call, str, Any]] = [
    ("group_set", lambda mp: mp.group_set("company", "acme", {"size": 5}), "$set", {"size": 5}),
    ("group_set_once", lambda mp: mp.group_set_once("company", "acme", {"since": 2020}), "$set_once", {"since": 2020}),
    ("group_union", lambda mp: mp.group_union("company", "acme", {"tags": ["a"]}), "$union", {"tags": ["a"]}),
    ("group_unset", lambda mp: mp.group_unset("company", "acme", ["old"]), "$unset", ["old"]),
    ("group_remove", lambda mp: mp.group_remove("company", "acme", {"tags": "a"}), "$remove", {"tags": "a"}),
    ("group_delete", lambda mp: mp.group_delete("company", "acme"), "$delete", ""),
    (
        "group_update",
        lambda mp: mp.group_update({"$group_key": "company", "$group_id": "acme", "$add": {"n": 1}}),
        "$add",
        {"n": 1},
    ),
]


@pytest.mark.parametrize("name,call,op,value", PEOPLE, ids=[p[0] for p in PEOPLE])
def test_people_methods(sdk: Any, mock: Mock, name: str, call: Call, op: str, value: Any) -> None:
    mp, c = sdk
    call(mp)
    delivered(c)
    u = only_update(mock)
    assert u["$token"] == TOKEN and u["$distinct_id"] == "u1"
    assert u[op] == value
    assert OPERATIONS.intersection(u) == {op}, u
    assert abs(u["$time"] - time.time()) < 600  # mixpanel-python's own $time, untouched
    r = only_request(mock, "/engage")
    assert r["auth_username"] is None


@pytest.mark.parametrize("name,call,op,value", GROUPS, ids=[g[0] for g in GROUPS])
def test_group_methods(sdk: Any, mock: Mock, name: str, call: Call, op: str, value: Any) -> None:
    mp, c = sdk
    call(mp)
    delivered(c)
    u = only_update(mock)
    assert (u["$token"], u["$group_key"], u["$group_id"]) == (TOKEN, "company", "acme")
    assert u[op] == value
    assert OPERATIONS.intersection(u) == {op}, u
    only_request(mock, "/groups")


def test_track(sdk: Any, mock: Mock) -> None:
    mp, c = sdk
    mp.track("u1", "Played", {"level": 3, "tags": ["a"]}, meta={"ip": 0})
    delivered(c)
    (e,) = mock.events()
    assert e["event"] == "Played"
    p = e["properties"]
    assert (p["token"], p["distinct_id"], p["level"], p["tags"]) == (TOKEN, "u1", 3, ["a"])
    assert (p["mp_lib"], p["$lib_version"]) == ("python", mixpanel.__version__)
    assert abs(p["time"] - time.time()) < 600  # seconds, as a float: kept as sent
    assert len(p["$insert_id"]) == 32  # mixpanel-python's uuid4 hex, kept
    only_request(mock, "/track")


@pytest.mark.parametrize(
    "keys,user",
    [((None, None), TOKEN), (("the-key", "the-secret"), "the-secret"), (("the-key", None), "the-key")],
    ids=["token", "api_secret", "api_key"],
)
def test_import_data(sdk: Any, mock: Mock, keys: Tuple[Any, Any], user: str) -> None:
    mp, c = sdk
    api_key, api_secret = keys
    mp.import_data(api_key, "u1", "Long ago", 1500000000, {"old": True}, api_secret=api_secret)
    delivered(c)
    (e,) = mock.events()
    p = e["properties"]
    assert e["event"] == "Long ago"
    assert (p["token"], p["distinct_id"], p["time"], p["old"]) == (TOKEN, "u1", 1500000000, True)
    r = only_request(mock, "/import")
    assert r["auth_username"] == user and r["auth_password"] in ("", None)
    assert "strict=1" in r["query"]


@pytest.mark.parametrize(
    "keys,user", [((None, None), TOKEN), (("the-key", "the-secret"), "the-secret")], ids=["token", "api_secret"]
)
def test_merge_is_queued_for_import(sdk: Any, mock: Mock, keys: Tuple[Any, Any], user: str) -> None:
    """Mixpanel.merge sends {"event":"$merge","properties":{"$distinct_ids":[...],"token":...}}
    to "imports": no time, no distinct_id. It used to raise MixpanelException here."""
    mp, c = sdk
    api_key, api_secret = keys
    mp.merge(api_key, "anon-1", "user-1", api_secret=api_secret)
    assert c.flush(10.0)
    s = c.stats()
    assert (s.enqueued, s.dropped_invalid, s.failed) == (1, 0, 0), s
    (r,) = mock.requests()
    assert (r["path"], r["records"], r["auth_username"]) == ("/import", 1, user)
    assert "strict=1" in r["query"]


def test_merge_is_accepted(sdk: Any, mock: Mock) -> None:
    mp, c = sdk
    mp.merge(None, "anon-1", "user-1")
    delivered(c)
    (e,) = mock.events()
    p = e["properties"]
    assert e["event"] == "$merge"
    assert (p["$distinct_ids"], p["token"]) == (["anon-1", "user-1"], TOKEN)
    assert abs(p["time"] / 1000 - time.time()) < 600 and p["$insert_id"]  # added by bulkhead
    assert "distinct_id" not in p


def test_sdk_alias_bypasses_any_consumer(sdk: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """What mixpanel-python's own source says: alias() makes a new synchronous Consumer()."""
    mp, c = sdk
    sent: List[Tuple[str, Dict[str, Any]]] = []

    class Recorder:
        def send(self, endpoint: str, message: str, *args: Any, **kw: Any) -> None:
            sent.append((endpoint, json.loads(message)))

    monkeypatch.setattr(mixpanel, "Consumer", Recorder)  # no network: record instead
    mp.alias("new-id", "orig-id")
    assert c.stats().enqueued == 0  # our consumer never saw it
    assert sent == [
        (
            "events",
            {"event": "$create_alias", "properties": {"distinct_id": "orig-id", "alias": "new-id", "token": TOKEN}},
        )
    ]


def test_client_alias_is_the_non_blocking_alternative(mock: Mock) -> None:
    c = bulkhead.MixpanelConsumer(**client_config(mock.url, token=TOKEN))
    try:
        assert c.client.alias("new-id", "orig-id") is True
        delivered(c)
        (e,) = mock.events()
        p = e["properties"]
        assert e["event"] == "$create_alias"
        assert (p["distinct_id"], p["alias"], p["token"]) == ("orig-id", "new-id", TOKEN)
        only_request(mock, "/track")
        with pytest.raises(ValueError):
            c.client.alias("", "orig-id")
    finally:
        c.close(0.5)


def test_a_consumer_without_a_token_only_forwards(sdk: Any, mock: Mock) -> None:
    """MixpanelConsumer() has no token: messages bring theirs, and the client's own
    builders refuse (loudly, never with a made-up token)."""
    mp, c = sdk
    for call in (
        lambda: c.client.track("u", "e"),
        lambda: c.client.alias("a", "b"),
        lambda: c.client.people_set("u", {"a": 1}),
    ):
        with pytest.raises(bulkhead.Error) as info:
            call()
        assert "token" in str(info.value)
    with pytest.raises(mixpanel.MixpanelException):
        c.send("events", '{"event":"no token","properties":{"distinct_id":"u"}}')
    mp.track("u", "fine")
    assert c.flush(10.0)
    s = c.stats()
    assert (s.enqueued, s.sent, s.dropped_invalid) == (1, 1, 4), s  # each refusal counted
    (e,) = mock.events()
    assert e["properties"]["token"] == TOKEN
