"""bulkhead: never let an analytics service slow your application down.

A ctypes binding of the bulkhead Rust core: events go into a bounded in-process queue and
are sent in the background by a small pool of batching consumers, with bounded retries, a
circuit breaker, fork safety and a bounded exit flush.

    import bulkhead

    with bulkhead.Client(token="TOKEN") as client:
        client.track("user-1", "Signed up", {"plan": "pro"})

    # or, with mixpanel-python:
    from mixpanel import Mixpanel
    mp = Mixpanel("TOKEN", consumer=bulkhead.MixpanelConsumer())
"""

from __future__ import annotations

from ._ffi import lib_path as _lib_path
from ._ffi import version as _version
from .client import (
    Client,
    DeliveryError,
    FlushResult,
    Stats,
    set_exit_timeout,
    shutdown,
)
from .consumer import MixpanelConsumer, MixpanelException
from .errors import ClosedError, Error, InternalError, InvalidArgumentError, TooLargeError

__version__ = "0.1.0"

#: The native library's version, and the path it was loaded from.
native_version: str = _version()
library_path: str = _lib_path

__all__ = [
    "Client",
    "MixpanelConsumer",
    "MixpanelException",
    "Stats",
    "DeliveryError",
    "FlushResult",
    "Error",
    "InvalidArgumentError",
    "ClosedError",
    "TooLargeError",
    "InternalError",
    "set_exit_timeout",
    "shutdown",
    "native_version",
    "library_path",
    "__version__",
]
