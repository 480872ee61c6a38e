"""The ctypes layer: finds and loads the bulkhead shared library and declares its C API.

Nothing here holds delivery logic; see ``include/bulkhead.h`` for the contract.

Loading order:

1. ``BULKHEAD_LIB`` (a path to the shared library), if set;
2. the copy bundled inside this package by ``pip install`` (``bulkhead/_native*.so``);
3. this repository's cargo output (``../../target/release``, then ``../../target/debug``,
   relative to the package's source directory), for a source checkout;
4. the system library path: ``libbulkhead.so.0`` (the SONAME ``make install`` provides),
   then ``ctypes.util.find_library("bulkhead")``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import platform
import sys
from ctypes import (
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Any, List, Optional, Tuple

__all__ = [
    "lib",
    "lib_path",
    "Stats",
    "STATUS_OK",
    "STATUS_QUEUE_FULL",
    "STATUS_INVALID_ARGUMENT",
    "STATUS_INVALID_UTF8",
    "STATUS_INVALID_JSON",
    "STATUS_TOO_LARGE",
    "STATUS_CLOSED",
    "STATUS_TIMEOUT",
    "STATUS_BUFFER_TOO_SMALL",
    "STATUS_PANIC",
    "STATUS_INTERNAL",
    "STATUS_INCOMPLETE",
    "FlushResult",
    "last_error",
    "status_str",
    "version",
]

# bulkhead_status
STATUS_OK = 0
STATUS_QUEUE_FULL = 1
STATUS_INVALID_ARGUMENT = 2
STATUS_INVALID_UTF8 = 3
STATUS_INVALID_JSON = 4
STATUS_TOO_LARGE = 5
STATUS_CLOSED = 6
STATUS_TIMEOUT = 7
STATUS_BUFFER_TOO_SMALL = 8
STATUS_PANIC = 9
STATUS_INTERNAL = 10
STATUS_INCOMPLETE = 11

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_ROOT = os.path.normpath(os.path.join(_PKG_DIR, "..", "..", ".."))

if sys.platform == "darwin":
    _LIB_FILE = "libbulkhead.dylib"
elif sys.platform == "win32":
    _LIB_FILE = "bulkhead.dll"
else:
    _LIB_FILE = "libbulkhead.so"
# The SONAME of `make install`'s library (libbulkhead.so.<major>), on ELF systems.
_SONAME = "libbulkhead.so.0" if _LIB_FILE == "libbulkhead.so" else None


def _bundled_candidates() -> List[str]:
    found: List[str] = []
    for pattern in ("_native*.so", "_native*.dylib", "_native*.pyd", "_native*.dll", _LIB_FILE):
        found.extend(sorted(glob.glob(os.path.join(_PKG_DIR, pattern))))
    return found


def _load() -> Tuple[ctypes.CDLL, str]:
    tried: List[str] = []

    def attempt(path: str) -> Optional[ctypes.CDLL]:
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({e})")
            return None

    env = os.environ.get("BULKHEAD_LIB")
    if env:
        lib = attempt(env)
        if lib is not None:
            return lib, env
        raise ImportError(
            f"bulkhead: cannot load the library named by BULKHEAD_LIB: {tried[-1]}"
        )
    candidates = _bundled_candidates()
    if not candidates:
        tried.append(f"{os.path.join(_PKG_DIR, '_native*.so')} (no bundled copy)")
    for profile in ("release", "debug"):
        path = os.path.join(_REPO_ROOT, "target", profile, _LIB_FILE)
        if os.path.exists(path):
            candidates.append(path)
        else:
            tried.append(f"{path} (not found)")
    for path in candidates:
        lib = attempt(path)
        if lib is not None:
            return lib, path
    if _SONAME:
        # The runtime name `make install` provides: found on LD_LIBRARY_PATH, in the ld.so
        # cache or the default directories, even without the -dev link.
        lib = attempt(_SONAME)
        if lib is not None:
            return lib, _SONAME
    system = ctypes.util.find_library("bulkhead")
    if system:
        lib = attempt(system)
        if lib is not None:
            return lib, system
    else:
        tried.append("ctypes.util.find_library('bulkhead') (not found)")
    raise ImportError(
        "bulkhead: cannot find the native library (libbulkhead). Install the package with "
        "`pip install bulkhead-mixpanel` or `pip install ./bindings/python` (which bundle it), build it with "
        "`cargo build --release -p bulkhead`, or set BULKHEAD_LIB to its path. Tried: "
        + "; ".join(tried)
    )


class Stats(Structure):
    """``bulkhead_stats``: a snapshot of a client's counters and gauges."""

    _fields_ = [
        ("enqueued", c_uint64),
        ("dropped_queue_full", c_uint64),
        ("dropped_too_large", c_uint64),
        ("dropped_invalid", c_uint64),
        ("dropped_shutdown", c_uint64),
        ("sent", c_uint64),
        ("rejected", c_uint64),
        ("failed", c_uint64),
        ("retries", c_uint64),
        ("requests", c_uint64),
        ("bytes_sent", c_uint64),
        ("queue_len", c_uint64),
        ("queue_bytes", c_uint64),
        ("in_flight", c_uint64),
        ("circuit_state", c_uint32),
        ("errors_overwritten", c_uint64),
        # The disk spool (`spool_dir`); appended in this order, after errors_overwritten.
        ("spooled", c_uint64),
        ("replayed", c_uint64),
        ("spool_expired", c_uint64),
        ("spool_corrupt", c_uint64),
        ("dropped_spool_full", c_uint64),
        ("dropped_spool_error", c_uint64),
        ("spool_pending", c_uint64),
        ("spool_bytes", c_uint64),
        ("spool_records", c_uint64),
    ]


class FlushResult(Structure):
    """``bulkhead_flush_result``: events failed or rejected since the previous flush."""

    _fields_ = [("failed", c_uint64), ("rejected", c_uint64)]


lib, lib_path = _load()

# Strings in are (const char *ptr, size_t len): a Python `bytes` object converts to a
# borrowed pointer (c_char_p as an *argument* type only); None is NULL. Nothing the library
# allocates is ever returned as c_char_p: the only returned strings are static and are read
# through c_void_p + ctypes.string_at.
_client_p = c_void_p
_status = c_int
_str = c_char_p

_SIGNATURES = {
    "bulkhead_client_new": (_status, [_str, c_size_t, POINTER(c_void_p)]),
    "bulkhead_client_free": (None, [_client_p]),
    "bulkhead_track": (_status, [_client_p, _str, c_size_t, _str, c_size_t, _str, c_size_t]),
    "bulkhead_import": (
        _status,
        [_client_p, _str, c_size_t, _str, c_size_t, c_int64, _str, c_size_t],
    ),
    "bulkhead_people": (_status, [_client_p, _str, c_size_t, _str, c_size_t, _str, c_size_t]),
    "bulkhead_group": (
        _status,
        [_client_p, _str, c_size_t, _str, c_size_t, _str, c_size_t, _str, c_size_t],
    ),
    "bulkhead_send": (_status, [_client_p, _str, c_size_t, _str, c_size_t]),
    "bulkhead_send_with_credentials": (
        _status,
        [_client_p, _str, c_size_t, _str, c_size_t, _str, c_size_t, _str, c_size_t],
    ),
    "bulkhead_client_flush": (_status, [_client_p, c_uint32]),
    "bulkhead_client_close": (_status, [_client_p, c_uint32]),
    "bulkhead_shutdown": (_status, [c_uint32]),
    "bulkhead_client_stats": (_status, [_client_p, POINTER(Stats)]),
    "bulkhead_client_queue_len": (c_uint64, [_client_p]),
    "bulkhead_client_errors": (
        _status,
        [_client_p, c_uint64, c_void_p, c_size_t, POINTER(c_size_t)],
    ),
    "bulkhead_client_take_errors": (
        _status,
        [_client_p, c_void_p, c_size_t, POINTER(c_size_t)],
    ),
    "bulkhead_client_flush_ex": (_status, [_client_p, c_uint32, POINTER(FlushResult)]),
    "bulkhead_client_log_hint": (c_void_p, [_client_p]),
    "bulkhead_client_take_log": (_status, [_client_p, c_void_p, c_size_t, POINTER(c_size_t)]),
    "bulkhead_client_test_events": (
        _status,
        [_client_p, c_void_p, c_size_t, POINTER(c_size_t)],
    ),
    "bulkhead_client_test_clear": (_status, [_client_p]),
    "bulkhead_client_metrics": (_status, [_client_p, c_void_p, c_size_t, POINTER(c_size_t)]),
    "bulkhead_last_error": (_status, [c_void_p, c_size_t, POINTER(c_size_t)]),
    "bulkhead_status_str": (c_void_p, [c_uint32]),
    "bulkhead_version": (c_void_p, []),
}

for _name, (_restype, _argtypes) in _SIGNATURES.items():
    _fn = getattr(lib, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes

# The same library through PyDLL, for the calls that never wait (they take no lock a library
# thread holds for long, and no library thread ever needs the GIL): called with the GIL held,
# they skip a release and re-acquire per call, the hand-off that makes threaded p99 tails.
# Calls that can wait (new, flush, close, shutdown) stay on `lib`, which releases the GIL.
NOWAIT = (
    "bulkhead_track",
    "bulkhead_import",
    "bulkhead_people",
    "bulkhead_group",
    "bulkhead_send",
    "bulkhead_send_with_credentials",
    "bulkhead_client_stats",
    "bulkhead_client_queue_len",
)
nowait = ctypes.PyDLL(lib_path)
for _name in NOWAIT:
    _restype, _argtypes = _SIGNATURES[_name]
    _fn = getattr(nowait, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes


# --- The hottest calls, without argtypes -------------------------------------------------
#
# With argtypes, ctypes runs a Python-level `from_param` per argument: about 0.5 µs of a
# seven-argument call. Without them it converts each argument by its Python type: `bytes` to
# a pointer to its buffer, None to NULL, a ctypes instance (the client as `c_void_p`, a length
# as `c_size_t`) to its value, and a plain `int` to a C `int`. A C `int` is 32 bits where the
# library reads a `size_t`, so a plain `int` goes only where it is safe:
#
# - in the first six argument positions, which x86-64 and AArch64 pass in registers, and
#   libffi widens a 32-bit integer to the whole register there (it sign-extends, so the
#   non-negative values below 2**31 arrive unchanged). Stack slots get no such widening, so
#   any later length is a `c_size_t` instance;
# - only for lengths below UNCHECKED_LENGTH_LIMIT; the callers use the declared functions
#   above for anything longer (which the library refuses as too large anyway).
#
# On any other machine these are the declared functions themselves, which accept the same
# arguments.
UNCHECKED_LENGTH_LIMIT = 2**31 - 1
# (Not on Windows: its x64 convention passes only four arguments in registers.)
_WIDENS_REGISTER_INTS = (
    sys.platform != "win32"
    and ctypes.sizeof(c_void_p) == 8
    and platform.machine().lower() in ("x86_64", "amd64", "aarch64", "arm64")
)


# A second PyDLL of the same library: its function objects are separate from `nowait`'s.
_undeclared = ctypes.PyDLL(lib_path) if _WIDENS_REGISTER_INTS else nowait


def _unchecked(name: str) -> Any:
    fn = getattr(_undeclared, name)
    if not _WIDENS_REGISTER_INTS:
        return fn
    fn.restype = _SIGNATURES[name][0]
    return fn


#: bulkhead_track(client, distinct_id, int, event, int, properties, c_size_t)
unchecked_track = _unchecked("bulkhead_track")
#: bulkhead_people(client, distinct_id, int, op, int, value, c_size_t)
unchecked_people = _unchecked("bulkhead_people")


def last_error() -> str:
    """The text of the last failing bulkhead call on this thread ("" if none)."""
    needed = c_size_t(0)
    # NULL/0 asks for the size (NUL included); the text is thread-local, so it can't change.
    lib.bulkhead_last_error(None, 0, ctypes.byref(needed))
    size = max(int(needed.value), 1) + 1
    buf = ctypes.create_string_buffer(size)
    lib.bulkhead_last_error(buf, size, None)
    return buf.value.decode("utf-8", "replace")


def status_str(status: int) -> str:
    """The library's English name for a status code."""
    ptr = lib.bulkhead_status_str(status)
    return ctypes.string_at(ptr).decode("utf-8", "replace") if ptr else f"status {status}"


def version() -> str:
    """The native library's version string."""
    ptr = lib.bulkhead_version()
    return ctypes.string_at(ptr).decode("utf-8", "replace") if ptr else ""
