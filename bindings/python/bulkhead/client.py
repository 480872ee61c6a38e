"""``bulkhead.Client``: a thin Python face over one native client handle.

No delivery logic lives here: the library validates, frames, queues, batches, sends and
retries. This module converts Python values to JSON, maps status codes to return values or
exceptions, and surfaces delivery errors to :mod:`logging` and an ``on_error`` callback from
a Python thread (never from a library thread).
"""

from __future__ import annotations

import atexit
import ctypes
from ctypes import c_size_t
import datetime as _dt
import json
import logging
import math
import os
import threading
import weakref
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    TypedDict,
    Union,
)

from . import _ffi
from .errors import ClosedError, Error, error_for

__all__ = [
    "Client",
    "Stats",
    "FlushResult",
    "DeliveryError",
    "set_exit_timeout",
    "shutdown",
    "logger",
]

logger = logging.getLogger("bulkhead")
# A library adds no handler of its own but this one (see the logging HOWTO); configure
# logging (e.g. logging.basicConfig()) or pass on_error= to see delivery errors.
logger.addHandler(logging.NullHandler())

_DEFAULT_FLUSH_MS = 2000
#: For close() and shutdown(): let the library use the configured shutdown_timeout_ms.
_TIMEOUT_CONFIGURED = 0xFFFFFFFF
_CIRCUIT = {0: "closed", 1: "open", 2: "half-open"}

Properties = Optional[Mapping[str, Any]]
Time = Union[_dt.datetime, _dt.date, int, float]
ErrorHandler = Callable[["DeliveryError"], Any]
#: A duration for the ``*_ms`` keys: milliseconds, or a ``datetime.timedelta``.
Millis = Union[int, _dt.timedelta]

class ClientOptions(TypedDict, total=False):
    """Every configuration key of the core, typed (for ``MixpanelConsumer(**options)``;
    ``Client`` spells them out as keyword arguments). See the README's configuration
    table for meanings and defaults."""

    api_host: str
    allow_insecure_http: bool
    queue_capacity: int
    queue_max_bytes: int
    pool_size: int
    batch_size: int
    batch_max_bytes: int
    flush_interval_ms: Millis
    connect_timeout_ms: Millis
    request_timeout_ms: Millis
    max_retries: int
    backoff_initial_ms: Millis
    backoff_max_ms: Millis
    retry_budget_ms: Millis
    circuit_failure_threshold: int
    circuit_cooldown_ms: Millis
    circuit_cooldown_max_ms: Millis
    gzip: bool
    max_event_bytes: int
    shutdown_timeout_ms: Millis
    service_account_username: str
    service_account_secret: str
    project_id: str
    api_secret: str
    max_recent_errors: int
    log_level: str
    test_mode: bool
    test_mode_capacity: int
    region: str
    proxy: str
    tls_system_roots: bool
    name: str
    spool_dir: Union[str, "os.PathLike[str]"]
    spool_max_bytes: int
    spool_max_age_ms: Millis
    spool_sync_interval_ms: Millis

# Bound once: attribute lookups on the CDLL are not free on the hot path. The calls that
# never wait keep the GIL (`_ffi.nowait`); the others release it while they wait.
_track = _ffi.nowait.bulkhead_track
_import = _ffi.nowait.bulkhead_import
_people = _ffi.nowait.bulkhead_people
_group = _ffi.nowait.bulkhead_group
_send_cred = _ffi.nowait.bulkhead_send_with_credentials
# The same two calls without argtypes (see _ffi): lengths below _UNCHECKED_LIMIT only.
_unchecked_track = _ffi.unchecked_track
_unchecked_people = _ffi.unchecked_people
_UNCHECKED_LIMIT = _ffi.UNCHECKED_LENGTH_LIMIT
_flush = _ffi.lib.bulkhead_client_flush
_close = _ffi.lib.bulkhead_client_close
_free = _ffi.lib.bulkhead_client_free
_stats = _ffi.nowait.bulkhead_client_stats
_queue_len = _ffi.nowait.bulkhead_client_queue_len
_errors = _ffi.lib.bulkhead_client_errors
_take_errors = _ffi.lib.bulkhead_client_take_errors
_flush_ex = _ffi.lib.bulkhead_client_flush_ex
_take_log = _ffi.lib.bulkhead_client_take_log
_LEVELS = {
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}

_OK = _ffi.STATUS_OK
_QUEUE_FULL = _ffi.STATUS_QUEUE_FULL
_TIMEOUT = _ffi.STATUS_TIMEOUT
_CLOSED = _ffi.STATUS_CLOSED


class _Encoder(json.JSONEncoder):
    """``json`` with datetimes as ISO strings, like mixpanel-python's DatetimeSerializer."""

    def default(self, o: Any) -> Any:
        if isinstance(o, _dt.datetime):
            return o.strftime("%Y-%m-%dT%H:%M:%S")
        if isinstance(o, _dt.date):
            return o.isoformat()
        if isinstance(o, (set, frozenset, tuple)):
            return list(o)
        return super().default(o)


_encode = _Encoder(separators=(",", ":"), allow_nan=False).encode


def _orjson_default(o: Any) -> Any:
    """What `_Encoder.default` does, for orjson (which passes datetimes and dates here)."""
    if isinstance(o, _dt.datetime):
        return o.strftime("%Y-%m-%dT%H:%M:%S")
    if isinstance(o, _dt.date):
        return o.isoformat()
    if isinstance(o, (set, frozenset)):
        return list(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _has_nonfinite(value: Any) -> bool:
    """Whether a float NaN or infinity is anywhere in `value` (dicts, lists, tuples)."""
    items = value.values() if isinstance(value, dict) else value
    for v in items:
        t = type(v)
        if t is float:
            if v - v != 0.0:  # NaN and infinities only
                return True
        elif t is dict or t is list or t is tuple:
            if _has_nonfinite(v):
                return True
        elif isinstance(v, float) and not math.isfinite(v):
            return True
    return False


def _dumps_std(value: Any) -> bytes:
    return _encode(value).encode("utf-8")


try:  # the optional extra `bulkhead-mixpanel[fast]`: several times faster than `json`
    import orjson as _orjson  # type: ignore[import-not-found, unused-ignore]

    _orjson_dumps = _orjson.dumps
    _ORJSON_OPTIONS = _orjson.OPT_PASSTHROUGH_DATETIME
    # Keys that are not strings (which `json` writes as strings) need OPT_NON_STR_KEYS, which
    # more than doubles the cost of every call: asked for only when the first try refuses.
    _ORJSON_NON_STR_KEYS = _ORJSON_OPTIONS | _orjson.OPT_NON_STR_KEYS

    def _dumps(value: Any) -> bytes:
        try:
            # Positional arguments, and annotated rather than wrapped in bytes(): each is a
            # measurable share of the call.
            out: bytes = _orjson_dumps(value, _orjson_default, _ORJSON_OPTIONS)
        except TypeError:
            try:
                out = _orjson_dumps(value, _orjson_default, _ORJSON_NON_STR_KEYS)
            except TypeError:
                # What orjson refuses (integers beyond 64 bits, ...): `json` has the last
                # word, with its own error if it refuses too.
                return _dumps_std(value)
        # orjson writes NaN and infinity as null; `json` refuses them (ValueError), and so
        # must we, whichever encoder runs. The walk over the values (a microsecond for ten
        # properties) only when the output has a null at all.
        # (`find` rather than `in`: the operator costs 0.1 µs more on a 200-byte text.)
        if out.find(b"null") >= 0 and _has_nonfinite(value):
            return _dumps_std(value)
        return out

except ImportError:
    _dumps = _dumps_std


def _json_object(value: Any, what: str) -> bytes:
    if type(value) is dict:  # the common case, without the ABC check
        return _dumps(value)
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a mapping (dict), not {type(value).__name__}")
    return _dumps(value if isinstance(value, dict) else dict(value))


def _text(value: Any, what: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if value is None:
        return b""
    raise TypeError(f"{what} must be a str, not {type(value).__name__}")


def _required_text(value: Any, what: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"{what} must be a str, not {type(value).__name__}")


def _timeout_ms(timeout: Optional[float], default_ms: int) -> int:
    if timeout is None:
        return default_ms
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if timeout != timeout or timeout < 0:
        raise ValueError("timeout must be a non-negative number of seconds")
    return min(int(timeout * 1000), _TIMEOUT_CONFIGURED - 1)


def _time_ms(value: Time) -> int:
    """Milliseconds since the epoch from a datetime/date or a number of seconds.

    A naive datetime is taken as local time (``datetime.timestamp``'s convention).
    """
    if isinstance(value, bool):
        raise TypeError("time must be a datetime or a number of seconds, not bool")
    if isinstance(value, _dt.datetime):
        return int(round(value.timestamp() * 1000))
    if isinstance(value, _dt.date):
        return int(_dt.datetime(value.year, value.month, value.day).timestamp() * 1000)
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("time must be a finite number of seconds")
        return int(round(value * 1000))
    raise TypeError(
        f"time must be a datetime or a number of seconds, not {type(value).__name__}"
    )


@dataclass(frozen=True)
class Stats:
    """A snapshot of a client's counters. Invariant when quiescent:
    ``enqueued + replayed == sent + rejected + failed + spooled + queue_len + spool_pending``
    (the spool's fields stay 0 without ``spool_dir``).

    The spool's fields (``include/bulkhead.h`` says more): ``spooled`` events written to the
    disk spool (overflow, failed deliveries, pending at close); ``replayed`` read back from it
    into delivery; ``spool_expired`` removed unsent, older than ``spool_max_age_ms``;
    ``spool_corrupt`` corrupt or torn records skipped; ``dropped_spool_full`` and
    ``dropped_spool_error`` events the spool could not take (full; another error such as an
    unwritable directory), both included in ``failed``; ``spool_pending`` overflow events
    accepted and waiting for the spool's writer (not in ``queue_len``); ``spool_bytes`` bytes
    of the directory's segments (every writer's), as last seen; ``spool_records`` records
    this client wrote or took over and has not replayed or expired yet.
    """

    enqueued: int
    dropped_queue_full: int
    dropped_too_large: int
    dropped_invalid: int
    dropped_shutdown: int
    sent: int
    rejected: int
    failed: int
    retries: int
    requests: int
    bytes_sent: int
    queue_len: int
    queue_bytes: int
    in_flight: int
    circuit_state: str  # "closed", "open" or "half-open"
    errors_overwritten: int = 0
    spooled: int = 0
    replayed: int = 0
    spool_expired: int = 0
    spool_corrupt: int = 0
    dropped_spool_full: int = 0
    dropped_spool_error: int = 0
    spool_pending: int = 0
    spool_bytes: int = 0
    spool_records: int = 0


@dataclass(frozen=True)
class FlushResult:
    """What :meth:`Client.flush` found.

    ``status`` is ``"delivered"`` (every event resolved since the previous flush was
    delivered), ``"incomplete"`` (finished, but ``failed`` events failed and ``rejected``
    were rejected since the previous flush; each such event is reported by one flush) or
    ``"timed_out"`` (the deadline passed first; the counts go to the next flush). True
    only when delivered.
    """

    status: str
    failed: int = 0
    rejected: int = 0

    @property
    def delivered(self) -> bool:
        return self.status == "delivered"

    @property
    def timed_out(self) -> bool:
        return self.status == "timed_out"

    def __bool__(self) -> bool:
        return self.status == "delivered"


@dataclass(frozen=True)
class DeliveryError:
    """One delivery error kept by the library (``bulkhead_client_errors``)."""

    seq: int
    time_ms: int
    endpoint: str
    http_status: Optional[int]
    events: int
    outcome: str
    message: str

    @property
    def time(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(self.time_ms / 1000.0, tz=_dt.timezone.utc)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> "DeliveryError":
        status = obj.get("http_status")
        return cls(
            seq=int(obj.get("seq") or 0),
            time_ms=int(obj.get("time_ms") or 0),
            endpoint=str(obj.get("endpoint") or ""),
            # null (None) when there was no HTTP response, as in Ruby (nil).
            http_status=int(status) if isinstance(status, (int, float)) and status else None,
            events=int(obj.get("events") or 0),
            outcome=str(obj.get("outcome") or ""),
            message=str(obj.get("message") or ""),
        )


# --- process-wide exit and fork handling -------------------------------------------------

_exit_timeout_ms: Optional[int] = None  # set_exit_timeout(); else the clients' maximum
_live: "weakref.WeakSet[Client]" = weakref.WeakSet()


def set_exit_timeout(seconds: float) -> None:
    """Sets the deadline of the ``bulkhead_shutdown`` call made at interpreter exit.

    By default it is the largest ``shutdown_timeout_ms`` given to a client (2 s if none).
    """
    global _exit_timeout_ms
    _exit_timeout_ms = _timeout_ms(seconds, _TIMEOUT_CONFIGURED)


def shutdown(timeout: Optional[float] = None) -> bool:
    """Closes every client and stops the library's runtime within ``timeout`` seconds.

    Called automatically at exit. Returns True when everything pending was resolved in
    time. A client made afterwards starts a new runtime.
    """
    # Unless told otherwise, the library takes the largest shutdown_timeout_ms of the open
    # clients (2 s if none).
    default = _TIMEOUT_CONFIGURED if _exit_timeout_ms is None else _exit_timeout_ms
    ms = _timeout_ms(timeout, default)
    status = int(_ffi.lib.bulkhead_shutdown(ms))
    for client in list(_live):
        client._mark_closed()
        try:
            client._poll_errors()
        except Exception:  # pragma: no cover - never let exit fail
            pass
    return status == _OK


def _at_exit() -> None:
    try:
        shutdown(None)
    except Exception:  # pragma: no cover - never let exit fail
        pass


atexit.register(_at_exit)


def _after_fork_in_child() -> None:
    # Locks held by other threads at fork() stay locked in the child: replace them. The
    # library itself resets its queue and runtime in the child (pthread_atfork).
    for client in list(_live):
        client._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Client:
    """A bulkhead client: a bounded in-process queue drained by a pool of background senders.

    ``Client(token="…", api_host="https://api-eu.mixpanel.com", queue_capacity=10_000)``;
    every keyword is passed to the library, which reports unknown
    keys and bad values (:class:`bulkhead.Error`). ``on_error`` receives each
    :class:`DeliveryError`; errors are also logged on the ``"bulkhead"`` logger. Both happen on
    the thread calling ``flush``, ``close``, ``stats`` or (when the library signals new
    records, a memory read per call) ``track`` and the other queueing methods;
    ``error_check_interval`` is kept for compatibility and ignored.

    Queueing methods return True when queued and False when the queue-size guard dropped the
    event; they never block and never raise on delivery trouble.

    ``spool_dir`` (a str or path; unset: no spool) turns on the library's disk spool: events
    the guard refuses, failed deliveries and events pending at close are written there
    instead of being dropped, and replayed (by this or a later process using the same
    directory) when the service answers again; ``spool_max_bytes``, ``spool_max_age_ms``
    and ``spool_sync_interval_ms`` bound it. See :class:`Stats` for its counters.
    """

    def __init__(
        self,
        token: Optional[str] = None,
        *,
        on_error: Optional[ErrorHandler] = None,
        error_check_interval: int = 1000,
        api_host: Optional[str] = None,
        allow_insecure_http: Optional[bool] = None,
        queue_capacity: Optional[int] = None,
        queue_max_bytes: Optional[int] = None,
        pool_size: Optional[int] = None,
        batch_size: Optional[int] = None,
        batch_max_bytes: Optional[int] = None,
        flush_interval_ms: Optional[Millis] = None,
        connect_timeout_ms: Optional[Millis] = None,
        request_timeout_ms: Optional[Millis] = None,
        max_retries: Optional[int] = None,
        backoff_initial_ms: Optional[Millis] = None,
        backoff_max_ms: Optional[Millis] = None,
        retry_budget_ms: Optional[Millis] = None,
        circuit_failure_threshold: Optional[int] = None,
        circuit_cooldown_ms: Optional[Millis] = None,
        circuit_cooldown_max_ms: Optional[Millis] = None,
        gzip: Optional[bool] = None,
        max_event_bytes: Optional[int] = None,
        shutdown_timeout_ms: Optional[Millis] = None,
        service_account_username: Optional[str] = None,
        service_account_secret: Optional[str] = None,
        project_id: Optional[str] = None,
        api_secret: Optional[str] = None,
        max_recent_errors: Optional[int] = None,
        log_level: Optional[str] = None,
        test_mode: Optional[bool] = None,
        test_mode_capacity: Optional[int] = None,
        region: Optional[str] = None,
        proxy: Optional[str] = None,
        tls_system_roots: Optional[bool] = None,
        name: Optional[str] = None,
        spool_dir: Union[str, "os.PathLike[str]", None] = None,
        spool_max_bytes: Optional[int] = None,
        spool_max_age_ms: Optional[Millis] = None,
        spool_sync_interval_ms: Optional[Millis] = None,
        **config: Any,
    ) -> None:
        self._handle: Optional[int] = None
        self._closed = True
        typed: Dict[str, Any] = {
            "api_host": api_host,
            "allow_insecure_http": allow_insecure_http,
            "queue_capacity": queue_capacity,
            "queue_max_bytes": queue_max_bytes,
            "pool_size": pool_size,
            "batch_size": batch_size,
            "batch_max_bytes": batch_max_bytes,
            "flush_interval_ms": flush_interval_ms,
            "connect_timeout_ms": connect_timeout_ms,
            "request_timeout_ms": request_timeout_ms,
            "max_retries": max_retries,
            "backoff_initial_ms": backoff_initial_ms,
            "backoff_max_ms": backoff_max_ms,
            "retry_budget_ms": retry_budget_ms,
            "circuit_failure_threshold": circuit_failure_threshold,
            "circuit_cooldown_ms": circuit_cooldown_ms,
            "circuit_cooldown_max_ms": circuit_cooldown_max_ms,
            "gzip": gzip,
            "max_event_bytes": max_event_bytes,
            "shutdown_timeout_ms": shutdown_timeout_ms,
            "service_account_username": service_account_username,
            "service_account_secret": service_account_secret,
            "project_id": project_id,
            "api_secret": api_secret,
            "max_recent_errors": max_recent_errors,
            "log_level": log_level,
            "test_mode": test_mode,
            "test_mode_capacity": test_mode_capacity,
            "region": region,
            "proxy": proxy,
            "tls_system_roots": tls_system_roots,
            "name": name,
            "spool_dir": os.fspath(spool_dir) if spool_dir is not None else None,
            "spool_max_bytes": spool_max_bytes,
            "spool_max_age_ms": spool_max_age_ms,
            "spool_sync_interval_ms": spool_sync_interval_ms,
        }
        for key, value in typed.items():
            if value is not None:
                config[key] = value
        if token is not None:
            config["token"] = token
        # The library's own lines reach the "bulkhead" logger through take_log; keep its
        # stderr default quiet unless asked for.
        config.setdefault("log_level", "off")
        for key, value in list(config.items()):
            if isinstance(value, _dt.timedelta):  # convenience for *_ms keys
                config[key] = int(value.total_seconds() * 1000)
        try:
            data = json.dumps(config).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise TypeError(f"bulkhead: config values must be JSON values: {e}") from None
        out = ctypes.c_void_p()
        status = _ffi.lib.bulkhead_client_new(data, len(data), ctypes.byref(out))
        if status != _OK:
            raise error_for(status)
        self._handle = out.value
        # The same handle as a ctypes object, for the calls made without argtypes.
        self._pointer = ctypes.c_void_p(self._handle)
        hint = _ffi.lib.bulkhead_client_log_hint(self._handle)
        # A counter the library makes non-zero when log lines or delivery errors wait:
        # read (a plain memory load) on every call, so the hot path makes no extra call.
        self._hint = ctypes.c_uint64.from_address(hint) if hint else ctypes.c_uint64(0)
        self._closed = False
        self._close_result: Optional[bool] = None
        self._on_error = on_error
        self._lock = threading.Lock()
        self._interval = max(1, int(error_check_interval))
        self._calls = 0
        # The handle is freed when this object is collected. Not at interpreter exit: the
        # exit hook's bulkhead_shutdown already bounds that, and freeing each open client
        # there would wait up to its shutdown_timeout_ms once per client.
        self._finalizer = weakref.finalize(self, _free, self._handle)
        self._finalizer.atexit = False
        _live.add(self)

    # --- context manager ---------------------------------------------------------------

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<bulkhead.Client {state} queue_size={self.queue_size}>"

    # --- queueing (the hot path) ---------------------------------------------------------

    def _done(self, status: int) -> bool:
        if self._hint.value:
            self._poll_errors(blocking=False)
        if status == _OK:
            return True
        if status == _QUEUE_FULL:
            return False
        if status == _CLOSED:
            self._closed = True
        raise error_for(status)

    def _h(self) -> int:
        if self._closed:
            raise ClosedError("bulkhead: the client is closed", _CLOSED)
        return self._handle  # type: ignore[return-value]

    def track(self, distinct_id: Optional[str], event: str, properties: Properties = None) -> bool:
        """Queues an event for ``/track``. False when the queue-size guard dropped it."""
        # The hottest call: the common argument types are handled inline (what _text and
        # _json_object do first), each helper call costing what the library's work does.
        if self._closed:
            self._h()  # raises ClosedError
        d = distinct_id.encode() if type(distinct_id) is str else _text(distinct_id, "distinct_id")
        e = event.encode() if type(event) is str else _required_text(event, "event")
        if properties is None:
            p = None
        elif type(properties) is dict:
            p = _dumps(properties)
        else:
            p = _json_object(properties, "properties")
        d_len = len(d)
        e_len = len(e)
        p_len = len(p) if p is not None else 0
        if d_len < _UNCHECKED_LIMIT and e_len < _UNCHECKED_LIMIT:
            status = _unchecked_track(self._pointer, d, d_len, e, e_len, p, c_size_t(p_len))
        else:
            status = _track(self._handle, d, d_len, e, e_len, p, p_len)
        if status == _OK and not self._hint.value:
            return True
        return self._done(status)

    def import_event(
        self,
        distinct_id: str,
        event: str,
        time: Time,
        properties: Properties = None,
    ) -> bool:
        """Queues an event of any age for ``/import`` (``time``: datetime or seconds)."""
        h = self._h()
        d = _text(distinct_id, "distinct_id")
        e = _required_text(event, "event")
        t = _time_ms(time)
        p = b"" if properties is None else _json_object(properties, "properties")
        return self._done(_import(h, d, len(d), e, len(e), t, p or None, len(p)))

    def alias(self, alias_id: str, distinct_id: str) -> bool:
        """Queues ``$create_alias`` for ``/track``: ``alias_id`` becomes another id of
        ``distinct_id``. The non-blocking replacement for mixpanel-python's
        ``Mixpanel.alias``, which always sends its own synchronous request."""
        if not alias_id or not distinct_id:
            raise ValueError("alias needs a non-empty alias_id and distinct_id")
        return self.track(distinct_id, "$create_alias", {"alias": alias_id})

    def _people(self, distinct_id: str, op: bytes, value: Optional[bytes]) -> bool:
        if self._closed:
            self._h()  # raises ClosedError
        d = _text(distinct_id, "distinct_id")
        d_len = len(d)
        n = len(value) if value is not None else 0
        if d_len < _UNCHECKED_LIMIT:
            status = _unchecked_people(self._pointer, d, d_len, op, len(op), value, c_size_t(n))
        else:
            status = _people(self._handle, d, d_len, op, len(op), value, n)
        return self._done(status)

    def people_set(self, distinct_id: str, properties: Mapping[str, Any]) -> bool:
        return self._people(distinct_id, b"$set", _json_object(properties, "properties"))

    def people_set_once(self, distinct_id: str, properties: Mapping[str, Any]) -> bool:
        return self._people(distinct_id, b"$set_once", _json_object(properties, "properties"))

    def people_increment(self, distinct_id: str, properties: Mapping[str, Any]) -> bool:
        """``$add``: numeric increments."""
        return self._people(distinct_id, b"$add", _json_object(properties, "properties"))

    def people_append(self, distinct_id: str, properties: Mapping[str, Any]) -> bool:
        return self._people(distinct_id, b"$append", _json_object(properties, "properties"))

    def people_union(self, distinct_id: str, properties: Mapping[str, Any]) -> bool:
        return self._people(distinct_id, b"$union", _json_object(properties, "properties"))

    def people_remove(self, distinct_id: str, properties: Mapping[str, Any]) -> bool:
        return self._people(distinct_id, b"$remove", _json_object(properties, "properties"))

    def people_unset(self, distinct_id: str, names: Sequence[str]) -> bool:
        return self._people(distinct_id, b"$unset", _names(names))

    def people_delete(self, distinct_id: str) -> bool:
        return self._people(distinct_id, b"$delete", None)

    def _group(self, key: str, gid: str, op: bytes, value: Optional[bytes]) -> bool:
        h = self._h()
        k = _required_text(key, "group_key")
        g = _required_text(gid, "group_id")
        n = len(value) if value is not None else 0
        return self._done(_group(h, k, len(k), g, len(g), op, len(op), value, n))

    def group_set(self, group_key: str, group_id: str, properties: Mapping[str, Any]) -> bool:
        return self._group(group_key, group_id, b"$set", _json_object(properties, "properties"))

    def group_set_once(
        self, group_key: str, group_id: str, properties: Mapping[str, Any]
    ) -> bool:
        return self._group(
            group_key, group_id, b"$set_once", _json_object(properties, "properties")
        )

    def group_union(self, group_key: str, group_id: str, properties: Mapping[str, Any]) -> bool:
        return self._group(
            group_key, group_id, b"$union", _json_object(properties, "properties")
        )

    def group_remove(
        self, group_key: str, group_id: str, properties: Mapping[str, Any]
    ) -> bool:
        return self._group(
            group_key, group_id, b"$remove", _json_object(properties, "properties")
        )

    def group_unset(self, group_key: str, group_id: str, names: Sequence[str]) -> bool:
        return self._group(group_key, group_id, b"$unset", _names(names))

    def group_delete(self, group_key: str, group_id: str) -> bool:
        return self._group(group_key, group_id, b"$delete", None)

    def send(
        self,
        endpoint: str,
        message: Union[str, bytes],
        api_key: Optional[str] = None,
        api_secret: Optional[str] = None,
    ) -> bool:
        """Queues messages already built by an SDK (``bulkhead_send_with_credentials``).

        ``endpoint``: ``events``, ``people``, ``groups`` or ``imports``; ``message``: one
        JSON message or an array of them. ``api_key``/``api_secret`` are ``/import``
        credentials for these messages.
        """
        h = self._h()
        ep = _required_text(endpoint, "endpoint")
        if isinstance(message, str):
            m = message.encode("utf-8")
        elif isinstance(message, (bytes, bytearray)):
            m = bytes(message)
        else:
            raise TypeError(f"message must be str or bytes, not {type(message).__name__}")
        k = _text(api_key, "api_key") if api_key is not None else None
        s = _text(api_secret, "api_secret") if api_secret is not None else None
        return self._done(
            _send_cred(
                h, ep, len(ep), m, len(m), k, len(k) if k else 0, s, len(s) if s else 0
            )
        )

    # --- waiting, closing, observing ----------------------------------------------------

    def flush(self, timeout: Optional[float] = 2.0) -> FlushResult:
        """Sends everything queued so far and waits at most ``timeout`` seconds.

        Returns a :class:`FlushResult`: ``"delivered"``, ``"incomplete"`` (with how many
        events failed or were rejected since the previous flush) or ``"timed_out"`` (the
        events stay queued). It is true only when delivered. The GIL is released while
        waiting.
        """
        ms = _timeout_ms(timeout, _DEFAULT_FLUSH_MS)
        out = _ffi.FlushResult()
        status = _flush_ex(self._h(), ms, ctypes.byref(out))
        self._poll_errors()
        if status == _OK:
            return FlushResult("delivered")
        if status == _ffi.STATUS_INCOMPLETE:
            return FlushResult("incomplete", int(out.failed), int(out.rejected))
        if status == _TIMEOUT:
            return FlushResult("timed_out")
        if status == _CLOSED:
            self._closed = True
        raise error_for(status)

    def close(self, timeout: Optional[float] = None) -> bool:
        """Flushes for at most ``timeout`` seconds (default: ``shutdown_timeout_ms``, 2 s)
        then stops the client; what is still pending is counted as failed. Idempotent.

        Returns True when nothing was left pending. The native handle is released when the
        object is garbage collected (so other threads can never use a freed handle).
        """
        ms = _timeout_ms(timeout, _TIMEOUT_CONFIGURED)
        with self._lock:
            if self._close_result is not None:
                return self._close_result
            if self._handle is None:
                return True
            status = _close(self._handle, ms)
            self._closed = True
            self._close_result = status in (_OK, _CLOSED)
        self._poll_errors()
        return self._close_result

    def _mark_closed(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> Stats:
        """A snapshot of the counters (also surfaces pending delivery errors)."""
        if self._handle is None:
            raise ClosedError("bulkhead: the client is closed", _CLOSED)
        s = _ffi.Stats()
        status = _stats(self._handle, ctypes.byref(s))
        if status != _OK:
            raise error_for(status)
        self._poll_errors(blocking=False)
        return Stats(
            enqueued=s.enqueued,
            dropped_queue_full=s.dropped_queue_full,
            dropped_too_large=s.dropped_too_large,
            dropped_invalid=s.dropped_invalid,
            dropped_shutdown=s.dropped_shutdown,
            sent=s.sent,
            rejected=s.rejected,
            failed=s.failed,
            retries=s.retries,
            requests=s.requests,
            bytes_sent=s.bytes_sent,
            queue_len=s.queue_len,
            queue_bytes=s.queue_bytes,
            in_flight=s.in_flight,
            circuit_state=_CIRCUIT.get(s.circuit_state, str(s.circuit_state)),
            errors_overwritten=s.errors_overwritten,
            spooled=s.spooled,
            replayed=s.replayed,
            spool_expired=s.spool_expired,
            spool_corrupt=s.spool_corrupt,
            dropped_spool_full=s.dropped_spool_full,
            dropped_spool_error=s.dropped_spool_error,
            spool_pending=s.spool_pending,
            spool_bytes=s.spool_bytes,
            spool_records=s.spool_records,
        )

    def test_events(self) -> List[Dict[str, Any]]:
        """In ``test_mode``: the events kept so far, oldest first, each
        ``{"endpoint": "events"|"people"|"groups"|"imports", "data": {...}}`` with ``data``
        exactly as it would have been sent. :class:`bulkhead.Error` otherwise."""
        return self._read_errors(_ffi.lib.bulkhead_client_test_events)

    def clear_test_events(self) -> None:
        """In ``test_mode``: forgets the events kept so far."""
        status = _ffi.lib.bulkhead_client_test_clear(self._handle)
        if status != _OK:
            raise error_for(status)

    def metrics_text(self) -> str:
        """The counters and gauges in the Prometheus text format (0.0.4), labelled
        ``client="<name>"`` when the ``name`` key is set."""
        if self._handle is None:
            return ""
        size = 8192
        written = ctypes.c_size_t(0)
        while True:
            buf = ctypes.create_string_buffer(size)
            status = _ffi.lib.bulkhead_client_metrics(
                self._handle, buf, size, ctypes.byref(written)
            )
            if status == _OK:
                return ctypes.string_at(buf, written.value).decode("utf-8", "replace")
            if status != _ffi.STATUS_BUFFER_TOO_SMALL:
                raise error_for(status)
            size = max(int(written.value), size * 2)

    @property
    def queue_size(self) -> int:
        """Events accepted and not yet resolved (queued, batching or in flight)."""
        return int(_queue_len(self._handle)) if self._handle is not None else 0

    def errors(self, after_seq: int = 0) -> List[DeliveryError]:
        """The recent delivery errors kept by the library (oldest first)."""
        return [DeliveryError.from_json(o) for o in self._fetch_errors(after_seq)]

    def _fetch_errors(self, after_seq: int) -> List[Dict[str, Any]]:
        return self._read_errors(lambda h, buf, size, w: _errors(h, after_seq, buf, size, w))

    def _read_errors(self, call: Callable[..., int]) -> List[Dict[str, Any]]:
        """Runs ``call(handle, buf, size, written)``, growing ``buf`` until it fits."""
        if self._handle is None:
            return []
        size = 4096
        written = ctypes.c_size_t(0)
        for _ in range(8):
            buf = ctypes.create_string_buffer(size)
            status = call(self._handle, buf, size, ctypes.byref(written))
            if status == _OK:
                raw = ctypes.string_at(buf, written.value)
                value = json.loads(raw.decode("utf-8", "replace") or "[]")
                return value if isinstance(value, list) else []
            if status != _ffi.STATUS_BUFFER_TOO_SMALL:
                raise error_for(status)
            size = max(int(written.value), size * 2)
        return []

    def _poll_errors(self, blocking: bool = True) -> None:
        """Hands new delivery errors to the logger and ``on_error``, on this thread. The
        library keeps which errors were handed out (per process: a forked child starts
        fresh)."""
        if not self._lock.acquire(blocking):
            return
        try:
            # Log lines first: taking them resets the hint, so anything newer sets it again.
            notes = self._read_errors(_take_log)
            fresh = [DeliveryError.from_json(o) for o in self._read_errors(_take_errors)]
        except Exception:  # pragma: no cover - observability must never break the caller
            logger.debug("bulkhead: could not read delivery errors", exc_info=True)
            return
        finally:
            self._lock.release()
        for note in notes:
            if isinstance(note, dict):
                level = _LEVELS.get(str(note.get("level")), logging.WARNING)
                logger.log(level, "%s", note.get("message", ""))
        for err in fresh:
            logger.warning(
                "delivery error: %s on %s (%s events, http %s): %s",
                err.outcome,
                err.endpoint,
                err.events,
                err.http_status if err.http_status is not None else "-",
                err.message,
            )
            if self._on_error is not None:
                try:
                    self._on_error(err)
                except Exception:
                    logger.exception("bulkhead: on_error handler raised")


def _names(names: Iterable[str]) -> bytes:
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise TypeError("names must be a list of property names")
    items = list(names)
    for n in items:
        if not isinstance(n, str):
            raise TypeError("names must be a list of str")
    return _encode(items).encode("utf-8")
