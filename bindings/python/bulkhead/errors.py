"""Exceptions raised by the bulkhead binding."""

from __future__ import annotations

from . import _ffi

__all__ = [
    "Error",
    "InvalidArgumentError",
    "ClosedError",
    "TooLargeError",
    "InternalError",
    "error_for",
]


class Error(Exception):
    """Base of every exception the library reports (its message comes from
    ``bulkhead_last_error``).

    ``status`` is the ``bulkhead_status`` code and ``status_name`` its English name.
    """

    def __init__(self, message: str, status: int = _ffi.STATUS_INVALID_ARGUMENT) -> None:
        super().__init__(message)
        self.status = status
        self.status_name = _ffi.status_str(status)


class InvalidArgumentError(Error, ValueError):
    """Invalid input: bad arguments, unknown config keys, bad JSON or UTF-8. Also a
    ``ValueError``."""


class ClosedError(Error):
    """The client (or the library, after ``bulkhead_shutdown``) is closed. Not a
    ``ValueError``: the input was fine."""


class TooLargeError(InvalidArgumentError):
    """The event is larger than ``max_event_bytes`` (counted in ``dropped_too_large``)."""


class InternalError(Error):
    """A bug or internal failure inside the library, caught at its boundary."""


def error_for(status: int) -> Error:
    """The exception for a failing status, carrying this thread's last library error."""
    text = _ffi.last_error() or _ffi.status_str(status)
    if status == _ffi.STATUS_CLOSED:
        return ClosedError(text, status)
    if status == _ffi.STATUS_TOO_LARGE:
        return TooLargeError(text, status)
    if status in (_ffi.STATUS_PANIC, _ffi.STATUS_INTERNAL):
        return InternalError(text, status)
    return InvalidArgumentError(text, status)
