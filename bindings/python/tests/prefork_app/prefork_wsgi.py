"""WSGI app served by gunicorn --preload in tests/test_prefork.py.

The bulkhead client is made at import, so the gunicorn master owns it, with events still
queued, before it forks the workers: each worker must start over with its own empty queue
and counters, and the master's events must be delivered by the master only.

Environment: PREFORK_MOCK_URL (the mock ingestion server), PREFORK_STATS_DIR (where each
process writes its counters when it exits).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Tuple
from urllib.parse import parse_qs

import bulkhead

MASTER_EVENTS = 5

CLIENT = bulkhead.Client(
    token="prefork",
    api_host=os.environ["PREFORK_MOCK_URL"],
    flush_interval_ms=50,
    connect_timeout_ms=500,
    # A hung request gives up after 1 s and is retried; enough retries to ride out the
    # test's outage, so most events are delivered rather than counted failed.
    request_timeout_ms=1000,
    backoff_initial_ms=20,
    backoff_max_ms=300,
    max_retries=100,
    retry_budget_ms=60000,
    shutdown_timeout_ms=2000,
)

# Requests this process tracked (whatever track() answered). Sync workers: one thread each.
_tracked = 0


def _reset_after_fork() -> None:
    # The library gives a forked worker zeroed counters; so must this count.
    global _tracked
    _tracked = 0


os.register_at_fork(after_in_child=_reset_after_fork)

for i in range(MASTER_EVENTS):
    CLIENT.track("master", "master boot", {"$insert_id": f"master-{i}"})
    _tracked += 1


def application(
    environ: Dict[str, Any], start_response: Callable[[str, List[Tuple[str, str]]], Any]
) -> Iterable[bytes]:
    global _tracked
    query = parse_qs(environ.get("QUERY_STRING", ""))
    pid = os.getpid()
    if environ.get("PATH_INFO") != "/track" or "id" not in query:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    insert_id = query["id"][0]
    queued = CLIENT.track(f"worker-{pid}", "request", {"$insert_id": insert_id, "pid": pid})
    _tracked += 1
    body = json.dumps({"insert_id": insert_id, "queued": queued, "pid": pid}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def dump_stats(role: str) -> None:
    """Closes the client (bounded by shutdown_timeout_ms) and writes this process's counters."""
    closed = CLIENT.close()
    report = {
        "role": role,
        "pid": os.getpid(),
        "tracked": _tracked,
        "close_ok": closed,
        "stats": dataclasses.asdict(CLIENT.stats()),
    }
    path = Path(os.environ["PREFORK_STATS_DIR"]) / f"{role}-{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report))
    tmp.rename(path)
